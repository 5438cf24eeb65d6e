"""The video job on a local Ray cluster (two CPU workers): the local job's outputs, bitwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from signlang_jax.data.sequence_files import read_npz  # noqa: E402
from signlang_jax.video import cli  # noqa: E402
from signlang_jax.video.manifest import read_manifest  # noqa: E402
from signlang_jax.video.ray_runner import VideoActor, run_ray  # noqa: E402
from tests.test_corpus import FAST, LEAVES, expected_names, names_in, write_clip  # noqa: E402
from tests.test_corpus import model as model  # noqa: E402, F401  (the fixture)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of two CPUs for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    # The test's own actor class travels by value: workers need not import the tests.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray") / "corpus"
    for i, leaf in enumerate(LEAVES):
        write_clip(root / leaf, i)
    return root


def test_ray_outputs_equal_the_local_job(cluster, corpus, model, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    # Ray actors run onnxruntime on one thread each; the local job is compared at one too.
    assert cli.main([str(corpus), "--out", str(local), "--onnx", str(model), *FAST,
                     "--threads", "1"]) == 0
    assert cli.main([str(corpus), "--out", str(remote), "--onnx", str(model), *FAST,
                     "--ray", "local", "--workers", "2"]) == 0
    assert names_in(remote) == names_in(local) == expected_names()
    for name in expected_names():
        a, b = read_npz(local / f"{name}.npz"), read_npz(remote / f"{name}.npz")
        assert np.array_equal(a.keypoints, b.keypoints)
        assert np.array_equal(a.timestamps, b.timestamps) and a.metadata == b.metadata
    records = read_manifest(remote)
    assert sorted(records) == expected_names()
    pids = {r["pid"] for r in records.values()}
    assert os.getpid() not in pids and len(pids) == 2  # two actors did the work
    assert all(r["status"] == "done" and r["frames"] == 4 for r in records.values())
    # A re-run finds everything done.
    assert cli.main([str(corpus), "--out", str(remote), "--onnx", str(model), *FAST,
                     "--ray", "local"]) == 0


def test_ray_records_a_failing_video_and_goes_on(cluster, corpus, model, tmp_path):
    bad = tmp_path / "in" / "bad.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x01garbage" * 50)
    out = tmp_path / "out"
    assert cli.main([str(corpus / "a"), str(bad), "--out", str(out), "--onnx", str(model),
                     *FAST, "--ray", "local"]) == 1
    records = read_manifest(out)
    assert records["bad"]["status"] == "failed" and str(bad) in records["bad"]["error"]
    assert records["1"]["status"] == "done"


class DiesOnceOn(VideoActor):
    """An actor whose worker process dies the first time it is given "b/1"."""

    marker: Path

    def __call__(self, batch):
        if "b/1" in list(batch["name"]) and not self.marker.exists():
            self.marker.write_text("died")
            os._exit(1)  # a killed worker: no exception, no reply
        return super().__call__(batch)


def test_a_killed_worker_s_video_is_run_again(cluster, corpus, model, tmp_path):
    from signlang_jax.data.videos import find_inputs
    from signlang_jax.video.job import JobSettings
    from signlang_jax.video.model_spec import ModelSpec

    DiesOnceOn.marker = tmp_path / "marker"
    found, _ = find_inputs([str(corpus)])
    job = JobSettings(tmp_path / "out", ("npz",), False, 0.1, 1, 25.0, None, None)
    spec = ModelSpec(onnx=str(model), threads=1)
    assert run_ray(found, spec, job, (0, 1), "local", 2, actor=DiesOnceOn) == 0
    assert DiesOnceOn.marker.read_text() == "died"
    assert names_in(tmp_path / "out") == expected_names()
    records = read_manifest(tmp_path / "out")
    assert records["b/1"]["status"] == "done"
