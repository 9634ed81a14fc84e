"""Time truth under odd evidence (issue 16, sections 12-14): every digit a source gives is kept, a year-less
date never postdates its file's last write, and implausible times are kept but flagged."""

from __future__ import annotations

import glob

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from collectors.base import Artifact
from collectors.evtx import EvtxCollector
from timeline.schema import iso_ns

MITRE = "EVTX-to-MITRE-Attack"


def _evtx_rows(path: str, batch_rows: int = 100_000) -> pa.Table:
    c = EvtxCollector()
    art = Artifact("e", path, path, "", 0)
    tables = list(c.collect(art, batch_rows=batch_rows)) + list(c.finish())
    assert c.report(art).errors == []
    return pa.concat_tables(tables)


# --- section 12: EVTX sub-microsecond digits --------------------------------------------------------------

@pytest.mark.parametrize("batch_rows", [100_000, 1])  # column-wise and row-by-row time decisions
def test_evtx_nine_digit_time_created_keeps_its_100ns_digit(evidence, batch_rows):
    path = str(evidence / MITRE / "Antivirus" / "ID1151-Defender health status.evtx")
    t = _evtx_rows(path, batch_rows)
    assert t.num_rows == 455
    # written 11.6 hours after it was created: TimeCreated ('2020-06-23T12:38:31.559394600Z') to the 100 ns
    m = t.filter(pc.equal(t["record_ref"], "record=4 offset=0x38f0"))
    assert iso_ns(m["timestamp"][0].value) == "2020-06-23T12:38:31.559394600Z"
    assert m["attrs"][0].as_py().startswith('{"Record":{"written_time":"2020-06-24T00:16:36.525527100Z"},"Event":')
    assert not any('"time_precision"' in a for a in t["attrs"].to_pylist())


def test_no_row_of_the_mitre_files_stops_at_the_microsecond(evidence):
    files = sorted(glob.glob(str(evidence / MITRE / "**" / "*.evtx"), recursive=True))
    rows = [a for f in files for a in _evtx_rows(f)["attrs"].to_pylist()]
    assert (len(files), len(rows)) == (4, 509)
    assert sum('"time_precision"' in a for a in rows) == 0  # 485 before every digit was parsed
    assert sum('"written_time"' in a for a in rows) == 485


# --- section 13: year-less dates after the last write ------------------------------------------------------

def _mtime(path, when: str) -> None:
    import datetime as dt
    import os

    t = dt.datetime.fromisoformat(when).timestamp()
    os.utime(path, (t, t))


def test_a_year_less_syslog_line_never_postdates_the_last_write(tmp_path):
    from forensics import Case

    ev = tmp_path / "ev"
    ev.mkdir()
    log = ev / "auth.log"
    # written on 2025-12-02: the 'Dec 10' line is of the year before, 'Dec 1' and 'Dec 2' of 2025
    log.write_text("Nov 30 08:00:00 web01 sshd[1]: Accepted password for root from 203.0.113.7 port 22 ssh2\n"
                   "Dec 10 09:00:00 web01 sshd[2]: Accepted password for bob from 203.0.113.8 port 22 ssh2\n")
    _mtime(log, "2025-12-02T12:00:00+00:00")
    yum = ev / "yum.log"
    yum.write_text("Dec 10 09:00:00 Installed: curl-7.29.0-59.el7.x86_64\n")
    _mtime(yum, "2025-12-02T12:00:00+00:00")
    case = Case(tmp_path / "case", create=True, tz="UTC")
    case.collect([ev], workers=1)
    t = case.timeline().sort_by("timestamp")
    got = sorted((r["artifact"], r["record_ref"], iso_ns(ts.value)) for r, ts in
                 zip(t.drop_columns(["timestamp"]).to_pylist(), t["timestamp"]))
    assert got == [
        ("packages:yum", "line=1", "2024-12-10T09:00:00.000000000Z"),
        ("syslog:auth", "line=1", "2024-11-30T08:00:00.000000000Z"),
        ("syslog:auth", "line=2", "2024-12-10T09:00:00.000000000Z"),
    ]
    for a in t["attrs"].to_pylist():
        assert '"year_source":"file modification time 2025-12-02"' in a


def test_a_year_less_line_of_the_last_write_day_keeps_its_year(tmp_path):
    from forensics import Case

    ev = tmp_path / "ev"
    ev.mkdir()
    log = ev / "syslog"
    log.write_text("Dec  2 11:00:00 web01 cron[3]: (root) CMD (true)\n")
    _mtime(log, "2025-12-02T12:00:00+00:00")
    case = Case(tmp_path / "case", create=True, tz="UTC")
    case.collect([ev], workers=1)
    assert [iso_ns(v.value) for v in case.timeline()["timestamp"]] == ["2025-12-02T11:00:00.000000000Z"]


# --- section 14: implausible times -------------------------------------------------------------------------

def test_implausible_times_are_kept_flagged_and_counted(tmp_path, cli):
    import json

    from forensics import Case
    from forensics.plots import time_window

    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "messages").write_text(
        "2023-05-01T10:00:00+00:00 web01 sshd[1]: a plausible line\n"
        "1970-01-01T05:30:00+05:30 web01 kernel: a clock at zero\n"
        "1985-07-01T00:00:00Z web01 app: a wrong epoch\n"
        "2099-12-31T23:00:00Z web01 app: from the future\n"
        "2023-05-01T10:00:01+00:00 web01 sshd[1]: another plausible line\n")
    case = Case(tmp_path / "case", create=True, tz="UTC")
    rep = case.collect([ev], workers=1)
    assert (rep.records_read, rep.rows_written, rep.errors, rep.warnings) == (5, 5, 0, 3)
    assert rep.implausible_times == 3
    assert "(3 implausible times, flagged)" in rep.summary()
    t = case.timeline().sort_by("record_ref")
    flags = [json.loads(a).get("time_flag") for a in t["attrs"].to_pylist()]
    assert list(zip(t["record_ref"].to_pylist(), [iso_ns(v.value) for v in t["timestamp"]], flags)) == [
        ("line=1", "2023-05-01T10:00:00.000000000Z", None),
        ("line=2", "1970-01-01T00:00:00.000000000Z", "epoch"),
        ("line=3", "1985-07-01T00:00:00.000000000Z", "before_1990"),
        ("line=4", "2099-12-31T23:00:00.000000000Z", "future"),
        ("line=5", "2023-05-01T10:00:01.000000000Z", None),
    ]
    # the row's own fields stay as they were, after the flag
    assert json.loads(t["attrs"][1].as_py())["message"] == "a clock at zero"
    p = case.problems().to_pylist()
    assert sorted((x["kind"], x["record_ref"], x["count"]) for x in p) == [
        ("implausible_time", "line=2", 1), ("implausible_time", "line=3", 1), ("implausible_time", "line=4", 1)]
    info = case.info()
    assert info["implausible_times"] == 3 and info["warnings"] == 3
    r = cli("info", str(tmp_path / "case"))
    assert r.returncode == 0, r.stderr
    assert "implausible 3 row(s) with an implausible time" in r.stdout
    # the figures' robust range leaves the same rows out, by their flag
    w = time_window(t["timestamp"].to_pandas(), flags)
    assert w.keep.tolist() == [True, False, False, False, True]
    assert list(w.left_out) == ["flagged by their parser (before_1990 ×1, epoch ×1, future ×1)"]


def test_one_definition_of_implausible_times():
    import pandas as pd

    from forensics import plots
    from timeline.schema import PLAUSIBLE_FROM_NS, time_flags

    assert plots.PLAUSIBLE_FROM.value == PLAUSIBLE_FROM_NS
    now = pd.Timestamp("2026-12-02T00:00:00Z").value
    ts = pa.array([0, -3600 * 10**9, PLAUSIBLE_FROM_NS - 1, PLAUSIBLE_FROM_NS, now + plots.FUTURE_SLACK.value,
                   now + plots.FUTURE_SLACK.value + 1], pa.int64())
    assert time_flags(ts, now) == ["epoch", "epoch", "before_1990", None, None, "future"]
