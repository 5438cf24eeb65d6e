"""The data stage's one error format: a `Problem` names the file, the field and what is wrong.

`str(problem)` reads `labels/000123.json: keypoints[21] 'left_hand_thumb_tip': x=530.2 is
outside the image width 512`; a `DatasetError` carries every problem found, one per line. Its
own module so that image decoding (`images`) and label validation (`dataset`) share it without
importing each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with one file: where (file, field), what (message) and a summary kind."""

    file: str
    field: str
    message: str
    kind: str

    def __str__(self) -> str:
        """`file: field: message`, the form every error in the project uses."""
        return f"{self.file}: {self.field}: {self.message}" if self.field else (
            f"{self.file}: {self.message}"
        )


class DatasetError(ValueError):
    """Raised for invalid dataset files; carries every `Problem` found, one per line in str()."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
