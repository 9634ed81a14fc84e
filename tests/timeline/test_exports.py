"""Exports: every format read back and compared with the timeline's rows, value by value; formula-like
text made inert in CSV and XLSX; every export recorded in the custody log and re-checked by verify."""

from __future__ import annotations

import json
import re

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

import forensics
from forensics.cli import main
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
    out, _ = _export(case, tmp_path, "timesketch-jsonl")
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for g, w in zip(got, _expected(case), strict=True):
        assert list(g)[:4] == ["message", "datetime", "timestamp_desc", "timestamp"]  # Timesketch's fields first
        assert g["message"] == w["message"] and g["timestamp_desc"] == w["timestamp_desc"]
        assert g["datetime"] == w["timestamp"]  # ISO 8601 with offset, nanoseconds kept
        assert g["timestamp"] == w["timestamp_ns"] // 1000  # Timesketch: microseconds since the epoch
        rest = {k: v for k, v in w.items() if k not in ("timestamp", "timestamp_ns", "message", "timestamp_desc")}
        assert {k: g.get(k) for k in rest} == rest  # our columns; a null one is left out
        assert all(v is not None for v in g.values())
    assert got[1]["timestamp"] == 1_669_167_001_123_456  # 01:30:01.123456796: microseconds, floored


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
        assert json.loads(got.pop("tags")) == want.pop("tags")
        assert got == {k: _text_cell(v) for k, v in want.items()}


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
        assert header == output_columns("xlsx") and header[:2] == ["local_time", "timestamp"]
        assert ws.freeze_panes == "A2"  # the header stays in view
        assert ws.auto_filter.ref == f"A1:AD{n + 1}"  # filters over the header and every row
        assert len(sheet_rows) == n
        rows += sheet_rows
    for got, want in zip(rows, _expected(case), strict=True):
        want.pop("timestamp_ns")
        assert json.loads(got.pop("tags")) == want.pop("tags")
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
