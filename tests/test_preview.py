"""Preview CLI and skeleton drawing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from signlang_jax.data.preview import main as preview_main
from signlang_jax.draw import draw_skeleton, image_grid
from signlang_jax.keypoints import GROUP_COLORS, KEYPOINT_INDEX
from tests.conftest import write_dataset


def test_draw_skeleton_colours_by_group_and_hides_invisible():
    image = np.zeros((100, 100, 3), np.uint8)
    kps = np.zeros((64, 3), np.float32)
    kps[:, :2] = -50  # off-canvas
    kps[KEYPOINT_INDEX["left_hand_wrist"]] = [20, 20, 1]
    kps[KEYPOINT_INDEX["left_hand_thumb_cmc"]] = [80, 20, 1]
    kps[KEYPOINT_INDEX["right_hand_wrist"]] = [20, 80, 1]
    kps[KEYPOINT_INDEX["right_hand_thumb_cmc"]] = [80, 80, 0]  # hidden: no edge
    out = draw_skeleton(image, kps, radius=2)
    # Middle of the drawn bone: the left-hand colour (up to antialiasing).
    np.testing.assert_allclose(out[20, 50], GROUP_COLORS["left_hand"], atol=40)
    assert out[80, 50].sum() == 0  # edge to a hidden point is not drawn
    np.testing.assert_allclose(out[80, 20], GROUP_COLORS["right_hand"], atol=40)
    assert out[80, 80].sum() == 0 and out[80, 82].sum() > 0  # hollow grey circle
    assert image.sum() == 0  # input untouched
    with pytest.raises(ValueError, match=r"shape \(64, 3\)"):
        draw_skeleton(image, kps[:10])


def test_image_grid_layout():
    tiles = [np.full((4, 6, 3), i, np.uint8) for i in range(5)]
    grid = image_grid(tiles, columns=2, pad=1)
    assert grid.shape == (3 * 5 + 1, 2 * 7 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[6, 8, 0] == 3 and grid[11, 1, 0] == 4
    assert grid[11, 8, 0] == 255  # empty cell stays white


def test_preview_cli_writes_grid(tmp_path: Path):
    write_dataset(tmp_path / "data", 10, size=(40, 30))
    out = tmp_path / "out" / "grid.png"
    code = preview_main(["--data-root", str(tmp_path / "data"), "--out", str(out), "--num", "6",
                         "--columns", "3", "--size", "48"])
    assert code == 0
    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 50 + 2, 3 * 50 + 2, 3)


def test_preview_cli_reports_invalid_dataset(tmp_path: Path, capsys):
    write_dataset(tmp_path, 3)
    (tmp_path / "labels" / "000001.json").write_text("[]")
    assert preview_main(["--data-root", str(tmp_path), "--out", str(tmp_path / "g.png")]) == 1
    assert "labels/000001.json: top level is a list" in capsys.readouterr().err


def test_legend_strip_shows_each_mark_in_its_colour():
    from signlang_jax.draw import GROUP_ENTRIES, LEGEND_BACKGROUND, legend_strip, with_legend
    from signlang_jax.evaluation.report import WORST_LEGEND
    from signlang_jax.video.overlay import OVERLAY_LEGEND

    for entries in (GROUP_ENTRIES, WORST_LEGEND, OVERLAY_LEGEND):
        strip = legend_strip(640, entries)
        assert strip.shape == (21, 640, 3)
        assert (strip[0, 0] == LEGEND_BACKGROUND).all()
        for _, colour, _ in entries:  # every mark is drawn (anti-aliasing aside: exact pixels)
            assert (strip == colour).all(-1).any(), colour
    image = np.zeros((100, 300, 3), np.uint8)
    framed = with_legend(image, GROUP_ENTRIES)
    assert framed.shape == (118, 300, 3) and (framed[:100] == 0).all()
