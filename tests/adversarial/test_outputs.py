"""Outputs (export, report, export-plaso, plot) never overwrite evidence of the case, nor an existing file without
--force; an output that cannot be recorded in the custody log is not handed out."""

from __future__ import annotations

import os
import shutil

import pytest

import forensics
from forensics.report import write_report
from timeline.errors import CaseWriteError, OutputError
from timeline.store import file_sha256

SYSTEM = "plaso/test_data/evtx/System.evtx"


@pytest.fixture
def collected(evidence, tmp_path):
    """A case of one evidence folder (System.evtx and a copy of it in a subfolder): (case, folder, file)."""
    folder = tmp_path / "evidence"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(evidence / SYSTEM, folder / "System.evtx")
    shutil.copy(evidence / SYSTEM, folder / "sub" / "copy.evtx")
    case = forensics.Case(tmp_path / "case", create=True)
    case.collect([folder], workers=1)
    return tmp_path / "case", folder, folder / "System.evtx"


def test_export_and_report_refuse_evidence(collected, tmp_path, cli):
    case, folder, ev = collected
    before = {p: file_sha256(p) for p in (ev, folder / "sub" / "copy.evtx")}
    (tmp_path / "link.csv").symlink_to(ev)
    targets = [ev, folder / "sub" / "copy.evtx", folder / "new.csv", folder / "sub" / "new.csv", tmp_path / "link.csv"]
    runs = [["export", str(case), "--format", "csv", "-o", str(target), "--force"] for target in targets]
    runs += [["report", str(case), "-o", str(ev), "--force"], ["export-plaso", str(case), "-o", str(ev), "--force"],
             ["report", str(case), "-o", str(folder / "sub" / "r.html")], ["plot", str(case), "-o", str(ev), "--force"]]
    for args in runs:
        r = cli(*args)
        assert r.returncode == 10, (args, r.stderr)
        assert "refusing to write over evidence of the case" in r.stderr and "Traceback" not in r.stderr
    assert {p: file_sha256(p) for p in before} == before
    assert not (folder / "new.csv").exists() and not (folder / "sub" / "new.csv").exists()
    with pytest.raises(OutputError, match="refusing to write over evidence of the case"):
        forensics.open(case).export(ev, "jsonl", force=True)
    with pytest.raises(OutputError, match="refusing to write over evidence of the case"):
        write_report(case, folder / "report.html", force=True)
    assert cli("verify", str(case)).returncode == 0
    assert [e["action"] for e in forensics.Case(case).store.custody.entries()] == ["case_created", "commit"]


def test_an_existing_file_is_overwritten_only_with_force(collected, tmp_path, cli):
    case, _, _ = collected
    out = tmp_path / "out.csv"
    out.write_text("the analyst's notes\n")
    for args in (["export", str(case), "--format", "csv", "-o", str(out)], ["report", str(case), "-o", str(out)],
                 ["export-plaso", str(case), "-o", str(out)], ["plot", str(case), "-o", str(out)]):
        r = cli(*args)
        assert r.returncode == 10 and f"{out} exists; refusing to overwrite it" in r.stderr, r.stderr
        assert out.read_text() == "the analyst's notes\n"
    with pytest.raises(OutputError, match="exists; refusing to overwrite it"):
        forensics.open(case).export(out, "csv")
    assert cli("export", str(case), "--format", "csv", "-o", str(out), "--force").returncode == 0
    assert out.read_text(encoding="utf-8-sig").startswith("\"timestamp\",")
    entry = forensics.open(case).export(out, "jsonl", force=True)
    assert entry["output"]["sha256"] == file_sha256(out)
    report = write_report(case, tmp_path / "r.html")
    assert write_report(case, tmp_path / "r.html", force=True)["seq"] == report["seq"] + 1
    assert forensics.Case(case).verify().ok


def test_read_only_case_export_and_collect_are_clear_errors(collected, evidence, tmp_path, tmpfs, remount, cli):
    src, _, _ = collected
    mnt = tmpfs("50m")
    case = mnt / "case"
    shutil.copytree(src, case)
    remount(mnt, "ro")
    before = (case / "custody.jsonl").read_bytes()
    out = tmp_path / "x.csv"
    for args in (["export", str(case), "--format", "csv", "-o", str(out)], ["report", str(case), "-o", str(out)],
                 ["collect", str(evidence / "plaso/test_data/evtx/System.evtx"), "--case", str(case)]):
        r = cli(*args)
        assert r.returncode == 12, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert [line for line in r.stderr.splitlines() if line.startswith("forensics:")] == [
            f"forensics: error: cannot write the case {case}: Read-only file system (its lock file "
            f"{'.collect.lock' if args[0] == 'collect' else '.lock'} cannot be opened for writing; a read-only case can "
            "be read, not written)"]
        assert not out.exists() and not list(tmp_path.glob(".x.csv.partial-*"))
    with pytest.raises(CaseWriteError):
        forensics.open(case).export(out, "csv")
    assert not out.exists()
    # reading a read-only case works
    for args in (["verify", str(case)], ["info", str(case)], ["query", str(case), "--limit", "1"],
                 ["sql", str(case), "SELECT count(*) FROM timeline"]):
        assert cli(*args).returncode == 0, args
    assert (case / "custody.jsonl").read_bytes() == before
