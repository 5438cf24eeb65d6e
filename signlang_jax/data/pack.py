"""`python -m signlang_jax.data.pack`: a validated folder dataset -> a TFDS dataset in ArrayRecord.

Millions of small files read slowly from network and object storage; a few large ArrayRecord files
read fast, in random order, by index. This packs a folder dataset (validated exactly as training
validates it) into a TensorFlow Datasets (TFDS) dataset that `data.format=array_record` feeds to
the same grain pipeline:

    OUT/signlang_pack/1.0.0/dataset_info.json, features.json, metadata.json
    OUT/signlang_pack/1.0.0/signlang_pack-{train,val}.array_record-NNNNN-of-NNNNN

Each example holds the ORIGINAL encoded image file, so decoding is the folder path's own
`decode_image`, plus the label as validated: `image_bytes` (JPEG/PNG bytes), `file` (the image
path relative to the dataset root), `stem`, `keypoints` float32 (64, 3) (x, y, visible), `bbox`
float32 (4,) (x, y, w, h), `width` and `height` int32. The splits are the samples, in the order,
that `sources.load_split` returns for the same splits files / `--val-fraction`; they are fixed
when packing. `metadata.json` records the source and a content digest per split.

Written with TFDS's own `GeneratorBasedBuilder` (file_format='array_record', shuffling disabled so
the record order is the split order), which needs no TensorFlow. It is read without TensorFlow
too: `tfds.data_source("signlang_pack", data_dir=OUT, split="val")` or
`tfds.builder_from_directory(OUT/signlang_pack/1.0.0).as_data_source("val")`.

Safety: an invalid dataset is refused (its report is printed, nothing is written) unless
`--skip-invalid`; an existing non-empty OUT is never touched; the dataset is written into a
temporary sibling of OUT that is renamed to OUT only when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import ml_collections
import numpy as np

from signlang_jax.data.dataset import (
    SPLITS,
    DatasetError,
    Problem,
    Sample,
    ScanResult,
    scan_dataset,
    split_samples,
)
from signlang_jax.files import fsync_folder, fsync_tree
from signlang_jax.progress import progress as progress_bar

BUILDER_NAME = "signlang_pack"  # TFDS dataset name: OUT/signlang_pack/VERSION/
DATASET_VERSION = "1.0.0"  # TFDS version directory
FORMAT = "signlang_jax.data.pack"  # metadata.json "format": marks a pack written here
FORMAT_VERSION = 1


def import_tfds() -> ModuleType:
    """`tensorflow_datasets`, imported on first use (the folder format never needs it)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(f"the array_record format needs tensorflow-datasets ({e}); install "
                          "it with: pip install -e \".[tfds]\" (no TensorFlow needed)") from None
    return tfds


def split_digest(files: Sequence[str], keypoints: np.ndarray, bboxes: np.ndarray) -> str:
    """Content digest of a split (file names, keypoints (N, 64, 3), boxes (N, 4)) for grain."""
    digest = hashlib.sha256(json.dumps(list(files)).encode())
    digest.update(np.ascontiguousarray(keypoints, np.float32).tobytes())
    digest.update(np.ascontiguousarray(bboxes, np.float32).tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class PackInfo:
    """A pack found on disk: its TFDS version directory, metadata and split sizes."""

    directory: Path
    metadata: dict
    num_examples: dict[str, int]


def _not_a_pack(path: Path, why: str) -> DatasetError:
    return DatasetError([Problem(str(path), "", f"not a dataset written by {FORMAT} ({why})",
                                 "not_a_pack")])


def find_pack(root: str | os.PathLike) -> Path:
    """The directory holding dataset_info.json of the pack at `root` (OUT or its version dir)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError([Problem(str(root), "", "is not a directory (check data.root)",
                                    "missing_dir")])
    for candidate in (root / BUILDER_NAME / DATASET_VERSION, root):
        if (candidate / "dataset_info.json").is_file():
            return candidate
    hint = ("; it looks like a folder dataset: set data.format=folder"
            if (root / "labels").is_dir() else "; write one with python -m " + FORMAT)
    raise _not_a_pack(root, f"no {BUILDER_NAME}/{DATASET_VERSION}/dataset_info.json{hint}")


def open_pack(root: str | os.PathLike) -> PackInfo:
    """Check that `root` holds a pack written here; raise `DatasetError` naming what is wrong."""
    directory = find_pack(root)
    tfds = import_tfds()
    try:
        builder = tfds.builder_from_directory(directory)
        info = builder.info
        metadata = dict(info.metadata or {})
        num_examples = {name: int(split.num_examples) for name, split in info.splits.items()}
        file_format = info.file_format
    except Exception as e:  # TFDS raises many types for a damaged directory
        raise DatasetError([Problem(str(directory), "", "unreadable TFDS dataset info: "
                                    f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                                    "not_a_pack")]) from None
    if metadata.get("format") != FORMAT:
        raise _not_a_pack(directory, "a TFDS dataset without format=" + FORMAT
                          + " in metadata.json")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise DatasetError([Problem(str(directory), "", f"pack format version "
                                    f"{metadata.get('format_version')!r}; this version reads "
                                    f"{FORMAT_VERSION} (pack the folder dataset again)",
                                    "pack_version")])
    if getattr(file_format, "value", file_format) != "array_record":
        raise _not_a_pack(directory, f"files are {file_format}, not array_record")
    return PackInfo(directory, metadata, num_examples)


def open_split(info: PackInfo, split: str) -> object:
    """TFDS's random-access data source over `split` of an opened pack (records as dicts)."""
    tfds = import_tfds()
    try:
        return tfds.builder_from_directory(info.directory).as_data_source(split)
    except Exception as e:
        raise DatasetError([Problem(str(info.directory), "", f"cannot open the {split!r} split: "
                                    f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                                    "not_a_pack")]) from None


# ----------------------------------------------------------------------------- writing


def select_splits(scan: ScanResult, data: ml_collections.ConfigDict) -> dict[str, list[Sample]]:
    """Each split's samples of a `scan_dataset` result, selected as `sources.load_split` does.

    Raises `DatasetError` listing every problem unless `data.skip_invalid`.
    """
    if scan.problems and not data.skip_invalid:
        raise DatasetError(scan.problems)
    splits = {s: split_samples(scan, s, data.val_fraction, strict=not data.skip_invalid)
              for s in SPLITS}
    for name, samples in splits.items():
        if not samples:
            raise DatasetError([Problem(str(scan.root), "", f"the {name!r} split has no valid "
                                        "samples", "empty_split")])
    return splits


def _features(tfds: ModuleType) -> object:
    tensor = tfds.features.Tensor
    return tfds.features.FeaturesDict({
        "image_bytes": tensor(shape=(), dtype=np.object_,
                              doc="the original encoded JPEG/PNG file"),
        "file": tfds.features.Text(doc="image path relative to the source dataset root"),
        "stem": tfds.features.Text(doc="shared stem of the image and label files"),
        "keypoints": tensor(shape=(64, 3), dtype=np.float32,
                            doc="x, y (pixels, pixel-centre convention), visible (0/1)"),
        "bbox": tensor(shape=(4,), dtype=np.float32, doc="person box x, y, w, h in pixels"),
        "width": tfds.features.Scalar(dtype=np.int32, doc="image width in pixels"),
        "height": tfds.features.Scalar(dtype=np.int32, doc="image height in pixels"),
    })


def _example(sample: Sample, root: Path) -> dict:
    path = Path(sample.image_path)
    return {"image_bytes": path.read_bytes(), "file": path.relative_to(root).as_posix(),
            "stem": sample.stem, "keypoints": sample.keypoints, "bbox": sample.bbox,
            "width": sample.width, "height": sample.height}


def _make_builder(tfds: ModuleType, splits: dict[str, list[Sample]], root: Path, data_dir: Path,
                  metadata: dict, bar: object) -> object:
    # Defined here to keep the TFDS import lazy; not registered: readers open the directory.
    class SignlangPack(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = BUILDER_NAME
        VERSION = tfds.core.Version(DATASET_VERSION)

        def _info(self) -> object:
            return tfds.core.DatasetInfo(
                builder=self, features=_features(tfds), disable_shuffling=True,
                metadata=tfds.core.MetadataDict(metadata),
                description=f"signlang-jax 64-keypoint dataset packed from "
                            f"{root.absolute()} by {FORMAT}")

        def _split_generators(self, dl_manager: object) -> dict:
            return {name: self._generate_examples(samples) for name, samples in splits.items()}

        def _generate_examples(self, samples: list[Sample]) -> Iterator[tuple[int, dict]]:
            # Integer keys + disable_shuffling: records are stored in key order = split order.
            for i, sample in enumerate(samples):
                yield i, _example(sample, root)
                bar.update()

    return SignlangPack(data_dir=data_dir, file_format="array_record")


def check_out(out: Path) -> None:
    """Refuse an output path that exists and is not an empty directory (never overwrite data)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "is not empty" if out.is_dir() else "is a file"
        raise FileExistsError(f"{out}: already exists and {what}; packing never overwrites "
                              "data: choose a new --out (or remove it yourself)")


def write_pack(splits: dict[str, list[Sample]], out: str | os.PathLike, root: str | os.PathLike,
               provenance: dict | None = None, progress: bool = False) -> PackInfo:
    """Write `splits` (name -> validated samples of dataset `root`) as a pack at `out`.

    Everything is written into a temporary sibling of `out` that replaces `out` (absent or an
    empty directory) only once complete; on any error it is removed and `out` is unchanged.
    """
    tfds = import_tfds()
    out, root = Path(out).absolute(), Path(root)
    check_out(out)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "source": str(root.absolute()),
                **(provenance or {}), "splits": {}}
    for name, samples in splits.items():
        metadata["splits"][name] = {"num_examples": len(samples), "digest": split_digest(
            [Path(s.image_path).relative_to(root).as_posix() for s in samples],
            np.stack([s.keypoints for s in samples]), np.stack([s.bbox for s in samples]))}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.packing-", dir=out.parent))
    bar = progress_bar(total=sum(len(s) for s in splits.values()), unit="img", desc="packing",
               disable=not progress, file=sys.stderr)
    try:
        builder = _make_builder(tfds, splits, root, staging / "data", metadata, bar)
        tfds.disable_progress_bar()  # ours counts both splits
        # TFDS prints "Downloading and preparing ..." about the staging path: not for users.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            builder.download_and_prepare(download_dir=staging / "downloads")
        bar.close()
        check_out(out)  # again: someone may have written there meanwhile
        if out.exists():
            out.rmdir()
        fsync_tree(staging / "data")  # complete on disk before it appears under its name
        (staging / "data").rename(out)
        fsync_folder(out.parent)
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    return open_pack(out)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m " + FORMAT,
        description="Validate a folder dataset and pack it into a TFDS dataset of ArrayRecord "
                    "files (original image bytes + keypoints + bbox); no TensorFlow needed.",
        epilog="Train on the result with --config.data.format=array_record "
               "--config.data.root=OUT.")
    parser.add_argument("--data-root", required=True, help="folder dataset to pack")
    parser.add_argument("--out", required=True,
                        help="new directory for the TFDS dataset (must not exist or be empty)")
    parser.add_argument("--images-dir", default="images", help="image folder under the root")
    parser.add_argument("--labels-dir", default="labels", help="label folder under the root")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="validation fraction of the hash split (without splits/*.txt); "
                             "use the value training uses (data.val_fraction)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="pack the valid samples of an invalid dataset and list the "
                             "skipped files (default: refuse it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Validate, pack and print a summary; return the exit code."""
    from configs import default
    from signlang_jax.data.report import format_report

    args = build_parser().parse_args(argv)
    data = default.get_config().data
    data.root, data.images_dir, data.labels_dir = args.data_root, args.images_dir, args.labels_dir
    data.val_fraction, data.skip_invalid = args.val_fraction, args.skip_invalid
    out = Path(args.out)
    start = time.perf_counter()
    try:
        check_out(out)
        scan = scan_dataset(data.root, data.images_dir, data.labels_dir, decode=True)
        if scan.problems:
            print(format_report(scan))
            if not data.skip_invalid:
                print(f"INVALID: {len(scan.problems)} problems; nothing written to {out} (fix "
                      "the files or pass --skip-invalid)", file=sys.stderr)
                return 1
            skipped = sorted({p.file for p in scan.problems})
            print(f"skipping {len(skipped)} invalid files (--skip-invalid):\n  "
                  + "\n  ".join(skipped))
        splits = select_splits(scan, data)
        provenance = {"images_dir": data.images_dir, "labels_dir": data.labels_dir,
                      "val_fraction": data.val_fraction,
                      "split_files": sorted(p.name for p in (Path(data.root) / "splits")
                                            .glob("*.txt") if p.stem in SPLITS),
                      "skipped_files": len({p.file for p in scan.problems})}
        info = write_pack(splits, out, data.root, provenance, progress=not args.quiet)
    except (DatasetError, OSError, ImportError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    sizes = {name: sum(f.stat().st_size for f in info.directory.glob(
        f"{BUILDER_NAME}-{name}.array_record-*")) for name in info.num_examples}
    print(f"packed {data.root} -> {out} (TFDS {BUILDER_NAME} {DATASET_VERSION}, ArrayRecord)")
    for name, count in info.num_examples.items():
        print(f"  {name:<5} {count:>8} samples {sizes[name] / 1e6:>10.1f} MB")
    print(f"  total {sum(info.num_examples.values()):>8} samples "
          f"{sum(sizes.values()) / 1e6:>10.1f} MB in {seconds:.1f} s")
    print(f"train on it with --config.data.format=array_record --config.data.root={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
