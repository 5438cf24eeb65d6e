"""Human-readable dataset report: every problem, counts per kind, visibility per keypoint group."""

from __future__ import annotations

from collections import Counter

import numpy as np

from signlang_jax.data.dataset import ScanResult
from signlang_jax.keypoints import GROUPS


def visibility_by_group(scan: ScanResult) -> dict[str, float]:
    """Fraction of visible keypoints in each group over the valid samples."""
    if not scan.samples:
        return {group: 0.0 for group in GROUPS}
    visible = np.stack([s.keypoints[:, 2] for s in scan.samples])
    return {group: float(visible[:, list(idx)].mean()) for group, idx in GROUPS.items()}


def format_report(scan: ScanResult, max_problems: int | None = None) -> str:
    """The report `python -m signlang_jax.data.validate` prints, as one string."""
    lines = []
    shown = scan.problems if max_problems is None else scan.problems[:max_problems]
    lines += [f"ERROR {p}" for p in shown]
    if len(shown) < len(scan.problems):
        lines.append(f"... and {len(scan.problems) - len(shown)} more problems")
    lines += [f"warning {p}" for p in scan.warnings]
    bad_files = len({p.file for p in scan.problems})
    lines.append(f"dataset {scan.root}: {scan.num_labels} labels, {len(scan.samples)} valid, "
                 f"{bad_files} files with problems, {len(scan.warnings)} warnings")
    if scan.problems:
        lines.append("problems by kind:")
        for kind, count in sorted(Counter(p.kind for p in scan.problems).items()):
            lines.append(f"  {kind:<18} {count}")
    lines.append("visible keypoints per group (valid samples):")
    for group, fraction in visibility_by_group(scan).items():
        lines.append(f"  {group:<11} {100 * fraction:5.1f} %")
    return "\n".join(lines)
