"""What every collector shares: the artifact it reads and the way it reports."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, ClassVar, Iterator

import pyarrow as pa

from timeline.custody import open_evidence
from timeline.schema import RowBuilder

__all__ = ["Artifact", "ArtifactReport", "Collector", "RecordError", "read_magic", "rotated", "shown_name", "name_bytes"]

# Names as the evidence stores them are bytes.  Python holds a byte that is not UTF-8 as a lone surrogate
# (os.fsdecode, tarfile: "surrogateescape"; U+DC80..U+DCFF); an NTFS name may hold an unpaired UTF-16 surrogate.
# Neither can be written as UTF-8 (Parquet, JSON), so every name leaving the walk of the evidence is shown with
# each such byte as \xNN (and an unpaired surrogate as \uXXXX) -- Python's backslashreplace -- and the raw bytes
# are kept beside it (``name_bytes``, hex), which makes the spelling reversible.  A name that is valid UTF-8 is
# shown unchanged.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"\\u{c:04x}"


def shown_name(name: str) -> str:
    """``name`` as rows, the custody log and reports spell it: valid UTF-8 (undecodable bytes as ``\\xNN``)."""
    return _SURROGATE.sub(_escape, name) if _SURROGATE.search(name) else name


def name_bytes(name: str) -> str | None:
    """The raw bytes of a name that :func:`shown_name` changes, as hex (None for a valid UTF-8 name):
    ``bytes.fromhex(h)`` is the name as stored (``os.fsdecode`` of it opens the file)."""
    if not _SURROGATE.search(name):
        return None
    try:
        return name.encode("utf-8", "surrogateescape").hex()
    except UnicodeEncodeError:  # an unpaired UTF-16 surrogate (NTFS): its WTF-8 bytes
        return name.encode("utf-8", "surrogatepass").hex()


def read_magic(path: str, size: int, offset: int = 0) -> bytes:
    """``size`` raw bytes at ``offset`` (not decompressed), read-only; b"" when the file cannot be read."""
    try:
        fd = open_evidence(path)
    except Exception:
        return b""
    try:
        return os.pread(fd, size, offset)
    except OSError:
        return b""
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Artifact:
    """One file to parse, and where it came from."""

    evidence_id: str
    evidence_path: str  # path of the artifact inside the evidence item (posix style)
    fs_path: str  # where this process can read it
    sha256: str
    size: int
    # What the evidence says about the artifact (None when unknown): the host it belongs to and how that was
    # decided (timeline.schema.HOST_SOURCES: given, os, folder; see collectors.hosts), its
    # zone and how that was decided, its modification time (dates year-less lines).
    host: str | None = None
    tz: str | None = None
    tz_source: str | None = None
    mtime_ns: int | None = None
    host_source: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.evidence_id, self.evidence_path)


@dataclass
class RecordError:
    """A record (or chunk, or file) that could not be turned into a timeline row, and why."""

    record_ref: str | None
    kind: str
    message: str
    count: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"record_ref": self.record_ref, "kind": self.kind, "message": self.message, "count": self.count}


@dataclass
class ArtifactReport:
    """What reading one artifact gave besides rows: records lost (errors), damage noticed (warnings), counts."""

    errors: list[RecordError] = field(default_factory=list)
    warnings: list[RecordError] = field(default_factory=list)  # kind: "damage" or "parser_error"
    stats: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # what the evidence stated (host, zone...), for custody
    collector: str | None = None  # set for artifacts found inside another (an image's logs)

    def warn(self, kind: str, message: str, record_ref: str | None = None) -> None:
        self.warnings.append(RecordError(record_ref, kind, message))


class Collector:
    """Base class: subclasses set ``name``, ``source``, ``engines``, ``parser`` and implement the methods below.

    One collector instance may read many artifacts in a row (so that rows of small
    files are processed and written in large batches): :meth:`collect` yields
    tables whenever a batch is full, whatever artifacts its rows came from, and
    :meth:`finish` yields the rest.  :meth:`report` tells, per artifact, what was
    lost and why.
    """

    name: ClassVar[str] = "base"
    source: ClassVar[str] = ""
    engines: ClassVar[tuple[str, ...]] = ()
    # the ``parser`` column: (label, distribution whose version follows it), e.g. forensics-syslog/0.1.0
    parser: ClassVar[tuple[str, str]] = ("forensics", "forensics")
    # What it wants read out of a disk image, an archive or the live host (collectors.target asks every collector of
    # the registry): the file names of :meth:`wants`; on a live host, the paths it reads (``live_paths``) and the
    # files it reads under each user's home folder (``home_files``, relative to the home).
    image_names: ClassVar[frozenset[str]] = frozenset()
    live_paths: ClassVar[tuple[str, ...]] = ()
    home_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, engine: str | None = None, threads: int = 1):
        self._parser = f"{self.parser[0]}/{version(self.parser[1])}"
        self.engine = engine
        self.threads = threads
        self.reports: dict[tuple[str, str], ArtifactReport] = {}
        self._rows = RowBuilder()  # rows of any artifacts read so far, converted to Arrow a batch at a time

    def report(self, artifact: Artifact) -> ArtifactReport:
        return self.reports.setdefault(artifact.key, ArtifactReport())

    @classmethod
    def matches(cls, path: str) -> bool:
        """Cheap test (name, magic bytes) whether this collector reads ``path``."""
        raise NotImplementedError

    @classmethod
    def check_compatible(cls, path: str) -> None:
        """Raise :class:`timeline.errors.UnknownFormat` naming what was expected, if ``path`` is not ours."""
        raise NotImplementedError

    @classmethod
    def wants(cls, name: str) -> bool:
        """Whether a file of this name (lower case, without its folder) inside a disk image or archive is worth
        copying out to be read (by whichever collector then :meth:`matches` it): one of ``image_names`` here."""
        return name in cls.image_names

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        """Read one artifact; yield timeline tables (of any artifacts read so far) when a batch fills."""
        raise NotImplementedError

    def finish(self) -> Iterator[pa.Table]:
        """Yield the rows still buffered."""
        if len(self._rows):
            yield self._rows.to_table()


def rotated(names: str) -> re.Pattern[str]:
    """The pattern of a log's lower-case file name (``names``: a regular expression, alternatives allowed) as it is
    also kept rotated (``.1``, ``-20240101``) and compressed (``.gz``, ``.bz2``, ``.xz``)."""
    return re.compile(rf"^({names})([.-]\d+)*(\.(gz|bz2|xz))?$")
