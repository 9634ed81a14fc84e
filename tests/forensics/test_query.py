"""The lazy timeline: time windows in the case's zone, filters, search, SQL, on real Parquet and DuckDB."""

from __future__ import annotations

import datetime as dt
import re

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
    assert len(tl) == 26024
    first, last = tl.time_range()
    assert iso_ns(first.value) == "2010-11-21T03:55:59.626427100Z"
    assert list(tl.hosts().items())[:2] == [("DESKTOP-1N4R894", 5379), ("DC1.internal.greendale.edu", 4278)]
    logons = tl.where(event_id=4624, host="Student-PC1.internal.greendale.edu")
    assert len(logons) == 35  # the same counts as pyarrow.compute over the files (one read past a damaged frame)
    df = logons.to_pandas(["user", "logon_type"], limit=2)
    assert df["timestamp"].iloc[0].value == _utc_ns("2015-08-09 09:17:37.84375")
    assert len(tl.where(event_id=[4624, 4625])) == 831
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


# --- pandas: dtypes, where syntax, fields (issue 17) -------------------------------------------------------------


def test_integer_columns_are_nullable_ints_and_sql_times_concat(corpus_case):
    case, _ = corpus_case
    tl = forensics.open(case.path)
    df = tl.to_pandas(["event_id", "logon_type", "dst_port"])
    for col in ("event_id", "logon_type", "dst_port"):
        assert str(df[col].dtype) == "Int32", col  # the schema's int32, never float64
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert int(df["event_id"].isna().sum()) == 0 and int(df["logon_type"].notna().sum()) == 866
    assert int(df["dst_port"].notna().sum()) == 155 and int(df["dst_port"].min()) == 53 and int(df["dst_port"].max()) == 57397
    assert df["logon_type"].value_counts().head(3).to_dict() == {5: 578, 2: 117, 3: 83}
    logons = tl.where(event_id=4624, host="Student-PC1.internal.greendale.edu")
    s = logons.sql("SELECT timestamp, event_id, logon_type, dst_port FROM timeline ORDER BY timestamp, event_hash LIMIT 2")
    assert [str(s[c].dtype) for c in s.columns] == ["datetime64[ns, UTC]", "Int32", "Int32", "Int32"]
    assert s["event_id"].tolist() == [4624, 4624] and s["logon_type"].tolist() == [0, 5]
    assert s["dst_port"].isna().all()
    both = pd.concat([logons.to_pandas(["event_id", "logon_type"], limit=2), s], ignore_index=True)
    assert str(both["timestamp"].dtype) == "datetime64[ns, UTC]" and str(both["event_id"].dtype) == "Int32"
    assert both["timestamp"].iloc[2] == both["timestamp"].iloc[0] == pd.Timestamp("2015-08-09 09:17:37.84375", tz="UTC")
    # DuckDB's session zone is UTC on any machine: date parts are UTC's
    z = tl.sql("SELECT current_setting('TimeZone') AS tz, date_trunc('day', min(timestamp)) AS d FROM timeline")
    assert z["tz"][0] == "UTC" and z["d"][0] == pd.Timestamp("2010-11-21", tz="UTC") and str(z["d"].dtype).endswith("UTC]")
    # count(*) and other computed integers keep pandas' default
    assert str(tl.sql("SELECT count(*) AS n FROM timeline")["n"].dtype) == "int64"


def test_case_timeline_and_problems_as_dataframes(corpus_case):
    case, report = corpus_case
    t = case.timeline()
    df = case.timeline(as_pandas=True)
    assert t.num_rows == len(df) == 26024
    assert list(df.columns[:2]) == ["timestamp", "local_time"] and str(df["event_id"].dtype) == "Int32"
    assert df["event_hash"].tolist() == t.column("event_hash").to_pylist()  # the same rows in the same order
    assert len(df.fx.logons()) == len(forensics.open(case.path).logons())
    p = case.problems(as_pandas=True)
    # 61 warnings (damage noticed, nothing lost) and 34 errors standing for the 473 records counted lost
    assert len(p) == case.problems().num_rows == 95 and p["severity"].value_counts().to_dict() == {"warning": 61, "error": 34}
    by = p.groupby("severity")["count"].sum()
    assert (by["warning"], by["error"]) == (report.warnings, report.errors) == (61, 473) and str(p["count"].dtype) == "int64"
    small = case.timeline(["timestamp", "event_id"], as_pandas=True)
    assert list(small.columns) == ["timestamp", "local_time", "event_id"]
    assert len(case.sightings(as_pandas=True)) == case.sightings().num_rows == 28286


def test_first_seen_on_a_dataframe(corpus_case):
    case, _ = corpus_case
    df = forensics.open(case.path).where(event_id=[4624, 4625, 10]).to_pandas()
    assert df["src_ip"].isna().any()  # empty cells among the searched columns (pandas 3 raised TypeError here)
    fs = df.fx.first_seen("lsass")
    assert fs["host"].tolist() == ["*", "DESKTOP-2KGM189", "WIN-03DLIIOFRRA", "WIN-L0ZZQ76PMUF"]
    assert fs["count"].tolist() == [64, 60, 2, 2]
    assert fs["first"].iloc[0] == pd.Timestamp("2015-08-24 06:57:38.546875", tz="UTC")
    assert fs["first_record_ref"].iloc[1] == "record=1754 offset=0x6318"
    assert df.fx.first_seen("no-such-indicator-anywhere").empty


def test_where_in_ranges_ilike_not_and_text_syntax(corpus_case):
    from forensics.query import like, not_, within

    case, _ = corpus_case
    tl = forensics.open(case.path)
    n = len(tl)
    assert n == 26024
    # any of, ranges (range: end excluded; within and lo..hi: both ends included)
    for view in (tl.where(event_id=[4624, 4625]), tl.where(event_id=(4624, 4625)), tl.where(event_id=range(4624, 4626)),
                 tl.where(event_id=within(4624, 4625)), tl.where("event_id=4624,4625"), tl.where("event_id=4624..4625"),
                 tl.where(event_id=["4624", 4625.0]),
                 tl.where(event_id=tl.where(event_id=[4624, 4625]).to_pandas(["event_id"])["event_id"].unique())):
        assert len(view) == 831
    assert len(tl.where(event_id=[4624, 4700])) == len(tl.where(event_id=4624)) == 815  # a list is not its range
    assert len(tl.where("logon_type=3..10")) == len(tl.where(logon_type=range(3, 11))) == 692
    assert len(tl.where("logon_type=..2")) == 174 and len(tl.where("logon_type=10..")) == 1
    assert len(tl.where(dst_port=within(1, 1023))) == len(tl.where("dst_port=1..1023")) == 122
    # ILIKE: case-insensitive, % and _, backslashes are ordinary characters
    assert len(tl.where(path=like("%\\lsass.exe"))) == 62
    assert len(tl.where("path~%\\LSASS.EXE", event_id=10)) == 60
    assert len(tl.where(path=like("%\\lsass.exe", "%\\svchost.exe"))) == len(tl.where(path=like("%\\lsass.exe"))) \
        + len(tl.where(path=like("%\\svchost.exe")))
    # NOT: every row the condition leaves out, empty ones included
    assert len(tl.where(event_id=4624)) + len(tl.where(event_id=not_(4624))) == n
    system = len(tl.where(user="NT AUTHORITY\\SYSTEM"))
    assert system == 1434 and len(tl.where("user!=NT AUTHORITY\\SYSTEM")) == n - system == 24590
    assert len(tl.where(user=None)) == len(tl.where("user=")) == len(tl.where(user=pd.NA)) == 5999
    assert len(tl.where(user=[None, "NT AUTHORITY\\SYSTEM"])) == 5999 + 1434
    assert len(tl.where(user=not_(None))) == len(tl.where("user!=")) == n - 5999
    assert len(tl.where("event_id!=4624,4625")) == n - 831 and len(tl.where("path!~%\\lsass.exe")) == n - 62
    # several conditions: all hold; the values are data, never SQL
    assert len(tl.where("event_id=4624,4625", "logon_type=3..10")) == 667
    assert len(tl.where(user="x' OR '1'='1")) == 0 and len(tl.where(path=like("%' OR 1=1 --"))) == 0
    assert "'x'' OR ''1''=''1'" in tl.where(user="x' OR '1'='1")._where[0]  # shown to people with the value written out


def test_where_refuses_bad_input_clearly(corpus_case):
    case, _ = corpus_case
    tl = forensics.open(case.path)
    bad = {"event_id=abc": "event_id holds whole numbers; 'abc' is not one",
           "event_id=4624..x": "event_id holds whole numbers; 'x' is not one",
           "event_id~46%": "event_id is not text",
           "colour=red": "unknown column 'colour'",
           "event_id": "cannot read condition 'event_id'",
           "=4624": "cannot read condition"}
    for cond, why in bad.items():
        with pytest.raises(forensics.QueryError, match=re.escape(why)):
            len(tl.where(cond))
    with pytest.raises(forensics.QueryError, match="range with a step"):
        tl.where(event_id=range(4624, 4630, 2))
    with pytest.raises(forensics.QueryError, match="is not one"):
        tl.where(logon_type=3.5)
    with pytest.raises(forensics.QueryError, match="not 4624"):
        tl.where(4624)


def test_where_tags_from_saved_sigma_matches(corpus_case, sigma_dir, tmp_path):
    import shutil

    from forensics import sigma
    from forensics.query import like, not_

    case, _ = corpus_case
    shutil.copytree(case.path, tmp_path / "case")  # tagging writes into the case: a copy
    rules = sigma_dir / "rules/windows/process_access"
    run = sigma.run(forensics.open(tmp_path / "case"), rules)
    rid = "5ef9853e-4d0e-4a70-846f-a9ca37d876da"
    assert run.matches["rule_id"].tolist() == [rid, rid]
    sigma.save(forensics.open(tmp_path / "case"), run, [str(rules)])
    tl = forensics.open(tmp_path / "case")
    tagged = tl.where(tags=f"sigma:{rid}")
    assert len(tagged) == 2 and sorted(tagged.to_pandas()["event_hash"]) == sorted(run.matches["event_hash"])
    assert len(tl.where(tags=["attack.t1003.001", "no-such-tag"])) == 2
    assert len(tl.where(tags=like("ATTACK.T1003%"))) == len(tl.where("tags~attack.t1003%")) == 2
    assert len(tl.where(tags=None)) == len(tl.where("tags=")) == 26022
    assert len(tl.where(tags=not_(None))) == len(tl.where("tags!=")) == 2
    assert len(tl.where(tags="attack.t1003")) == 0  # a tag, not a prefix
    assert len(tl.where("tags!=attack.t1003.001")) == 26022


def test_fields_and_event_data_are_typed_columns(corpus_case):
    case, _ = corpus_case
    tl = forensics.open(case.path)
    view = tl.where(event_id=10, channel="Microsoft-Windows-Sysmon/Operational")
    f = view.fields("TargetImage", "GrantedAccess", "SourceProcessId")
    assert list(f.columns) == ["timestamp", "local_time", "host", "event_id", "channel", "TargetImage", "GrantedAccess",
                               "SourceProcessId", "evidence_id", "evidence_path", "record_ref"]
    assert len(f) == 60 and str(f["SourceProcessId"].dtype) == "Int64" and str(f["event_id"].dtype) == "Int32"
    first = f.iloc[0]
    assert (first["TargetImage"], first["GrantedAccess"], first["SourceProcessId"], first["record_ref"]) == (
        "C:\\Windows\\system32\\lsass.exe", "0x1000", 780, "record=1754 offset=0x6318")
    assert first["timestamp"] == pd.Timestamp("2017-12-26 13:11:21.176720", tz="UTC")
    hexed = view.fields("GrantedAccess", dtypes={"GrantedAccess": "int"})["GrantedAccess"]
    assert str(hexed.dtype) == "Int64" and hexed.value_counts().head(2).to_dict() == {4096: 52, 5136: 3}
    # the accessor reads the same fields the same way, keeping the frame's index
    df = view.to_pandas()
    e = df.fx.event_data(["TargetImage", "GrantedAccess", "SourceProcessId"])
    assert e.index.equals(df.index) and e.dtypes.equals(f.dtypes) and e.equals(f)
    assert df.fx.event_data("TargetImage")["TargetImage"].tolist() == f["TargetImage"].tolist()
    # UserData (the event's one element), extra columns; rows without the field hold <NA>
    ud = tl.where(event_id=105).fields("BackupPath", "Channel", columns=["provider"])
    assert ud["BackupPath"].iloc[0] == "C:\\Windows\\System32\\Winevt\\Logs\\Archive-System-2012-03-14-04-17-39-932.evtx"
    assert ud["Channel"].tolist()[:2] == ["System", "Application"] and "provider" in ud.columns
    logon = tl.where(event_id=[4624, 7036]).fields("LogonType", "TargetUserName")
    assert str(logon["LogonType"].dtype) == "Int64"
    assert int(logon["LogonType"].notna().sum()) == len(tl.where(event_id=4624))
    with pytest.raises(forensics.QueryError, match="not a whole number"):
        view.fields("TargetImage", dtypes={"TargetImage": "int"})
    with pytest.raises(forensics.QueryError, match="also timeline columns"):
        view.fields("host")
    with pytest.raises(forensics.QueryError, match="not a field name"):
        view.fields('Bad"Name')


def test_fields_of_a_windows_event_export_read_like_evtx(evidence, tmp_path):
    """OTRF's NXLog JSON export: EventData at the same place (``$.Event.EventData``), numbers written as text."""
    import zipfile

    z = evidence / "OTRF-Security-Datasets/datasets/atomic/windows/credential_access/host/cmd_lsass_memory_dumpert_syscalls.zip"
    with zipfile.ZipFile(z) as zf:
        (tmp_path / "dumpert.json").write_bytes(zf.read("cmd_lsass_memory_dumpert_syscalls_2020-10-1822561997.json"))
    case = forensics.Case(tmp_path / "case", create=True)
    case.collect([tmp_path / "dumpert.json"], workers=1)
    tl = forensics.open(case.path)
    view = tl.where(channel="Microsoft-Windows-Sysmon/Operational", event_id=10)
    f = view.fields("TargetImage", "GrantedAccess", "SourceProcessId", "SourceImage")
    assert len(f) == 44 and str(f["SourceProcessId"].dtype) == "Int64"  # "6772" in the export: a whole number
    dump = f[f["SourceImage"] == "C:\\Users\\wardog\\Desktop\\Outflank-Dumpert.exe"]
    assert len(dump) >= 1 and set(dump["TargetImage"]) == {"C:\\windows\\system32\\lsass.exe"}
    assert set(dump["GrantedAccess"]) == {"0x1fffff"} and set(dump["SourceProcessId"]) == {6772}
    assert view.to_pandas().fx.event_data(["TargetImage", "GrantedAccess", "SourceProcessId", "SourceImage"]).equals(f)


def test_filter_values_are_parameters_that_still_reach_the_parquet_scan(corpus_case):
    """Values are bound as DuckDB parameters (session variables), not SQL text, and DuckDB still pushes the
    filters down to the Parquet row groups (the time window and the event ids prune the scan)."""
    case, _ = corpus_case
    tl = forensics.open(case.path).between("2015-08-08", "2015-08-09", tz="UTC").where("event_id=4624,4625")
    con, where = tl._con()
    try:
        assert "2015" not in where and "4624" not in where and "getvariable(" in where
        plan = con.sql(f"EXPLAIN SELECT count(*) FROM timeline_all WHERE {where}").fetchall()[0][1]
    finally:
        con.close()
    scan = plan[plan.index("PARQUET_SCAN"):]
    assert "timestamp >= '2015-08-08 00:00:00+00'" in scan and "event_id >= 4624" in scan
    assert len(tl) == 34


def test_sql_times_are_utc_on_a_machine_in_another_zone(corpus_case):
    """DuckDB labels times with the machine's zone (TZ=Asia/Kolkata: +05:30, and date parts in IST) unless told:
    the timeline's connection is UTC's, so sql() gives what to_pandas() gives anywhere."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    case, _ = corpus_case
    code = ("import sys, forensics, duckdb\n"
            "print(duckdb.connect().sql(\"SELECT current_setting('TimeZone')\").fetchall()[0][0])\n"
            "s = forensics.open(sys.argv[1]).sql(\"SELECT timestamp, date_trunc('day', timestamp) AS d FROM timeline \"\n"
            "                                    \"ORDER BY timestamp, event_hash LIMIT 1\")\n"
            "print(s['timestamp'].dtype, s['timestamp'][0].isoformat(), s['d'][0].isoformat())\n")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, TZ="Asia/Kolkata", PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-c", code, str(case.path)], capture_output=True, text=True, env=env, cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["Asia/Kolkata",  # DuckDB's own default on this machine
                                     "datetime64[ns, UTC] 2010-11-21T03:55:59.626427100+00:00 2010-11-21T00:00:00+00:00"]
