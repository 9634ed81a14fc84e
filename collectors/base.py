"""What every collector shares: the artifact it reads and the way it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import pyarrow as pa

__all__ = ["Artifact", "Collector", "RecordError"]


@dataclass(frozen=True)
class Artifact:
    """One file to parse, and where it came from."""

    evidence_id: str
    evidence_path: str  # path of the artifact inside the evidence item (posix style)
    fs_path: str  # where this process can read it
    sha256: str
    size: int


@dataclass
class RecordError:
    """A record (or chunk, or file) that could not be turned into a timeline row, and why."""

    record_ref: str
    kind: str
    message: str
    count: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"record_ref": self.record_ref, "kind": self.kind, "message": self.message, "count": self.count}


@dataclass
class Collector:
    """Base class: subclasses set ``name``, ``source``, ``engines`` and implement the three methods."""

    engine: str | None = None
    errors: list[RecordError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    name: ClassVar[str] = "base"
    source: ClassVar[str] = ""
    engines: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def matches(cls, path: str) -> bool:
        """Cheap test (name, magic bytes) whether this collector reads ``path``."""
        raise NotImplementedError

    @classmethod
    def check_compatible(cls, path: str) -> None:
        """Raise :class:`timeline.errors.UnknownFormat` naming what was expected, if ``path`` is not ours."""
        raise NotImplementedError

    def collect(self, artifact: Artifact, batch_rows: int = 50_000) -> Iterator[pa.Table]:
        """Yield timeline tables of at most ``batch_rows`` rows; fill ``errors``/``warnings``/``stats``."""
        raise NotImplementedError
