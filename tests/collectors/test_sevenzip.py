"""7z archives as evidence: the museum's KAPE-style EVTX collections (solid 7z) read member by member, every EVTX
member through the EVTX collector with its record count as the corpus inventory states it."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

import forensics
from collectors import TargetCollector, collector_for
from collectors.sevenzip import is_7z
from timeline.errors import UnknownFormat

MUSEUM = "AndrewRathbun-DFIRArtifactMuseum/Windows/EventLogs"
ARCHIVES = {  # archive -> hosts REAL-ATTACKS.md section 1a names
    "Win10/APTSimulatorVM/APTSimulatorVM_EventLogs.7z": {"DESKTOP-TMKU40H", "WIN-C89CFTIHC0I"},
    "Win2012R2/StolenSzechuan/StolenSzechuanEventLogs.7z": {"CITADEL-DC01.C137.local", "WIN-E0PO207ERMD.C137.local",
                                                            "WIN-E0PO207ERMD"},
}


def _inventory(evidence: Path, archive: str) -> dict[str, dict]:
    with open(evidence / "_real-attacks-inventory/evtx_inventory.tsv") as fh:
        return {r["member"]: r for r in csv.DictReader(fh, delimiter="\t") if r["container"] == f"Windows/EventLogs/{archive}"}


@pytest.mark.parametrize("archive", sorted(ARCHIVES))
def test_museum_7z_evtx_members_match_the_inventory(evidence, tmp_path, archive):
    path = evidence / MUSEUM / archive
    assert is_7z(str(path)) and collector_for(str(path)) is TargetCollector
    case = forensics.Case(tmp_path / "case", create=True)
    report = case.collect([path], workers=1)
    inv = _inventory(evidence, archive)
    assert len(inv) in (94, 102)
    seen = duckdb.sql(f"SELECT evidence_path, parser, count(*) FROM read_parquet('{case.path}/sightings/*.parquet') "
                      "GROUP BY 1, 2").fetchall()
    plain: dict[str, int] = {}
    both: dict[str, int] = {}
    for p, parser, n in seen:
        if parser.startswith("evtx-rs/"):
            both[p[1:]] = both.get(p[1:], 0) + n
            if "recovery" not in parser:
                plain[p[1:]] = plain.get(p[1:], 0) + n
    # every member read by the EVTX collector: evtx-rs's own records as the inventory counted them, never fewer
    # (the chunk recovery adds older records from the chunks' slack; records whose number another, different
    # frame carries -- 2 numbers in Application.evtx -- are read from the recovery chunk, each frame on its own)
    counted = {m: int(r["records"]) for m, r in inv.items() if int(r["records"])}
    assert set(counted) == set(plain) and all(plain[m] <= n <= both[m] for m, n in counted.items())
    assert sum(n - plain[m] for m, n in counted.items()) == (2 if "Szechuan" in archive else 0)
    assert "error" not in case.problems().column("severity").to_pylist()
    tl = forensics.open(case.path)
    hosts = set(tl.sql("SELECT DISTINCT host FROM timeline WHERE source = 'EVTX'")["host"])
    listed = {h for r in inv.values() for h in r["computers"].split(",") if h}
    assert hosts >= ARCHIVES[archive] and hosts == listed
    fs = tl.sql("SELECT count(*) AS n, min(artifact) AS a FROM timeline WHERE source = 'FILE'").iloc[0]
    assert (fs.n, fs.a) == (len(inv), "fs:7z")  # one row per member (7z stores the last-write time only)
    assert "7z (py7zr " in (case.path / "custody.jsonl").read_text()


def test_not_a_7z_named_7z(tmp_path):
    fake = tmp_path / "triage.7z"
    fake.write_bytes(b"7z\xbc\xaf\x27\x1c" + b"\x00" * 64)
    with pytest.raises(UnknownFormat):
        TargetCollector.check_compatible(str(fake))
