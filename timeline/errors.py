"""The one exception hierarchy of the project.

Every error the library raises on purpose derives from :class:`ForensicsError`,
so callers can catch the family with one ``except``.  The CLI maps each class to
a documented exit code (see ``forensics/cli.py`` and the README).
"""

from __future__ import annotations

__all__ = [
    "ForensicsError",
    "EvidenceError",
    "EvidenceNotFound",
    "EvidenceUnreadable",
    "UnknownFormat",
    "EvidenceChanged",
    "CaseError",
    "CaseLocked",
    "CaseWriteError",
    "IntegrityError",
    "ParserUnavailable",
    "QueryError",
    "WriteError",
    "RecordTooLarge",
    "OutputError",
]


class ForensicsError(Exception):
    """Base class of every error raised on purpose by this project."""

    exit_code = 1


class EvidenceError(ForensicsError):
    """Something is wrong with a piece of evidence."""

    exit_code = 3


class EvidenceNotFound(EvidenceError):
    """The evidence path does not exist."""


class EvidenceUnreadable(EvidenceError):
    """The evidence exists but cannot be read (permissions, I/O error)."""


class UnknownFormat(EvidenceError):
    """No collector recognises the evidence (or the artifact inside it)."""

    exit_code = 4


class EvidenceChanged(EvidenceError):
    """The evidence's hash after processing differs from its hash before."""

    exit_code = 5


class CaseError(ForensicsError):
    """The case directory is not usable (missing, not a case, bad layout)."""

    exit_code = 6


class CaseLocked(CaseError):
    """Another process holds the case's commit lock for too long."""


class CaseWriteError(CaseError):
    """The case cannot be written (disk full, read-only file system, no permission, no such folder).
    What was being written is not committed: the custody log gets a whole entry or none."""

    exit_code = 12


class IntegrityError(CaseError):
    """Verification found a broken custody chain or a changed file."""

    exit_code = 7


class ParserUnavailable(ForensicsError):
    """An optional parser or engine was asked for but is not installed."""

    exit_code = 8


class QueryError(ForensicsError):
    """A query could not be run (a time, zone, column or SQL statement that does not make sense)."""

    exit_code = 9


class WriteError(ForensicsError):
    """A file the project writes itself (the EVTX writer's logs) cannot be written as asked:
    a value that does not fit its type, a time without a zone, events out of order."""


class RecordTooLarge(WriteError):
    """One event does not fit in an EVTX chunk (64 KiB less its 512-byte header), even alone."""


class OutputError(ForensicsError):
    """An export or report could not be written (unknown format, output path refused or unwritable)."""

    exit_code = 10
