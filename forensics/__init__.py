"""forensics: turn seized evidence into a super-timeline an investigator can trust.

The public API is what ``__all__`` lists (a test guards it)::

    import forensics
    case = forensics.Case("case-dir", create=True)
    report = case.collect(["/evidence/winevt/Logs"])
    case.verify().ok
"""

from __future__ import annotations

from forensics.case import Case, CollectReport, VerifyReport
from timeline.errors import (
    CaseError,
    CaseLocked,
    EvidenceChanged,
    EvidenceError,
    EvidenceNotFound,
    EvidenceUnreadable,
    ForensicsError,
    IntegrityError,
    ParserUnavailable,
    UnknownFormat,
)
from timeline.schema import SCHEMA, TZ_SOURCES

__all__ = [
    "Case",
    "CollectReport",
    "VerifyReport",
    "SCHEMA",
    "TZ_SOURCES",
    "ForensicsError",
    "EvidenceError",
    "EvidenceNotFound",
    "EvidenceUnreadable",
    "UnknownFormat",
    "EvidenceChanged",
    "CaseError",
    "CaseLocked",
    "IntegrityError",
    "ParserUnavailable",
]
