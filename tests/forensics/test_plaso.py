"""plaso interoperability on real evidence: log2timeline makes the storage file, psort says what it holds.

Tests that run plaso skip when it is not installed, and fail instead when FORENSICS_REQUIRE_EVIDENCE is set
(CI installs it with the ``test`` extra).  The tests of plaso's absence need no plaso.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from forensics import Case
from forensics.cli import main
from forensics.plaso import INSTALL_HINT, collect_with_plaso, export_plaso, import_plaso, plaso_tool

ROOT = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("FORENSICS_REQUIRE_EVIDENCE", "") not in ("", "0", "false", "no")
EVTX = "omerbenamram-evtx/samples/Security_short_selected.evtx"
SYSLOG = "plaso/test_data/syslog_copy"
IMAGE = "dfvfs/test_data/ext2.E01"
UTC = dt.timezone.utc



def _cap(message: str) -> str:
    """psort's message as the message column holds it: cut at timeline.schema.MESSAGE_MAX characters (one cap for
    every row, issue 16 section 8)."""
    import pyarrow as pa

    from timeline.schema import cap_messages

    return cap_messages(pa.array([message], pa.string())).to_pylist()[0]


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    try:
        import plaso  # noqa: F401

        return {"log2timeline": plaso_tool("log2timeline"), "psort": plaso_tool("psort")}
    except Exception as exc:  # noqa: BLE001 - not installed, or its tools not found
        reason = f"plaso is not installed ({exc}); {INSTALL_HINT}"
        if REQUIRE:
            pytest.fail(reason + "; FORENSICS_REQUIRE_EVIDENCE is set, so this is a failure", pytrace=False)
        pytest.skip(reason)


def psort(tools, storage: Path, fmt: str, out: Path) -> Path:
    subprocess.run([tools["psort"], "--status_view", "none", "-o", fmt, "-w", str(out), str(storage)],
                   check=True, capture_output=True, cwd=out.parent)
    return out


@pytest.fixture(scope="session")
def storage(tools, evidence: Path, tmp_path_factory) -> Path:
    """One .plaso file with two sessions: a folder holding an EVTX file and a syslog file (copies: log2timeline
    does not follow links; copy2 keeps the modification time that dates the syslog lines), then an ext2 E01 image
    (log2timeline opens an image given as its source, not one found in a folder)."""
    d = tmp_path_factory.mktemp("plaso")
    src = d / "evidence"
    src.mkdir()
    for rel in (EVTX, SYSLOG):
        shutil.copy2(evidence / rel, src / Path(rel).name)
    out = d / "three.plaso"
    for source, parsers in ((src, "winevtx,text/syslog,text/syslog_traditional"), (evidence / IMAGE, "filestat")):
        subprocess.run([tools["log2timeline"], "--status_view", "none", "--unattended", "--single_process",
                        "--parsers", parsers, "--storage_file", str(out), str(source)], check=True, capture_output=True, cwd=d)
    return out


@pytest.fixture(scope="session")
def psorted(tools, storage: Path) -> list[dict]:
    out = psort(tools, storage, "json_line", storage.with_suffix(".jsonl"))
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="session")
def imported(storage: Path, tmp_path_factory):
    case = Case(tmp_path_factory.mktemp("imported") / "case", create=True)
    report = import_plaso(case, storage)
    return case, report


def _rows(case: Case) -> list[dict]:
    return case.timeline().to_pylist()


def _us(ts) -> int:
    return int(ts.timestamp()) * 1_000_000 + ts.microsecond


def test_import_holds_exactly_what_psort_prints(psorted, imported):
    case, report = imported
    rows = _rows(case)
    assert report.rows_written == len(rows) == len(psorted) and report.events_read == len(psorted)
    ours = sorted((_us(r["timestamp"]), r["timestamp_desc"], r["artifact"], r["message"], r["host"]) for r in rows)
    theirs = sorted((d["timestamp"], d["timestamp_desc"], "plaso:" + d["data_type"], _cap(d["message"]), d.get("hostname"))
                    for d in psorted)
    assert ours == theirs
    kinds = {}
    for d in psorted:
        kinds[d["data_type"]] = kinds.get(d["data_type"], 0) + 1
    assert kinds["windows:evtx:record"] == 14  # 7 records, each with its creation and written time
    assert {r["artifact"] for r in rows} == {"plaso:" + k for k in kinds}


def test_chosen_rows_against_psort(evidence, storage, psorted, imported):
    case, _ = imported
    src = storage.parent / "evidence"  # an import keeps the paths plaso read
    rows = _rows(case)
    # an EVTX record: plaso's creation time event of record 3 (event 4776, credential validation)
    p = next(d for d in psorted if d.get("record_number") == 3 and d["timestamp_desc"] == "Creation Time")
    r = next(r for r in rows if r["record_ref"].endswith(" record=3") and r["timestamp_desc"] == "Creation Time")
    assert r["timestamp"] == dt.datetime(2016, 6, 29, 15, 24, 36, 686000, tzinfo=UTC) and _us(r["timestamp"]) == p["timestamp"]
    assert (r["event_id"], r["channel"], r["provider"], r["host"]) == (4776, "Security", "Microsoft-Windows-Security-Auditing",
                                                                         "temporal")
    assert (r["source"], r["tz_source"], r["evidence_path"]) == ("EVTX", "source_utc", f"{src}/Security_short_selected.evtx")
    assert r["message"] == _cap(p["message"]) and r["message"].startswith(p["message"][:399])
    assert r["parser"].startswith("plaso/") and r["parser"].endswith(":winevtx")
    attrs = json.loads(r["attrs"])
    assert attrs["xml_string"] == p["xml_string"] and attrs["plaso_event"] == r["record_ref"].split()[0]

    # a syslog cron line: command and user read into their columns, plaso's silent UTC flagged
    p = next(d for d in psorted if d["data_type"] == "syslog:cron:task_run" and d["pid"] == 31051)
    r = next(r for r in rows if r["artifact"] == "plaso:syslog:cron:task_run" and json.loads(r["attrs"])["pid"] == 31051)
    assert (_us(r["timestamp"]), r["timestamp_desc"], r["message"]) == (p["timestamp"], p["timestamp_desc"], _cap(p["message"]))
    assert r["message"] == "Cron ran: touch /var/run/crond.somecheck for user: root pid: 31051"
    assert (r["host"], r["provider"], r["process"], r["user"], r["command_line"]) == (
        "myhostname.myhost.com", "CRON", "CRON", "root", "touch /var/run/crond.somecheck")
    assert r["tz_source"] == "assumed_utc" and r["source"] == "SYSLOG"
    zone = json.loads(r["attrs"])["plaso_zone"]
    assert (zone["local_time"], zone["zone"], zone["preferred_time_zone"]) == (True, "UTC", "UTC")

    # a file inside the E01 image: its path, inode and MACB times as plaso's filestat gives them
    p = [d for d in psorted if d["data_type"] == "fs:stat" and d.get("filename") == "/a_directory/another_file"]
    r = [r for r in rows if r["artifact"] == "plaso:fs:stat" and r["path"] == "/a_directory/another_file"]
    assert sorted((d["timestamp"], d["timestamp_desc"]) for d in p) == sorted((_us(x["timestamp"]), x["timestamp_desc"]) for x in r)
    assert len(r) == 3 and {x["evidence_path"] for x in r} == {f"{evidence / IMAGE}!/a_directory/another_file"}
    assert {x["source"] for x in r} == {"FILE"} and {x["tz_source"] for x in r} == {"source_utc"}


def test_filetime_keeps_its_100ns(tools, evidence, tmp_path):
    # plaso's timestamps are microseconds; the FILETIME of an EVTX record has 100 ns digits, which the import keeps
    rows = None
    storage = tmp_path / "sys.plaso"
    subprocess.run([tools["log2timeline"], "--status_view", "none", "--unattended", "--single_process", "--parsers",
                    "winevtx", "--storage_file", str(storage), str(evidence / "python-evtx/tests/data/issue_38.evtx")],
                   check=True, capture_output=True, cwd=tmp_path)
    case = Case(tmp_path / "case", create=True)
    import_plaso(case, storage)
    rows = {r["timestamp_desc"]: r for r in _rows(case)}
    psorted = [json.loads(x) for x in psort(tools, storage, "json_line", tmp_path / "o.jsonl").read_text().splitlines()]
    for d in psorted:
        ft = d["date_time"]["timestamp"]
        ns = (ft - 116444736000000000) * 100
        assert rows[d["timestamp_desc"]]["timestamp"].value == ns and abs(ns - d["timestamp"] * 1000) < 1000
    assert any(r["timestamp"].value % 1000 for r in rows.values())  # digits below the microsecond are there


def test_plaso_rounds_filetime_to_the_microsecond_the_import_does_not(storage, psorted, imported):
    # Security_short_selected.evtx record 9 (2016-06-29 15:24:57.0908 UTC) and the others: whatever plaso's rounding,
    # each row is its record's FILETIME exactly, within a microsecond of psort's time
    case, _ = imported
    rows = {(r["record_ref"].split()[0], r["timestamp_desc"]): r for r in _rows(case)}
    n = 0
    for d in psorted:
        if d["data_type"] == "windows:evtx:record":
            ours = [r for (ref, desc), r in rows.items() if desc == d["timestamp_desc"] and
                    json.loads(r["attrs"]).get("record_number") == d["record_number"]]
            ns = (d["date_time"]["timestamp"] - 116444736000000000) * 100
            assert [r["timestamp"].value for r in ours] == [ns] and abs(ns - d["timestamp"] * 1000) < 1000
            n += 1
    assert n == 14


def test_import_twice_adds_nothing_and_custody_names_the_file(storage, imported):
    case, report = imported
    again = import_plaso(case, storage)
    assert again.rows_written == 0 and again.skipped and again.events_read == 0
    assert case.timeline().num_rows == report.rows_written
    entry = next(c for c in case.store.commits() if c["run"] == report.run_id)
    f = entry["evidence"][0]["files"][0]
    assert f["sha256"] == report.evidence[0]["files"][0]["sha256"] and len(f["md5"]) == 32
    import hashlib

    assert f["sha256"] == hashlib.sha256(storage.read_bytes()).hexdigest()
    assert f["md5"] == hashlib.md5(storage.read_bytes()).hexdigest()
    import plaso

    assert entry["tool"]["plaso"] == plaso.__version__ == entry["plaso"]["version"]
    assert entry["plaso"]["sessions"][0]["product_version"] == plaso.__version__
    assert entry["artifacts"][0]["engine"] == "plaso-import:storage"
    assert case.verify().ok


def test_psort_exports_import_too(tools, storage, imported, psorted, tmp_path):
    case, report = imported
    # json_line: plaso's own event values hash is recomputed, so the export adds nothing to its storage file's rows
    jl = import_plaso(case, storage.with_suffix(".jsonl"))
    assert (jl.kind, jl.events_read, jl.rows_written, jl.duplicates_dropped) == ("json_line", len(psorted), 0, len(psorted))
    # l2tcsv: one line per MACB group; the import splits it back into one row per time description
    csv_case = Case(tmp_path / "csv", create=True)
    l2t = import_plaso(csv_case, psort(tools, storage, "l2tcsv", tmp_path / "o.csv"))
    assert l2t.kind == "l2tcsv" and l2t.rows_written == len(psorted)
    got = sorted((_us(r["timestamp"]) // 1_000_000, r["timestamp_desc"]) for r in _rows(csv_case))
    assert got == sorted((d["timestamp"] // 1_000_000, d["timestamp_desc"]) for d in psorted)
    dyn_case = Case(tmp_path / "dyn", create=True)
    dyn = import_plaso(dyn_case, psort(tools, storage, "dynamic", tmp_path / "o.dyn"))
    assert dyn.kind == "dynamic" and dyn.rows_written == len(psorted)
    # psort's dynamic "datetime" drops the leading zeros of a FILETIME fraction (15:24:57.0908 is written .908000:
    # plaso's FieldFormattingHelper._FormatDateTime scales the fraction up to six digits): only those rows differ
    dyn_us = sorted(_us(r["timestamp"]) for r in _rows(dyn_case))
    json_us = sorted(d["timestamp"] for d in psorted)
    lead0 = sorted(t for t in json_us if f"{t % 1_000_000:06d}"[0] == "0" and t % 1_000_000)
    assert len(lead0) == 3  # record 9 (2016-06-29 15:24:57.0908): two events, and a repeat of it
    assert sorted(set(dyn_us) - set(json_us)) == sorted({t - t % 1_000_000 + int(str(t % 1_000_000).rstrip("0").ljust(6, "0"))
                                                         for t in lead0})
    assert sorted(set(json_us) - set(dyn_us)) == sorted(set(lead0))


def test_engine_collect_cli_keeps_the_storage_and_is_idempotent(tools, evidence, tmp_path, capsys):
    case_dir = tmp_path / "case"
    evtx = evidence / EVTX
    assert main(["-q", "collect", "--engine", "plaso", "--parsers", "winevtx", str(evtx), "--case", str(case_dir)]) == 0
    case = Case(case_dir)
    rows = _rows(case)
    assert len(rows) == 14 and {r["evidence_path"] for r in rows} == {"Security_short_selected.evtx"}
    entry = case.store.commits()[-1]
    st = entry["plaso"]["storage_files"][0]
    kept = case_dir / st["path"]
    assert kept.exists() and st["command_line"][-1] == str(evtx) and "--parsers" in st["command_line"]
    import hashlib

    assert hashlib.sha256(kept.read_bytes()).hexdigest() == st["sha256"]
    assert entry["evidence"][0]["files"][0]["sha256_after"] == entry["evidence"][0]["files"][0]["sha256"]
    assert case.verify().ok
    assert main(["-q", "collect", "--engine", "plaso", "--parsers", "winevtx", str(evtx), "--case", str(case_dir)]) == 0
    assert case.timeline().num_rows == 14 and case.store.commits()[-1]["skipped"]


def test_plaso_zone_kolkata_is_the_analysts(tools, evidence, tmp_path):
    utc = collect_with_plaso(Case(tmp_path / "utc", create=True), [evidence / SYSLOG], parsers="text/syslog_traditional")
    ist = collect_with_plaso(Case(tmp_path / "ist", create=True), [evidence / SYSLOG], parsers="text/syslog_traditional",
                             tz="Asia/Kolkata")
    a = {r["record_ref"].split()[0]: r for r in _rows(Case(tmp_path / "utc"))}
    b = {r["record_ref"].split()[0]: r for r in _rows(Case(tmp_path / "ist"))}
    assert utc.rows_written == ist.rows_written == len(a) == 12 and a.keys() == b.keys()
    for k in a:
        assert a[k]["timestamp"] - b[k]["timestamp"] == dt.timedelta(hours=5, minutes=30)
        assert (a[k]["tz_source"], b[k]["tz_source"]) == ("assumed_utc", "analyst")
        zone = json.loads(b[k]["attrs"])["plaso_zone"]
        assert (zone["zone"], zone["offset_minutes"], zone["why"]) == ("Asia/Kolkata", 330, "log2timeline -z")
    # plaso's warnings (the damaged "MMM" line; its year guess) are the case's problems, nothing silent
    probs = Case(tmp_path / "ist").problems().to_pylist()
    assert sorted(p["kind"] for p in probs) == ["plaso_extraction_warning",
                                                "plaso_timelining_warning"]
    assert any("Invalid month" in p["message"] for p in probs)


def test_export_l2tcsv_and_dynamic_in_kolkata(evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    case.collect([evidence / EVTX], workers=1)
    rows = _rows(case)
    out = tmp_path / "t.csv"
    assert export_plaso(case, out, "l2tcsv", tz="Asia/Kolkata") == len(rows) == 7
    lines = out.read_text().splitlines()
    assert lines[0] == "date,time,timezone,MACB,source,sourcetype,type,user,host,short,desc,version,filename,inode,notes,format,extra"
    first = lines[1].split(",")
    assert len(first) == 17 and all(len(x.split(",")) == 17 for x in lines)
    r = rows[0]  # 2016-06-29 15:24:34.346 UTC is 20:54:34 in Kolkata
    assert first[:9] == ["06/29/2016", "20:54:34", "Asia/Kolkata", "M...", "EVTX", "evtx:Security", "Event Logged", "-", "temporal"]
    assert first[12] == "Security_short_selected.evtx" and first[15] == r["parser"]
    assert f"event_hash: {r['event_hash']}" in first[16]
    dyn = tmp_path / "t.dyn"
    assert main(["-q", "export-plaso", str(case.path), "--format", "dynamic", "--tz", "Asia/Kolkata", "-o", str(dyn)]) == 0
    d = dyn.read_text().splitlines()
    assert d[0].split(",")[:8] == ["datetime", "timestamp_desc", "source", "source_long", "message", "parser", "display_name", "tag"]
    assert d[1].split(",")[:4] == ["2016-06-29T20:54:34.346000+05:30", "Event Logged", "EVTX", "evtx:Security"]
    # what we write, the plaso readers read back: the same instants (l2tcsv to the second)
    back = Case(tmp_path / "back", create=True)
    assert import_plaso(back, dyn).rows_written == 7
    assert sorted(x["timestamp"] for x in _rows(back)) == sorted(x["timestamp"].floor("us") for x in rows)
    back2 = Case(tmp_path / "back2", create=True)
    assert import_plaso(back2, out).rows_written == 7
    assert sorted(x["timestamp"] for x in _rows(back2)) == sorted(x["timestamp"].floor("s") for x in rows)


def test_compare_plaso_on_an_evtx_and_a_syslog_file(tools, evidence, tmp_path, capsys):
    assert main(["compare-plaso", str(evidence / EVTX), str(evidence / SYSLOG), "--json", "--first", "5"]) == 0
    rep = json.loads(capsys.readouterr().out)
    fam = {f["family"]: f for f in rep["families"]}
    ev = fam["evtx"]
    assert (ev["ours"], ev["plaso"], ev["matched"], ev["only_ours"], ev["only_plaso"], ev["time_disagreements"]) == (7, 7, 7, 0, 0, 0)
    sl = fam["syslog"]
    assert (sl["ours"], sl["plaso"], sl["matched"], sl["only_ours"], sl["only_plaso"]) == (12, 12, 12, 0, 0)
    # plaso drops the fraction of "Mar 23 23:01:18.123": the one time disagreement, ours keeps the milliseconds
    assert sl["time_disagreements"] == 1
    d = sl["first_time_disagreements"][0]
    assert d["delta_s"] == -0.123 and d["ours"].endswith("23:01:18.123000000Z") and d["plaso"].endswith("23:01:18.000000000Z")
    # ... and glues the damaged next line "Mar 23 Wrong line ..." onto that record, which we count as a lost record
    assert sl["content_disagreements"] == 1
    c = sl["first_content_disagreements"][0]
    assert "Wrong line" in c["plaso"] and "Wrong line" not in c["ours"]
    assert fam["file-host"]["ours"] == 0 and fam["file-host"]["plaso"] > 0  # plaso's stat of the analyst's copies


# --- without plaso ---------------------------------------------------------------------------------


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_nothing_imports_plaso_at_import_time():
    res = _run("import sys, forensics, forensics.cli, forensics.case, forensics.plaso, forensics.plaso_parity, collectors, "
               "timeline.store; print('plaso' in sys.modules, 'dfvfs' in sys.modules)")
    assert res.returncode == 0 and res.stdout.split() == ["False", "False"], res.stderr


def test_without_plaso_the_commands_say_how_to_install_it(tmp_path, evidence):
    fake = tmp_path / "old.plaso"
    with sqlite3.connect(fake) as con:  # a real SQLite file, as .plaso files are
        con.execute("create table metadata (key text, value text)")
    hide = "import sys; sys.modules['plaso'] = None; from forensics.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", hide, "import-plaso", str(fake), "--case", str(tmp_path / "c")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 8 and INSTALL_HINT in res.stderr and "plaso is not installed" in res.stderr
    # log2timeline looked for only where FORENSICS_PLASO_BIN says
    empty = tmp_path / "bin"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-m", "forensics", "collect", "--engine", "plaso", str(evidence / EVTX), "--case",
                          str(tmp_path / "c2")], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "FORENSICS_PLASO_BIN": str(empty)})
    assert res.returncode == 8 and INSTALL_HINT in res.stderr and f"in {empty}" in res.stderr
    assert not (tmp_path / "c2").exists()
    res = subprocess.run([sys.executable, "-m", "forensics", "compare-plaso", str(evidence / EVTX)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "FORENSICS_PLASO_BIN": str(empty)})
    assert res.returncode == 8 and INSTALL_HINT in res.stderr
    # the rest of the library works without plaso
    code = ("import sys; sys.modules['plaso'] = None\nfrom forensics import Case\n"
            f"c = Case({str(tmp_path / 'c3')!r}, create=True)\nr = c.collect([{str(evidence / EVTX)!r}], workers=1)\n"
            "print(r.rows_written)")
    res = _run(code)
    assert res.returncode == 0 and res.stdout.strip() == "7", res.stderr
