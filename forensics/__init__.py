"""forensics: turn seized evidence into a super-timeline an investigator can trust.

The public API is what ``__all__`` lists (a test guards it)::

    import forensics
    case = forensics.Case("case-dir", create=True)
    report = case.collect(["/evidence/winevt/Logs"])
    case.verify().ok
    tl = forensics.open("case-dir").around("2022-11-23 07:00", before="1h", after="5h")
    tl.where(event_id=4624).to_pandas()
    tl.where(host="HOSP-SRV-03").export("hosp-srv-03.xlsx", "xlsx")   # custody-logged
"""

from __future__ import annotations

from forensics.case import Case, CollectReport, VerifyReport
from forensics.query import Timeline
from forensics.query import open_case as open  # noqa: A001 - forensics.open(CASE) is the documented entry point
from timeline.errors import (
    CaseError,
    CaseLocked,
    CaseWriteError,
    EvidenceChanged,
    EvidenceError,
    EvidenceNotFound,
    EvidenceUnreadable,
    ForensicsError,
    IntegrityError,
    OutputError,
    ParserUnavailable,
    QueryError,
    UnknownFormat,
)
from timeline.schema import SCHEMA, TZ_SOURCES

__all__ = [
    "open",
    "hunt",
    "Timeline",
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
    "CaseWriteError",
    "IntegrityError",
    "ParserUnavailable",
    "QueryError",
    "OutputError",
]


def __getattr__(name: str):
    # forensics.hunt (and with it pandas) loads on first use: collection workers never pay for it.
    if name == "hunt":
        import importlib

        return importlib.import_module("forensics.hunt")
    raise AttributeError(f"module 'forensics' has no attribute {name!r}")
