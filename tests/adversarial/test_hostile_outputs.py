"""Hostile event fields in the analyst's outputs: the Timesketch JSONL's top-level fields, the XLSX story sheet
and the figures take crafted names, nesting and values without failing, losing or obeying them."""

from __future__ import annotations

import json

import openpyxl
import pandas as pd

import forensics
from forensics import plots
from timeline.exports import output_columns, sheet_from_frame, write_export
from timeline.schema import RowBuilder
from timeline.store import CaseStore, write_parquet

T0 = 1_669_167_000_123_456_789
DEEP = '{"a":' * 1000 + "[1]" + "}" * 1000  # orjson reads 1,024 levels; Python recursion stops near 1,000
HOSTILE = {
    "message": "not the message", "datetime": "1970-01-01", "tag": ["x"], "__ts_timeline_id": 7, "_id": "x",
    "a.b.c": "dots make OpenSearch objects", "k" * 5000: "long name", "ctl\x00\x1b[31m": "control", "رمز": "rtl",
    "deep": json.loads('{"a":' * 40 + '"bottom"' + "}" * 40), "formula": "=HYPERLINK(\"http://x\",\"y\")",
}


def _case(tmp_path):
    store = CaseStore.create(tmp_path / "case", tz="Asia/Kolkata")
    rb = RowBuilder()
    for i, attrs in enumerate((json.dumps(HOSTILE), DEEP, "not json", "[1, 2]", json.dumps({"Event": "not a dict"}))):
        rb.add(timestamp=T0 + i, timestamp_desc="Event Logged", host=None, source="WEB" if i != 4 else "EVTX",
               artifact="web:access", message=f"row {i}", attrs=attrs, tags=[], tz_source="source_utc",
               evidence_id="e", evidence_path="access.log", record_ref=f"line={i + 1}", parser="t",
               event_hash=f"{i:032x}")
    staging = store.staging_dir("r")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("r", [staging / "tl-0.parquet"], [])
    return forensics.open(tmp_path / "case")


def test_timesketch_fields_from_hostile_attrs(tmp_path):
    tl = _case(tmp_path)
    entry = tl.export(tmp_path / "ts.jsonl", "timesketch-jsonl")
    rows = [json.loads(line) for line in (tmp_path / "ts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert entry["rows"] == len(rows) == 5
    assert [r["message"] for r in rows] == [f"row {i}" for i in range(5)]  # an event field never replaces ours
    assert [r["datetime"] for r in rows] == [f"2022-11-23T01:30:00.12345{6789 + i}+00:00" for i in range(5)]
    first = rows[0]
    extra = {k: v for k, v in first.items() if k not in output_columns("timesketch-jsonl")}
    assert extra["web_message"] == "not the message" and extra["web_datetime"] == "1970-01-01"
    assert extra["web_tag"] == '["x"]' and extra["web___ts_timeline_id"] == "7" and extra["web__id"] == "x"
    assert extra["web_a_b_c"] == "dots make OpenSearch objects"  # no dot: OpenSearch would nest it
    assert extra["web_ctl_31m"] == "control" and extra["web_رمز"] == "rtl"
    assert extra["web_formula"] == HOSTILE["formula"]  # JSON keeps text as it is (no spreadsheet here)
    assert all(len(k) <= 200 and "." not in k for k in first)
    deep = [k for k in extra if k.startswith("web_deep")]
    assert len(deep) == 1 and deep[0] == "web_deep" + "_a" * 15 and json.loads(extra[deep[0]]) == json.loads(
        '{"a":' * 25 + '"bottom"' + "}" * 25)  # 16 levels as names, the rest one JSON text field
    assert set(rows[1]) <= set(output_columns("timesketch-jsonl"))  # 1,000 levels: nothing flattened, still in attrs
    assert rows[1]["attrs"] == DEEP and rows[2]["attrs"] == "not json" and rows[3]["attrs"] == "[1, 2]"
    assert rows[4]["evtx_Event"] == "not a dict"


def test_story_sheet_and_figures_with_hostile_values(tmp_path):
    t = pd.Series(pd.to_datetime([T0, T0 + 1, T0 + 2], utc=True))
    story = pd.DataFrame({"timestamp": t, "host": ["=cmd|' /C calc'!A0", None, "\x00host"],
                          "technique": ["T1059.001", "@SUM(1+1)", float("nan")],
                          "finding": ["-2+3", "x" * 40_000, "\t tab"], "count": [float("inf"), float("nan"), 2.0]})
    write_export(iter(()), tmp_path / "s.xlsx", "xlsx", "UTC", sheets=[sheet_from_frame("story", story, "UTC")])
    ws = openpyxl.load_workbook(tmp_path / "s.xlsx")["story"]
    header = [c.value for c in ws[1]]
    rows = [[c for c in row] for row in ws.iter_rows(min_row=2)]
    assert all(c.data_type != "f" for row in rows for c in row)
    by = [dict(zip(header, (c.value for c in row))) for row in rows]
    assert by[0]["host"] == "'=cmd|' /C calc'!A0" and by[1]["technique"] == "'@SUM(1+1)" and by[0]["finding"] == "'-2+3"
    assert len(by[1]["finding"]) == 32_767 and by[2]["finding"].startswith("'")
    assert by[0]["count"] == "inf" and by[1]["count"] is None and by[2]["count"] == 2
    fig = plots.story_timeline(story)  # the figure draws the text as text; nothing is evaluated
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == ["? ×2", "@SUM(1+1)", "T1059.001"]  # an infinite count: no count shown
