"""The public API is small and explicit: this test is its guard."""

import forensics


def test_all_is_exactly_the_public_api():
    assert sorted(forensics.__all__) == sorted([
        "open", "hunt", "Timeline", "Case", "CollectReport", "VerifyReport", "SCHEMA", "TZ_SOURCES",
        "ForensicsError", "EvidenceError", "EvidenceNotFound", "EvidenceUnreadable", "UnknownFormat",
        "EvidenceChanged", "CaseError", "CaseLocked", "CaseWriteError", "IntegrityError", "ParserUnavailable", "QueryError", "OutputError",
    ])
    for name in forensics.__all__:
        assert hasattr(forensics, name)


def test_one_exception_hierarchy():
    for name in forensics.__all__:
        obj = getattr(forensics, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, forensics.ForensicsError)
            assert isinstance(obj.exit_code, int) and obj.exit_code >= 1
