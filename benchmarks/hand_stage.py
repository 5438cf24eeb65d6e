"""Hand accuracy of the body model alone vs body + hand stage, the merge rules, and the FLOPs.

    PYTHONPATH=. python benchmarks/hand_stage.py --body runs/demo --hand runs/demo_hand \
        [--heldout runs/heldout_hands] [--num 48] [--seed 7] [--closeup docs/hand_closeup.jpg]

Renders a held-out synthetic set (a seed never used for training or tuning; 48 images at the
body run's synthetic size by default), predicts it with the body model, then with the hand stage
under three merge rules (always replace, the default; replace where the hand score >= 0.2;
replace where the hand score beats the body model's), and prints the hand metrics of each side
by side (signlang_jax.evaluation.metrics.hand_metrics). Then the
FLOPs per image (XLA's cost analysis) of
the default 512 body model, the default 128 hand model and the pair (body + two crops), and
optionally a close-up figure of one held-out hand: body model alone vs body + hand stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import jax
import numpy as np
from flax import nnx

from signlang_jax.data.sources import SampleSource, load_split, record_image
from signlang_jax.draw import draw_points, draw_skeleton, image_grid, write_rgb
from signlang_jax.evaluate import predict_split
from signlang_jax.evaluation.metrics import hand_metrics
from signlang_jax.inference.hand_stage import merge_hand
from signlang_jax.inference.predictor import Predictor, load_hand_stage, load_model
from signlang_jax.keypoints import GROUPS
from signlang_jax.models import create_model
from signlang_jax.training.compile_cache import enable_compilation_cache

COLUMNS = ("pck@0.05", "pck@0.1", "pck@0.2_own_box", "oks_ap_own_box", "epe_px")


def heldout(body_config: object, root: Path, num: int, seed: int) -> SampleSource:
    """The held-out set's records, rendered into `root` on the first run."""
    if not (root / "labels").is_dir():
        from signlang_jax.synth import generate_dataset

        generate_dataset(root, num, seed, size=body_config.data.synthetic_size, workers=1)
    data = body_config.data.copy_and_resolve_references()
    data.root, data.format, data.synthetic_num = str(root), "folder", 0
    return SampleSource(load_split(data, "all"))


def merge_variants(stage: object, records: SampleSource, body_pred: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """Body predictions merged with the hand stage's points under each rule."""
    frames = [record_image(records[i]) for i in range(len(records))]
    started = time.perf_counter()
    points = stage.hand_points(frames, body_pred)
    seconds = time.perf_counter() - started
    out = {"always (default)": body_pred.copy(), "score>=0.2": body_pred.copy(),
           "beats body": body_pred.copy()}
    for crop, hand_points in points:
        n, hand = crop.image_index, crop.hand
        out["always (default)"][n] = merge_hand(out["always (default)"][n], hand, hand_points,
                                                -np.inf)
        out["score>=0.2"][n] = merge_hand(out["score>=0.2"][n], hand, hand_points, 0.2)
        idx = np.asarray(GROUPS[hand])
        take = hand_points[:, 2] > body_pred[n, idx, 2]
        out["beats body"][n, idx[take]] = hand_points[take]
    print(f"hand stage: {len(points)} crops of {len(frames)} images in {seconds:.1f} s",
          file=sys.stderr)
    return out


def table(results: dict[str, dict]) -> str:
    """One row per (prediction, hand part)."""
    lines = [f"{'prediction':24} {'part':10}" + "".join(f" {c:>15}" for c in COLUMNS)]
    for name, metrics in results.items():
        for part, row in metrics.items():
            lines.append(f"{name:24} {part:10}" + "".join(f" {row[c]:15.4f}" for c in COLUMNS))
    return "\n".join(lines)


def flops_per_image(config_module: str) -> float:
    """XLA's FLOP count of one forward pass of a config's model at its input size."""
    import importlib

    config = importlib.import_module(config_module).get_config()
    model = create_model(config.model, nnx.Rngs(0))
    model.eval()
    graphdef, state = nnx.split(model)
    size = config.data.image_size
    x = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
    lowered = jax.jit(lambda s, images: nnx.merge(graphdef, s)(images)).lower(state, x)
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def closeup(records: SampleSource, body: np.ndarray, final: np.ndarray, out: Path,
            tile: int = 200) -> None:
    """Rows of [body model alone | body + hand stage] on held-out hands (ground truth white).

    The rows are the mostly visible hands whose error the hand stage lowers by the 75th and
    the 50th percentile of all such gains: typical cases, not the best one.
    """
    gt = np.stack([records[i]["keypoints"] for i in range(len(records))])
    idx = list(GROUPS["left_hand"]) + list(GROUPS["right_hand"])
    err_body = np.linalg.norm(body[:, idx, :2] - gt[:, idx, :2], axis=-1)
    err_final = np.linalg.norm(final[:, idx, :2] - gt[:, idx, :2], axis=-1)
    visible = gt[:, idx, 2] > 0
    gain = np.where(visible, err_body - err_final, 0).reshape(len(gt), 2, 21).sum(-1)
    gain = gain / np.maximum(visible.reshape(len(gt), 2, 21).sum(-1), 1)
    candidates = np.argwhere(visible.reshape(len(gt), 2, 21).sum(-1) >= 15)
    order = candidates[np.argsort([gain[n, h] for n, h in candidates])]
    tiles = []
    for q in (0.75, 0.5):
        n, h = order[min(int(q * len(order)), len(order) - 1)]
        hand = list(GROUPS[("left_hand", "right_hand")[h]])
        pts = gt[n, hand]
        pts = pts[pts[:, 2] > 0, :2]
        lo, hi = pts.min(0), pts.max(0)
        scale = tile / (max(hi - lo) * 1.6)
        centre = (lo + hi) / 2
        m = np.array([[scale, 0, tile / 2 - scale * centre[0]],
                      [0, scale, tile / 2 - scale * centre[1]]])
        image = cv2.warpAffine(record_image(records[n]), m, (tile, tile), flags=cv2.INTER_CUBIC)
        truth = np.zeros_like(gt[n])
        truth[hand] = gt[n, hand]
        truth[:, :2] = truth[:, :2] * scale + m[:, 2]
        for pred in (body[n], final[n]):
            kp = np.full_like(pred, -1.0)  # only this hand is drawn
            kp[hand] = pred[hand]
            kp[:, :2] = kp[:, :2] * scale + m[:, 2]
            canvas = draw_points(image.copy(), truth, (255, 255, 255))
            tiles.append(draw_skeleton(canvas, kp, threshold=-0.5, draw_hidden=False))
    write_rgb(str(out), image_grid(tiles, columns=2))
    print(f"wrote {out} (held-out hands at the 75th and 50th percentile of the hand stage's "
          "gain; left: body model alone, right: body + hand stage; white = ground truth)",
          file=sys.stderr)


def main() -> None:
    """Run the comparison and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", required=True, help="body-model training workdir")
    parser.add_argument("--hand", required=True, help="hand-model training workdir")
    parser.add_argument("--heldout", default=None, help="held-out folder (default: "
                        "BODY/../heldout_hands_seed<seed>)")
    parser.add_argument("--num", type=int, default=48, help="held-out images")
    parser.add_argument("--seed", type=int, default=7, help="held-out seed (never trained on)")
    parser.add_argument("--closeup", default=None, help="write the close-up figure here")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP counts")
    args = parser.parse_args()
    enable_compilation_cache()
    model, config, step = load_model(args.body)
    root = Path(args.heldout or Path(args.body).parent / f"heldout_hands_seed{args.seed}")
    records = heldout(config, root, args.num, args.seed)
    predictor = Predictor(model, config)
    stage = load_hand_stage(args.hand)
    started = time.perf_counter()
    result = predict_split(predictor, records, 16, progress=False)
    print(f"body model (step {step}): {len(records)} images in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    variants = merge_variants(stage, records, result["pred"])
    results = {"body model alone": hand_metrics(result["pred"], result["gt"], result["bbox"])}
    for name, pred in variants.items():
        results[f"+ hand stage, {name}"] = hand_metrics(pred, result["gt"], result["bbox"])
    print(f"held-out: {len(records)} images, seed {args.seed}, {root}")
    print(table(results))
    if args.closeup:
        closeup(records, result["pred"], variants["always (default)"], Path(args.closeup))
    if not args.no_flops:
        body = flops_per_image("configs.default")
        hand = flops_per_image("configs.hand")
        demo_body, demo_hand = flops_per_image("configs.demo"), flops_per_image(
            "configs.demo_hand")
        print(f"FLOPs per image (XLA cost analysis, forward): default body 512 "
              f"{body / 1e9:.2f} G, hand 128 {hand / 1e9:.2f} G, pair (body + 2 crops) "
              f"{(body + 2 * hand) / 1e9:.2f} G (x{(body + 2 * hand) / body:.2f}); demo body "
              f"128 {demo_body / 1e9:.3f} G, demo hand 96 {demo_hand / 1e9:.3f} G, demo pair "
              f"x{(demo_body + 2 * demo_hand) / demo_body:.2f}")
    print(json.dumps({k: v["hands"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
