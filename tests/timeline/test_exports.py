"""Exports: every format read back and compared with the timeline's rows, value by value; formula-like
text made inert in CSV and XLSX; every export recorded in the custody log and re-checked by verify."""

from __future__ import annotations

import datetime
import json
import re

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

import forensics
from forensics.cli import main
from timeline.schema import UNKNOWN_HOST
from timeline.errors import OutputError
from timeline.exports import FORMATS, XLSX_MAX_ROWS, neutralise, output_columns
from timeline.schema import SCHEMA, RowBuilder
from timeline.store import CaseStore, file_sha256, write_parquet

T0 = 1_669_167_000_123_456_789  # 2022-11-23T01:30:00.123456789Z = 07:00:00.123456789+05:30

FORMULAS = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\tleading tab", "\rleading CR"]
TEXTS = [
    "বাংলা: ব্যবহারকারী রোগী-নথি খুলেছেন",  # Bengali
    "हिन्दी: उपयोगकर्ता ने फ़ाइल खोली",  # Hindi
    'message with, commas, and "double quotes"',
    "first line\nsecond line, after a newline",
    "carriage\r\nreturn and 'single' quotes",
    "plain",
]
SUFFIX = {"timesketch-jsonl": "jsonl", "timesketch-csv": "csv", "csv": "csv", "jsonl": "jsonl", "xlsx": "xlsx",
          "parquet": "parquet"}


@pytest.fixture
def case(tmp_path):
    """A case (zone Asia/Kolkata) of 12 rows: Bengali and Hindi text, commas, quotes, newlines and
    formula-like messages, users and attrs; nulls, numbers and tags; committed through the real store."""
    store = CaseStore.create(tmp_path / "case", tz="Asia/Kolkata")
    rb = RowBuilder()
    for i, text in enumerate(FORMULAS + TEXTS):
        rb.add(timestamp=T0 + i * 1_000_000_007, timestamp_desc="Event Logged", host="হাসপাতাল-SRV" if i % 3 else "HOSP-01",
               source="EVTX", artifact="evtx:Security", event_id=4624 + i, channel="Security",
               provider="Microsoft-Windows-Security-Auditing", user=text if i % 2 else None,
               logon_type=3 if i % 2 else None, src_ip="203.0.113.7" if i < 6 else None, message=text,
               attrs=json.dumps({"Event": {"EventData": {"Text": text}}}, ensure_ascii=False),
               tags=["sigma:abc", "attack.t1078, with comma"] if i in (0, 7) else [], tz_source="source_utc",
               evidence_id="ev1", evidence_path="Windows/System32/winevt/Logs/Security.evtx",
               record_ref=f"record={i + 1} offset=0x{4096 + i * 512:x}", parser="test", event_hash=f"{i:032x}")
    staging = store.staging_dir("run1")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("run1", [staging / "tl-0.parquet"], [])
    return tmp_path / "case"


def _expected(case_dir):
    """The timeline's rows as dicts, times as ISO 8601 text computed by pandas (independently of the writers)."""
    df = forensics.open(case_dir).to_pandas()
    rows = []
    for r in df.to_dict("records"):
        r = {k: (None if (v is None or v is pd.NA or (isinstance(v, float) and v != v)) else v) for k, v in r.items()}
        r["timestamp_ns"] = r["timestamp"].value
        r["timestamp"], r["local_time"] = r["timestamp"].isoformat(), r["local_time"].isoformat()
        r["tags"] = list(r["tags"])
        for k in ("event_id", "logon_type", "dst_port"):
            r[k] = None if r[k] is None else int(r[k])
        rows.append(r)
    assert len(rows) == 12
    assert rows[0]["timestamp"] == "2022-11-23T01:30:00.123456789+00:00"
    assert rows[0]["local_time"] == "2022-11-23T07:00:00.123456789+05:30"
    return rows


def _export(case_dir, tmp_path, fmt, **kw):
    out = tmp_path / f"out.{SUFFIX[fmt]}"
    entry = forensics.open(case_dir).export(out, fmt, **kw)
    assert entry["rows"] == 12 and entry["output"]["sha256"] == file_sha256(out)
    return out, entry


def _text_cell(v):
    """What a CSV/XLSX cell holds for a value: JSON for lists, neutralised text, empty for null."""
    if v is None:
        return ""
    if isinstance(v, list):
        return v
    return neutralise(v) if isinstance(v, str) else str(v)


def test_jsonl_round_trip(case, tmp_path):
    out, _ = _export(case, tmp_path, "jsonl")
    lines = out.read_text(encoding="utf-8").splitlines()
    got = [json.loads(line) for line in lines]
    want = [{k: v for k, v in r.items() if k != "timestamp_ns"} for r in _expected(case)]
    assert got == want
    assert list(got[0]) == output_columns("jsonl")
    assert got[6]["message"] == TEXTS[0] and got[0]["message"] == FORMULAS[0]  # JSON keeps text as it is


def test_timesketch_jsonl_round_trip(case, tmp_path):
    out, entry = _export(case, tmp_path, "timesketch-jsonl")
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for g, w in zip(got, _expected(case), strict=True):
        assert list(g)[:4] == ["message", "datetime", "timestamp_desc", "timestamp"]  # Timesketch's fields first
        assert g["message"] == w["message"] and g["timestamp_desc"] == w["timestamp_desc"]
        assert g["datetime"] == w["timestamp"]  # ISO 8601 with offset, nanoseconds kept
        assert g["timestamp"] == w["timestamp_ns"] // 1000  # Timesketch: microseconds since the epoch
        assert g.pop("tag") == w.pop("tags")  # Timesketch's tag field: a list
        rest = {k: v for k, v in w.items() if k not in ("timestamp", "timestamp_ns", "message", "timestamp_desc")}
        assert {k: g.get(k) for k in rest} == rest  # our columns; a null one is left out
        assert all(v is not None for v in g.values())
        # the event's own field, top level (attrs is {"Event": {"EventData": {"Text": ...}}})
        assert set(g) - set(output_columns("timesketch-jsonl")) == {"evtx_Text"}
        assert g["evtx_Text"] == json.loads(w["attrs"])["Event"]["EventData"]["Text"] == w["message"]
    assert got[1]["timestamp"] == 1_669_167_001_123_456  # 01:30:01.123456796: microseconds, floored
    assert entry["top_level_fields"] == 1 and entry["fields_left_in_attrs"] == {}


def _sysmon_case(evidence, tmp_path):
    """A case of the corpus's real Sysmon log (omerbenamram-evtx samples/sysmon.evtx: 60 ProcessAccess
    events, EventID 10), and its records read straight from the file by the Rust parser, by record id."""
    import shutil

    import evtx

    src = evidence / "omerbenamram-evtx" / "samples" / "sysmon.evtx"
    (tmp_path / "ev").mkdir()
    shutil.copy2(src, tmp_path / "ev" / "sysmon.evtx")
    forensics.Case(tmp_path / "case", create=True).collect([tmp_path / "ev"], workers=1, only=["evtx"])
    records = {}
    try:
        for r in evtx.PyEvtxParser(str(src)).records_json():
            records[r["event_record_id"]] = json.loads(r["data"])["Event"]
    except RuntimeError:  # the file's damaged chunk 9: our collector recovers past it, the plain iterator stops
        pass
    return tmp_path / "case", records


def test_timesketch_jsonl_evtx_fields_from_real_sysmon(evidence, tmp_path):
    case_dir, records = _sysmon_case(evidence, tmp_path)
    out = tmp_path / "sysmon.jsonl"
    entry = forensics.open(case_dir).export(out, "timesketch-jsonl")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    access = [r for r in rows if r.get("event_id") == 10]
    assert len(access) == 60
    for r in access:
        rec = records[int(r["evtx_System_EventRecordID"])]  # the same record, read straight from the file
        data = rec["EventData"]
        assert r["evtx_TargetImage"] == data["TargetImage"] and r["evtx_SourceImage"] == data["SourceImage"]
        assert r["evtx_GrantedAccess"] == data["GrantedAccess"] and r["evtx_CallTrace"] == data["CallTrace"]
        assert r["evtx_SourceProcessId"] == str(data["SourceProcessId"])  # text: one type per field for OpenSearch
        assert r["evtx_System_Execution_ProcessID"] == str(rec["System"]["Execution"]["#attributes"]["ProcessID"])
        assert r["evtx_System_Provider_Name"] == "Microsoft-Windows-Sysmon"
        assert {k for k in r if k.startswith("evtx_") and not k.startswith("evtx_System_")} == {f"evtx_{k}" for k in data}
    assert sum(r["evtx_TargetImage"].lower() == "c:\\windows\\system32\\lsass.exe" for r in access) == 60
    assert all(isinstance(v, (str, int, list)) for r in rows for v in r.values())  # no nested objects
    assert all(isinstance(v, str) for r in rows for k, v in r.items() if k.startswith("evtx_"))
    names = {k for r in rows for k in r if k.startswith("evtx_")}
    assert entry["top_level_fields"] == len(names) + 1 and entry["fields_left_in_attrs"] == {}
    assert {r["host_source"] for r in rows} == {"log"}  # the record's Computer: one field for every family


def test_timesketch_field_cap_leaves_the_rest_in_attrs(evidence, tmp_path):
    from timeline.exports import rank_fields, timesketch_fields, write_export

    case_dir, _ = _sysmon_case(evidence, tmp_path)
    tl = forensics.open(case_dir)
    res = write_export(tl.batches(), tmp_path / "capped.jsonl", "timesketch-jsonl", tl.tz, timesketch_max_fields=5)
    rows = [json.loads(line) for line in (tmp_path / "capped.jsonl").read_text(encoding="utf-8").splitlines()]
    first = [k for k in rows[0] if k.startswith("evtx_")][:5]  # no ranking given: the first seen
    assert res.top_level_fields == 5 and {k for r in rows for k in r if k.startswith("evtx_")} == set(first)
    assert res.fields_left_in_attrs["evtx_TargetImage"] == 60  # the 60 ProcessAccess events
    assert all("TargetImage" in r["attrs"] for r in rows if r.get("event_id") == 10)  # lossless: still in attrs
    # ranked: the names most rows have come first (ties by name)
    df = tl.to_pandas(["source", "attrs"])
    ranking = rank_fields(zip(df["source"], df["attrs"]))
    counts = {}
    for s, a in zip(df["source"], df["attrs"]):
        for k in timesketch_fields(s, a):
            counts[k] = counts.get(k, 0) + 1
    assert ranking == sorted(counts, key=lambda k: (-counts[k], k)) and counts[ranking[0]] == len(tl)
    res = write_export(tl.batches(), tmp_path / "ranked.jsonl", "timesketch-jsonl", tl.tz, timesketch_max_fields=12,
                       timesketch_fields_first=ranking)
    rows = [json.loads(line) for line in (tmp_path / "ranked.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {k for r in rows for k in r if k.startswith("evtx_")} == set(ranking[:12]) and res.top_level_fields == 12
    assert sum(res.fields_left_in_attrs.values()) == sum(counts[k] for k in ranking[12:])


def test_timesketch_field_cap_on_the_evtx_corpus(corpus_case, tmp_path):
    """The 34 EVTX files of the corpus hold 1,165 distinct field names (+ host_source, every row's; 2 in records
    found past damaged frames): over Timesketch's budget.  The export writes the 250 that most rows have (ranked on
    a 5,000-row sample), the rest stay in attrs and are counted."""
    case, _ = corpus_case
    out = tmp_path / "corpus.jsonl"
    entry = forensics.open(case.path).export(out, "timesketch-jsonl")
    names: dict[str, int] = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        for k in json.loads(line):
            if k.startswith("evtx_") or k == "host_source":
                names[k] = names.get(k, 0) + 1
    assert entry["top_level_fields"] == len(names) == 250 and names["host_source"] == len(forensics.open(case.path))
    assert len(names) + len(entry["fields_left_in_attrs"]) == 1165 + 1
    for common in ("evtx_System_EventRecordID", "evtx_SubjectUserName", "evtx_TargetUserName", "evtx_Image",
                   "evtx_LogonType", "evtx_IpAddress", "evtx_CommandLine"):
        assert common in names
    covered = sum(names.values())
    assert covered / (covered + sum(entry["fields_left_in_attrs"].values())) > 0.95  # of the field values


def test_timesketch_fields_of_each_family():
    from timeline.exports import timesketch_fields

    web = {"format": "combined", "client": "10.0.0.9", "user": None, "status": 404, "bytes": 209, "ok": True,
           "message": "x", "exit": {"termination": 0, "exit": 1}, "list": [1, "a"], "a.b": "dot", "tag": "t"}
    assert timesketch_fields("WEB", json.dumps(web)) == {
        "web_format": "combined", "web_client": "10.0.0.9", "web_status": "404", "web_bytes": "209", "web_ok": "true",
        "web_message": "x", "web_exit_termination": "0", "web_exit_exit": "1", "web_list": '[1,"a"]', "web_a_b": "dot",
        "web_tag": "t"}
    userdata = {"Event": {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                          "System": {"EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 7036}},
                          "UserData": {"LogFileCleared": {"#attributes": {"xmlns": "http://manifests.microsoft.com/win/2004/08/windows/eventlog"},
                                                          "SubjectUserName": "svc-backup"}}},
                "time_flag": "epoch"}
    assert timesketch_fields("EVTX", json.dumps(userdata)) == {
        "evtx_SubjectUserName": "svc-backup", "evtx_System_EventID_Qualifiers": "16384", "evtx_System_EventID": "7036",
        "evtx_time_flag": "epoch"}
    # a family whose prefix would rebuild one of our columns or a name Timesketch reserves gets a trailing _
    assert timesketch_fields("EVENT", '{"id": 1}') == {"event_id_": "1"}
    assert timesketch_fields(None, '{"x": 1}') == {"attrs_x": "1"}
    assert timesketch_fields("WEB", "not json") == {} and timesketch_fields("WEB", "[1]") == {}


@pytest.mark.parametrize("fmt", ["csv", "timesketch-csv"])
def test_csv_round_trip(case, tmp_path, fmt):
    out, _ = _export(case, tmp_path, fmt)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == (fmt == "csv")  # a BOM for Excel; none for Timesketch's importer
    df = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(df.columns) == output_columns(fmt)
    for got, want in zip(df.to_dict("records"), _expected(case), strict=True):
        if fmt == "timesketch-csv":
            assert got.pop("datetime") == want["timestamp"] and got.pop("timestamp") == str(want["timestamp_ns"] // 1000)
            want = {k: v for k, v in want.items() if k != "timestamp"}
        want.pop("timestamp_ns")
        assert json.loads(got.pop("tag" if fmt == "timesketch-csv" else "tags")) == want.pop("tags")
        assert got == {k: _text_cell(v) for k, v in want.items()}
    # a missing value is an empty cell, never a word
    assert (df == "").to_numpy().sum() == sum(v is None for r in _expected(case) for v in r.values())
    assert not df.isin(["nan", "NaN", "None", "NaT", "null", "<NA>"]).to_numpy().any()


def test_csv_and_xlsx_cells_are_never_formulas(case, tmp_path):
    """The issue's lines: none is a formula in the XLSX (cell types) nor in the CSV (leading quote)."""
    out, _ = _export(case, tmp_path, "csv")
    df = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(df["message"][:6]) == ["'" + f for f in FORMULAS]
    assert list(df["user"][:6]) == ["", "'" + FORMULAS[1], "", "'" + FORMULAS[3], "", "'" + FORMULAS[5]]
    xlsx, _ = _export(case, tmp_path, "xlsx")
    ws = openpyxl.load_workbook(xlsx)["events"]
    header = [c.value for c in ws[1]]
    cells = [row[header.index("message")] for row in ws.iter_rows(min_row=2)]
    for cell, text in zip(cells[:6], FORMULAS):
        assert cell.data_type == "s" and cell.data_type != "f"
        assert _ooxml(cell.value) == "'" + text
    for row in ws.iter_rows():  # no formula anywhere on the sheet
        assert all(c.data_type != "f" for c in row)


def _ooxml(value):
    """Decode the _xHHHH_ escapes OOXML uses for control characters (Excel does; openpyxl leaves them in
    inline strings)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value) if isinstance(value, str) else value


def _xlsx_rows(ws):
    header = [c.value for c in ws[1]]
    return header, [dict(zip(header, (_ooxml(c.value) for c in row))) for row in ws.iter_rows(min_row=2)]


def test_xlsx_round_trip_with_sheets(case, tmp_path):
    tl = forensics.open(case)
    custody_before = list(CaseStore(case).custody.entries())
    out, entry = _export(case, tmp_path, "xlsx", max_rows_per_sheet=5)
    assert entry["sheets"] == ["events", "events 2", "events 3"] and entry["truncated_cells"] == 0
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["events", "events 2", "events 3", "story", "custody", "query"]
    rows = []
    for name, n in (("events", 5), ("events 2", 5), ("events 3", 2)):
        ws = wb[name]
        header, sheet_rows = _xlsx_rows(ws)
        assert header == output_columns("xlsx", "Asia/Kolkata")
        assert header[:3] == ["local_time (Asia/Kolkata)", "timestamp (UTC)", "timestamp_iso"]
        assert ws.freeze_panes == "A2"  # the header stays in view
        assert ws.auto_filter.ref == f"A1:AE{n + 1}"  # filters over the header and every row
        assert len(sheet_rows) == n
        for row in ws.iter_rows(min_row=2):  # real Excel datetimes and numbers, not text
            assert [c.data_type for c in row[:3]] == ["d", "d", "s"] and row[0].number_format == "yyyy-mm-dd hh:mm:ss.000"
            assert row[header.index("event_id")].data_type == "n"
        rows += sheet_rows
    assert rows[0]["local_time (Asia/Kolkata)"] == datetime.datetime(2022, 11, 23, 7, 0, 0, 123000)  # Excel: ms
    assert rows[0]["timestamp (UTC)"] == datetime.datetime(2022, 11, 23, 1, 30, 0, 123000)
    for got, want in zip(rows, _expected(case), strict=True):
        ns = want.pop("timestamp_ns")
        local = pd.Timestamp(want.pop("local_time"))
        assert got.pop("local_time (Asia/Kolkata)") == local.tz_localize(None).floor("ms").to_pydatetime()
        assert got.pop("timestamp (UTC)") == pd.Timestamp(ns, tz="UTC").tz_localize(None).floor("ms").to_pydatetime()
        assert got.pop("timestamp_iso") == want.pop("timestamp")  # the exact time, nine digits
        assert json.loads(got.pop("tags")) == want.pop("tags")
        assert type(got["event_id"]) is int and got["logon_type"] in (3, None)
        assert {k: "" if v is None else v for k, v in got.items()} == {
            k: "" if v is None else (neutralise(v) if isinstance(v, str) else v) for k, v in want.items()}
    story = tl.story()
    assert wb["story"].max_row == len(story) + 1
    cust = [[c.value for c in row] for row in wb["custody"].iter_rows(min_row=2)]
    assert [r[0] for r in cust] == [e["seq"] for e in custody_before]
    assert [r[6] for r in cust] == [e["hash"] for e in custody_before]
    query = {r[0].value: r[1].value for r in wb["query"].iter_rows(min_row=2)}
    assert query["query"] == entry["query"] and query["tz (local_time)"] == "Asia/Kolkata"


def test_xlsx_sheet_limit_is_excels():
    assert XLSX_MAX_ROWS == 1_048_576 - 1


def test_parquet_subset_round_trip(case, tmp_path):
    tl = forensics.open(case).where(host="HOSP-01")
    out = tmp_path / "subset.parquet"
    entry = tl.export(out, "parquet")
    back = pq.read_table(out)
    assert back.schema.equals(SCHEMA, check_metadata=False)
    assert back.equals(tl.to_arrow().cast(SCHEMA))
    assert entry["rows"] == back.num_rows == 4
    assert entry["filters"] == ["\"host\" = 'HOSP-01'"]


def test_every_export_is_in_the_custody_log_and_verified(case, tmp_path):
    tl = forensics.open(case).between("2022-11-23 07:00:02", "2022-11-23 07:00:09")  # the case's zone
    entries = {}
    for fmt in FORMATS:
        out = tmp_path / f"x.{fmt}.{SUFFIX[fmt]}"
        entries[fmt] = tl.export(out, fmt)
        assert entries[fmt]["rows"] == 7
    log = list(CaseStore(case).custody.entries())
    assert [e["action"] for e in log[-6:]] == ["export"] * 6
    for fmt, e in entries.items():
        assert e["format"] == fmt and e["tz"] == "Asia/Kolkata"
        assert e["output"]["path"] == str(tmp_path / f"x.{fmt}.{SUFFIX[fmt]}")
        assert e["filters"] == ["timestamp >= TIMESTAMPTZ '2022-11-23 01:30:02.000000+00' AND "
                                "timestamp < TIMESTAMPTZ '2022-11-23 01:30:09.000000+00'"]
        assert e["query"] == f"SELECT * FROM timeline_all WHERE ({e['filters'][0]}) ORDER BY timestamp, event_hash"
    rep = forensics.Case(case).verify()
    assert rep.ok and rep.exports_checked == 6 and rep.files_checked == 1
    # altered export: verify fails; missing export: noted, not a failure
    csv_path = tmp_path / "x.csv.csv"
    csv_path.write_bytes(csv_path.read_bytes().replace(b"203.0.113.7", b"203.0.113.8", 1))
    (tmp_path / "x.jsonl.jsonl").unlink()
    rep = forensics.Case(case).verify()
    assert rep.problems == [f"export {csv_path}: SHA-256 differs from custody entry #{entries['csv']['seq']} "
                            "(file was altered or overwritten)"]
    assert f"export not present, not re-checked: {tmp_path / 'x.jsonl.jsonl'} (custody entry #{entries['jsonl']['seq']})" in rep.notes
    assert rep.exports_checked == 5
    # exporting again to the same path needs force=True; the newest entry is the one checked
    with pytest.raises(OutputError, match="exists; refusing to overwrite it"):
        tl.export(csv_path, "csv")
    tl.export(csv_path, "csv", force=True)
    assert forensics.Case(case).verify().ok


def test_export_inside_the_case_is_stored_relative_and_never_in_its_data(case, tmp_path):
    (case / "exports").mkdir()
    entry = forensics.open(case).export(case / "exports" / "all.parquet", "parquet")
    assert entry["output"]["path"] == "exports/all.parquet"
    assert len(forensics.open(case)) == 12  # not read as part of the timeline
    rep = forensics.Case(case).verify()
    assert rep.ok and rep.exports_checked == 1
    for bad in (case / "timeline" / "x.parquet", case / "custody.jsonl", case / "staging" / "x.csv"):
        with pytest.raises(forensics.OutputError, match="refusing to write inside the case's own files"):
            forensics.open(case).export(bad, "parquet")
    with pytest.raises(forensics.OutputError, match="unknown export format 'pdf'"):
        forensics.open(case).export(tmp_path / "x.pdf", "pdf")
    with pytest.raises(forensics.OutputError, match="does not exist"):
        forensics.open(case).export(tmp_path / "no" / "such" / "x.csv", "csv")
    assert not list(tmp_path.glob(".*partial*"))


def test_long_cells_are_cut_in_xlsx_only(tmp_path):
    store = CaseStore.create(tmp_path / "case")
    rb = RowBuilder()
    big = "A" * 40_000
    rb.add(timestamp=T0, timestamp_desc="Event Logged", source="EVTX", artifact="evtx:System", message="m", attrs=big,
           tags=[], tz_source="source_utc", evidence_id="e", evidence_path="p", record_ref="record=1", parser="t",
           event_hash="f" * 32)
    staging = store.staging_dir("r")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("r", [staging / "tl-0.parquet"], [])
    tl = forensics.open(tmp_path / "case")
    entry = tl.export(tmp_path / "x.xlsx", "xlsx")
    assert entry["truncated_cells"] == 1
    ws = openpyxl.load_workbook(tmp_path / "x.xlsx")["events"]
    header = [c.value for c in ws[1]]
    assert ws.cell(2, header.index("attrs") + 1).value == "A" * 32_767
    tl.export(tmp_path / "x.jsonl", "jsonl")
    assert json.loads((tmp_path / "x.jsonl").read_text())["attrs"] == big  # lossless elsewhere


def test_cli_export_uses_the_query_filters(case, tmp_path, capsys):
    out = tmp_path / "w.jsonl"
    assert main(["export", str(case), "--format", "jsonl", "--from", "2022-11-23 07:00:03", "--to", "2022-11-23 07:00:06",
                 "--where", "host=HOSP-01", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["record_ref"] for r in rows] == ["record=4 offset=0x1600"]
    entry = list(CaseStore(case).custody.entries())[-1]
    assert printed.startswith(f"wrote 1 row(s) to {out} (jsonl, {out.stat().st_size} bytes, sha256 {file_sha256(out)}); "
                              f"custody entry #{entry['seq']}")
    assert entry["command"] == ["forensics", "export", str(case), "--format", "jsonl", "--from", "2022-11-23 07:00:03",
                                "--to", "2022-11-23 07:00:06", "--where", "host=HOSP-01", "-o", str(out)]
    assert entry["filters"][1] == "\"host\" = 'HOSP-01'"
    assert main(["verify", str(case)]) == 0
    assert "1 export(s) re-checked" in capsys.readouterr().out
    assert main(["export", str(case), "--format", "xlsx", "-o", str(case / "timeline" / "x.xlsx")]) == 10
    assert "refusing to write inside the case's own files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", str(case), "--format", "pdf", "-o", str(out)])
    assert exc.value.code == 2


def test_a_symbolic_link_into_the_case_data_is_refused(case, tmp_path):
    (tmp_path / "innocent").symlink_to(case / "timeline")
    with pytest.raises(forensics.OutputError, match="refusing to write inside the case's own files"):
        forensics.open(case).export(tmp_path / "innocent" / "more.parquet", "parquet")
    assert len(list((case / "timeline").iterdir())) == 1


def test_xlsx_story_row_without_host_real_web_log(evidence, tmp_path):
    """A real Apache log (plaso's test data) has no host: its story's host column is all NaN (float64 under
    pandas 3), which crashed the XLSX export (NAN/INF not supported in write_number()).  Now: an empty cell,
    real datetimes, the exact time in timestamp_iso."""
    import shutil

    (tmp_path / "ev").mkdir()
    shutil.copy2(evidence / "plaso" / "test_data" / "apache_access.log", tmp_path / "ev")
    forensics.Case(tmp_path / "case", create=True, tz="Asia/Kolkata").collect([tmp_path / "ev"], workers=1)
    tl = forensics.open(tmp_path / "case")
    st = tl.story()
    assert len(st) == 1 and st["host"].tolist() == ["(unknown host)"]  # the story never leaves a host empty
    tl.export(tmp_path / "web.xlsx", "xlsx")
    wb = openpyxl.load_workbook(tmp_path / "web.xlsx")
    header, rows = _xlsx_rows(wb["story"])
    assert header == ["timestamp (UTC)", "timestamp_iso", "local_time (Asia/Kolkata)", "host", "level", "technique",
                      "finding", "detector", "rule_id", "count", "first (UTC)", "last (UTC)", "evidence_id",
                      "evidence_path", "record_ref"]
    assert rows == [{"timestamp (UTC)": datetime.datetime(2016, 1, 13, 17, 31, 20),
                     "timestamp_iso": "2016-01-13T17:31:20.000000000+00:00",
                     "local_time (Asia/Kolkata)": datetime.datetime(2016, 1, 13, 23, 1, 20), "host": "(unknown host)",
                     "level": "high", "technique": "T1505.003", "finding": st["finding"][0], "detector": "web_attacks",
                     "rule_id": None, "count": 4, "first (UTC)": datetime.datetime(2016, 1, 13, 17, 31, 20),
                     "last (UTC)": st["last"][0].tz_localize(None).floor("ms").to_pydatetime(),
                     "evidence_id": st["evidence_id"][0], "evidence_path": "apache_access.log", "record_ref": "line=5"}]
    events = wb["events"]
    ev_header = [c.value for c in events[1]]
    assert all(r[ev_header.index("host")].value == UNKNOWN_HOST and r[0].data_type == "d"
               for r in events.iter_rows(min_row=2))
    assert events.max_row - 1 == len(tl) == 15


@pytest.mark.parametrize("semantics", ["pandas 2.2", "pandas 3"])
def test_xlsx_sheet_from_frame_missing_values_and_types(tmp_path, semantics):
    """The story sheet takes whatever columns the story has (Sigma's level, detector, rule_id, count, first,
    last too) and every way pandas 2.2 and 3 spell a missing value: None in object columns (2.2), NaN in str
    and float columns (3), NaT, pd.NA in nullable integers."""
    from timeline.exports import sheet_from_frame, write_export

    t = pd.Series(pd.to_datetime([T0, T0 + 1_500_000, None], utc=True))
    text = (pd.Series(["DC01", None, "FS01"], dtype=object) if semantics == "pandas 2.2"
            else pd.Series(["DC01", None, "FS01"], dtype="str"))
    story = pd.DataFrame({"timestamp": t, "local_time": t.dt.tz_convert("Asia/Kolkata"), "host": text,
                          "technique": ["T1003.001", "T1490", None], "level": ["high", None, "low"],
                          "detector": "sigma", "rule_id": [None, "5ef9853e-4d0e-4a70-846f-a9ca37d876da", None],
                          "count": pd.array([3, None, 1], dtype="Int64"), "score": [0.5, float("nan"), 2.0],
                          "first": t, "last": [pd.NaT, t[1], t[0]], "flag": [True, False, None]})
    sheet = sheet_from_frame("story", story, "Asia/Kolkata")
    write_export(iter(()), tmp_path / "s.xlsx", "xlsx", "Asia/Kolkata", sheets=[sheet])
    header, rows = _xlsx_rows(openpyxl.load_workbook(tmp_path / "s.xlsx")["story"])
    assert header == ["timestamp (UTC)", "timestamp_iso", "local_time (Asia/Kolkata)", "host", "technique", "level",
                      "detector", "rule_id", "count", "score", "first (UTC)", "last (UTC)", "flag"]
    utc0, utc1 = datetime.datetime(2022, 11, 23, 1, 30, 0, 123000), datetime.datetime(2022, 11, 23, 1, 30, 0, 124000)
    assert rows[0] == {"timestamp (UTC)": utc0, "timestamp_iso": "2022-11-23T01:30:00.123456789+00:00",
                       "local_time (Asia/Kolkata)": datetime.datetime(2022, 11, 23, 7, 0, 0, 123000), "host": "DC01",
                       "technique": "T1003.001", "level": "high", "detector": "sigma", "rule_id": None, "count": 3,
                       "score": 0.5, "first (UTC)": utc0, "last (UTC)": None, "flag": True}
    assert rows[1]["timestamp_iso"] == "2022-11-23T01:30:00.124956789+00:00" and rows[1]["timestamp (UTC)"] == utc1
    assert [rows[1][k] for k in ("host", "level", "count", "score", "flag")] == [None, None, None, None, False]
    assert rows[1]["rule_id"] == "5ef9853e-4d0e-4a70-846f-a9ca37d876da" and rows[1]["last (UTC)"] == utc1
    assert [rows[2][k] for k in ("timestamp (UTC)", "timestamp_iso", "local_time (Asia/Kolkata)", "technique", "flag")] \
        == [None, None, None, None, None]
    assert type(rows[0]["count"]) is int


def test_xlsx_times_excel_cannot_hold_are_text(tmp_path):
    """Excel's dates start in 1900 (and its serials are off before 1900-03-01): such a time is its ISO text."""
    store = CaseStore.create(tmp_path / "case", tz="Asia/Kolkata")
    rb = RowBuilder()
    for i, ns in enumerate((-2_208_988_800_000_000_000, -2_203_891_200_000_000_000)):  # 1900-01-01, 1900-03-01 UTC
        rb.add(timestamp=ns, timestamp_desc="t", source="FILE", artifact="fs", message="m", attrs="{}", tags=[],
               tz_source="source_utc", evidence_id="e", evidence_path="p", record_ref=f"r{i}", parser="t",
               event_hash=f"{i:032x}")
    staging = store.staging_dir("r")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("r", [staging / "tl-0.parquet"], [])
    forensics.open(tmp_path / "case").export(tmp_path / "x.xlsx", "xlsx")
    _, rows = _xlsx_rows(openpyxl.load_workbook(tmp_path / "x.xlsx")["events"])
    assert rows[0]["timestamp (UTC)"] == "1900-01-01T00:00:00.000000000+00:00"
    assert rows[0]["local_time (Asia/Kolkata)"] == "1900-01-01T05:21:10.000000000+05:21:10"  # local mean time
    assert rows[1]["timestamp (UTC)"] == datetime.datetime(1900, 3, 1)
