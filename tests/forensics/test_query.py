"""The lazy timeline: time windows in the case's zone, filters, search, SQL, on real Parquet and DuckDB."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

import forensics
from timeline.schema import RowBuilder, iso_ns
from timeline.store import CaseStore, write_parquet

NS = 1_000_000_000


def _case(tmp_path, times_ns, tz):
    """A case whose timeline holds one row at each of ``times_ns`` (real Parquet, committed)."""
    store = CaseStore.create(tmp_path / "case", tz=tz)
    rb = RowBuilder()
    for i, t in enumerate(times_ns):
        rb.add(timestamp=t, timestamp_desc="Event Logged", host=f"host{i % 2}", source="SYSLOG", artifact="syslog:auth",
               message=f"row {i} at {iso_ns(t)}", attrs="{}", tags=[], tz_source="evidence_config", evidence_id="e",
               evidence_path="var/log/auth.log", record_ref=f"line={i + 1}", parser="test", event_hash=f"{i:032x}")
    staging = store.staging_dir("run1")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("run1", [staging / "tl-0.parquet"], [])
    return tmp_path / "case"


def _utc_ns(text):
    return int(pd.Timestamp(text, tz="UTC").value)


def test_around_0700_ist_is_0030_to_0630_utc(tmp_path):
    start = _utc_ns("2022-11-22 18:00")
    times = [start + i * 600 * NS for i in range(6 * 18 + 1)]  # every 10 minutes until 2022-11-23 12:00 UTC
    times.append(_utc_ns("2022-11-23 06:30") + 1)  # one nanosecond past the window
    case = _case(tmp_path, times, tz="Asia/Kolkata")
    tl = forensics.open(case)
    assert tl.tz == "Asia/Kolkata"
    df = tl.around("2022-11-23 07:00", before="1h", after="5h").to_pandas()
    assert df["timestamp"].iloc[0] == pd.Timestamp("2022-11-23 00:30", tz="UTC")
    assert df["timestamp"].iloc[-1] == pd.Timestamp("2022-11-23 06:30", tz="UTC")
    assert len(df) == 37  # 00:30, 00:40, ..., 06:30
    assert str(df["local_time"].iloc[0]) == "2022-11-23 06:00:00+05:30"
    assert list(df.columns[:2]) == ["timestamp", "local_time"]
    # the same window given in UTC, and as aware times, gives the same rows
    assert len(tl.around("2022-11-23T01:30Z", before="1h", after="5h")) == 37
    assert len(tl.around(dt.datetime(2022, 11, 23, 7, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
                         before="60min", after="5h")) == 37
    # between is half-open: [00:30, 06:30)
    assert len(tl.between("2022-11-23 06:00", "2022-11-23 12:00")) == 36


def test_between_across_a_dst_change(tmp_path):
    # Europe/London left BST (+01:00) for GMT at 2022-10-30 01:00 UTC: 00:30..02:30 local is three hours of UTC
    times = [_utc_ns("2022-10-29 22:00") + i * 900 * NS for i in range(24)]  # 22:00 .. 03:45 UTC, every 15 min
    case = _case(tmp_path, times, tz="Europe/London")
    df = forensics.open(case).between("2022-10-30 00:30", "2022-10-30 02:30").to_pandas()
    assert df["timestamp"].iloc[0] == pd.Timestamp("2022-10-29 23:30", tz="UTC")
    assert df["timestamp"].iloc[-1] == pd.Timestamp("2022-10-30 02:15", tz="UTC")
    assert len(df) == 12
    assert str(df["local_time"].iloc[0]) == "2022-10-30 00:30:00+01:00"
    assert str(df["local_time"].iloc[-1]) == "2022-10-30 02:15:00+00:00"


def test_filters_search_sql_on_the_corpus(corpus_case):
    case, _ = corpus_case
    tl = forensics.open(case.path)
    assert len(tl) == 25805
    first, last = tl.time_range()
    assert iso_ns(first.value) == "2010-11-21T03:55:59.626427100Z"
    assert list(tl.hosts().items())[:2] == [("DESKTOP-1N4R894", 5275), ("DC1.internal.greendale.edu", 4278)]
    logons = tl.where(event_id=4624, host="Student-PC1.internal.greendale.edu")
    assert len(logons) == 34  # the same counts as pyarrow.compute over the files
    df = logons.to_pandas(["user", "logon_type"], limit=2)
    assert df["timestamp"].iloc[0].value == _utc_ns("2015-08-09 09:17:37.84375")
    assert len(tl.where(event_id=[4624, 4625])) == 830
    assert len(tl.search("lsass")) == 70
    assert len(tl.search(r"vssadmin|wbadmin", regex=True)) == 9
    assert len(tl.where(user="O'Brien")) == 0  # quotes are values, not SQL
    by_id = tl.between("2015-08-08", "2015-08-09", tz="UTC").sql(
        "SELECT event_id, count(*) AS n FROM timeline GROUP BY 1 ORDER BY n DESC, event_id LIMIT 2")
    assert by_id.to_dict("records") == [{"event_id": 7036, "n": 327}, {"event_id": 4624, "n": 34}]


def test_bad_queries_say_why(corpus_case):
    case, _ = corpus_case
    tl = forensics.open(case.path)
    with pytest.raises(forensics.QueryError, match="cannot read time"):
        tl.between("yesterday", "today")
    with pytest.raises(forensics.QueryError, match="unknown time zone"):
        tl.between("2022-01-01", "2022-01-02", tz="Mars/Olympus")
    with pytest.raises(forensics.QueryError, match="unknown column"):
        tl.where(colour="red")
    with pytest.raises(forensics.QueryError, match="cannot read duration"):
        tl.around("2022-01-01", before="a while")
    with pytest.raises(forensics.QueryError, match="query failed"):
        tl.sql("SELECT nope FROM timeline")
