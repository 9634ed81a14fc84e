"""The sample case: deterministic evidence, and a reconstruction that finds every ground-truth step."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from forensics import Case, sample
from forensics.cli import main
from forensics.query import open_case


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory, mke2fs):
    base = tmp_path_factory.mktemp("sample")
    out = sample.build(base / "evidence", seed=7, mke2fs=mke2fs)
    case = Case(base / "case", create=True, tz="Asia/Kolkata")
    report = case.collect([base / "evidence"], workers=1)
    return base, out, case, report


def test_the_same_seed_gives_the_same_bytes(built, tmp_path, mke2fs):
    base, _, _, _ = built
    sample.build(tmp_path / "again", seed=7, mke2fs=mke2fs)
    assert _digest(tmp_path / "again") == _digest(base / "evidence")
    sample.build(tmp_path / "other", seed=8, mke2fs=mke2fs)
    assert _digest(tmp_path / "other")["DC01/C/Windows/System32/winevt/Logs/Security.evtx"] != \
           _digest(base / "evidence")["DC01/C/Windows/System32/winevt/Logs/Security.evtx"]


def test_the_evidence_set_and_its_ground_truth(built):
    base, out, _, _ = built
    names = sorted(Path(p).relative_to(base / "evidence").as_posix() for p in out["evidence"])
    assert names == [
        "DC01/C/Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx",
        "DC01/C/Windows/System32/winevt/Logs/Microsoft-Windows-TerminalServices-LocalSessionManager%4Operational.evtx",
        "DC01/C/Windows/System32/winevt/Logs/Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx",
        "DC01/C/Windows/System32/winevt/Logs/Security.evtx",
        "DC01/C/Windows/System32/winevt/Logs/System.evtx",
        "FS01/C/Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx",
        "FS01/C/Windows/System32/winevt/Logs/Security.evtx",
        "FS01/C/Windows/System32/winevt/Logs/System.evtx",
        "ehosp-app01.raw", "ehosp-db01.raw"]
    truth = json.loads((base / "evidence" / "ground_truth.json").read_text())
    steps = truth["steps"]
    assert [s["techniques"][0] for s in steps] == ["T1110", "T1505.003", "T1548.003", "T1021.001", "T1003.001",
                                                   "T1543.003", "T1070.001", "T1490", "T1486", "T1486"]
    assert steps[0]["time_utc"] == "2022-11-23T01:30:03+00:00"  # 07:00:03 IST, the first failed password
    assert steps[0]["host"] == "ehosp-app01" and steps[3]["host"] == "DC01.hosp.local"


def test_collection_is_loss_free_and_verifies(built):
    _, _, case, report = built
    assert report.errors == 0 and report.warnings == 0
    assert case.verify().ok
    info = case.info()
    assert set(info["hosts"]) == {"DC01.hosp.local", "FS01.hosp.local", "ehosp-app01", "ehosp-db01"}


def test_linux_images_are_read_in_their_own_zone(built):
    _, _, case, report = built
    facts = [a["facts"] for a in report.artifacts if a["collector"] == "target"]
    assert sorted((f["host"], f["tz"], f["tz_source"]) for f in facts) == [
        ("ehosp-app01", "Asia/Kolkata", "evidence_config"), ("ehosp-db01", "Asia/Kolkata", "evidence_config")]
    tl = open_case(case.path)
    first = tl.where(host="ehosp-app01").search("Failed password for root from 198.51.100.23").to_pandas().iloc[0]
    assert first.timestamp.isoformat() == "2022-11-23T01:30:03+00:00" and first.tz_source == "evidence_config"
    assert json.loads(first["attrs"])["year"] == 2022
    wtmp = tl.where(artifact="wtmp", host="ehosp-app01", user="ehadmin").to_pandas()
    assert list(wtmp.src_ip) == ["198.51.100.23"]


def test_the_story_finds_every_ground_truth_step(built):
    base, out, case, _ = built
    result = sample.check(open_case(case.path).story(), out["ground_truth"])
    assert [(s["step"], s["found"]) for s in result] == [(i, True) for i in range(1, 11)]


def test_demo_command(tmp_path, capsys):
    assert main(["demo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "10 of 10 attack steps reconstructed" in out
    assert "2022-11-23 07:00:03 IST  01:30:03 UTC  ehosp-app01" in out
