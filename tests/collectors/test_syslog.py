"""Syslog: dialects, compression, years, zones, fields — on plaso's real samples and generated lines."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from collectors import Artifact, SyslogCollector
from collectors.text import syslog_years

UTC = dt.timezone.utc


def _ns(*args, tz=UTC) -> int:
    d = dt.datetime(*args, tzinfo=tz)
    return int(d.timestamp()) * 1_000_000_000 + d.microsecond * 1000


def collect(path: Path, mtime: dt.datetime | None = None, tz: str | None = None, tz_source: str | None = None,
            name: str | None = None):
    c = SyslogCollector()
    art = Artifact("e1", name or path.name, str(path), "0" * 64, path.stat().st_size, tz=tz, tz_source=tz_source,
                   mtime_ns=None if mtime is None else int(mtime.timestamp() * 1e9))
    tables = list(c.collect(art)) + list(c.finish())
    return pa.concat_tables(tables).to_pylist() if tables else [], c.report(art)


@pytest.fixture
def plaso(evidence: Path) -> Path:
    return evidence / "plaso" / "test_data"


def test_sshd_lines_give_user_source_ip_and_outcome(plaso):
    rows, rep = collect(plaso / "syslog" / "syslog_ssh.log", mtime=dt.datetime(2020, 6, 1, tzinfo=UTC))
    assert len(rows) == 9 and not rep.errors
    r = rows[2]
    assert r["timestamp"] == dt.datetime(2020, 3, 11, 22, 55, 30, tzinfo=UTC)
    assert (r["host"], r["provider"], r["user"], r["src_ip"]) == ("ubuntu2015", "sshd", "plaso", "2001:0db8:0a0b:12f0:0000:0000:0000:0001")
    attrs = json.loads(r["attrs"])
    assert (attrs["outcome"], attrs["method"], attrs["src_port"], attrs["year"]) == ("success", "password", 42532, 2020)
    assert attrs["year_source"] == "file modification time 2020-06-01"
    assert r["tz_source"] == "assumed_utc" and r["record_ref"] == "line=3" and r["artifact"] == "syslog:syslog_ssh"
    fails = [(r["user"], r["src_ip"]) for r in rows if json.loads(r["attrs"]).get("outcome") == "failure"]
    assert fails == [("plaso", "001:db8:a0b:12f0::1"), ("root", "188.124.3.41")]


def test_rfc5424_and_forward_formats_keep_microseconds_offsets_and_continuations(plaso):
    rows, rep = collect(plaso / "syslog" / "syslog_rsyslog_SyslogProtocol23Format")
    assert len(rows) == 9 and not rep.errors
    assert rows[0]["timestamp"] == dt.datetime(2021, 3, 6, 4, 7, 38, 251122, tzinfo=UTC)
    assert rows[0]["tz_source"] == "embedded_offset"
    a0 = json.loads(rows[0]["attrs"])
    assert (a0["facility"], a0["severity"], a0["format"], rows[0]["provider"]) == ("user", "debug", "rfc5424", "log_tag")
    assert json.loads(rows[1]["attrs"])["message"] == " this is info\nwith another line"  # kept as written

    fwd, rep = collect(plaso / "syslog" / "syslog_rsyslog_ForwardFormat")
    assert len(fwd) == 9 and not rep.errors
    assert [r["record_ref"] for r in fwd[:3]] == ["line=1 part=1", "line=1 part=2", "line=2 part=2"]
    assert fwd[1]["message"] == "hostname log_tag this is info\nwith another line"
    assert fwd[4]["timestamp"] == dt.datetime(2021, 3, 6, 4, 7, 33, 203756, tzinfo=UTC)
    assert fwd[4]["provider"] == "systemd"


def test_chromeos_iso_lines_with_severity_and_no_host(plaso):
    rows, _ = collect(plaso / "syslog" / "syslog_chromeos")
    assert len(rows) == 8
    r = rows[0]
    assert r["timestamp"] == dt.datetime(2016, 10, 25, 19, 37, 23, 297265, tzinfo=UTC)  # -07:00 honoured
    assert (r["host"], r["provider"], json.loads(r["attrs"])["severity"]) == (None, "periodic_scheduler", "INFO")


def test_compressed_copies_give_the_same_rows(plaso):
    mtime = dt.datetime(2013, 1, 10, tzinfo=UTC)
    plain, _ = collect(plaso / "syslog_copy", mtime)
    assert len(plain) == 12
    for name in ("syslog.bz2", "syslog.xz"):
        rows, rep = collect(plaso / name, mtime)
        assert [(e.kind, e.record_ref) for e in rep.errors] == [("unparsed_line", "line=7"), ("unparsed_line", "line=11")]
        assert [(r["timestamp"], r["message"], r["event_hash"]) for r in rows] == \
               [(r["timestamp"], r["message"], r["event_hash"]) for r in plain], name


def test_gzip_header_time_dates_year_less_lines(plaso):
    # syslog.gz's header keeps the log's modification time (2012-07-28 16:44:07 UTC) whatever the copy's file time:
    # the same lines as the plain copy dated by that time (plaso dates them the same way)
    header_time = dt.datetime(2012, 7, 28, 16, 44, 7, tzinfo=UTC)
    plain, _ = collect(plaso / "syslog_copy", header_time)
    rows, rep = collect(plaso / "syslog.gz", dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert [(r["timestamp"], r["message"], r["event_hash"]) for r in rows] == \
           [(r["timestamp"], r["message"], r["event_hash"]) for r in plain]
    assert rows[0]["timestamp"] == dt.datetime(2010, 1, 22, 7, 52, 33, tzinfo=UTC)
    assert json.loads(rows[0]["attrs"])["year_source"] == "gzip header modification time 2012-07-28, 1 New Year roll-over(s)"


def test_truncated_gzip_keeps_the_lines_before_the_cut_and_counts_the_loss(plaso, tmp_path):
    data = gzip.compress((plaso / "syslog_copy").read_bytes() * 40)
    cut = tmp_path / "syslog.1.gz"
    cut.write_bytes(data[: len(data) // 2])
    rows, rep = collect(cut, dt.datetime(2013, 1, 10, tzinfo=UTC))
    assert 0 < len(rows) < 480
    assert {e.kind for e in rep.errors} == {"unparsed_line", "truncated"} and rep.errors[-1].kind == "truncated"
    assert rows[-1]["artifact"] == "syslog:syslog"


def test_year_less_lines_crossing_new_year_in_kolkata(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(
        "Dec 31 23:59:58 app01 sshd[100]: Failed password for invalid user admin from 203.0.113.7 port 50000 ssh2\n"
        "Jan  1 00:00:03 app01 sshd[101]: Accepted password for root from 203.0.113.7 port 50001 ssh2\n"
        "Jan  1 00:05:00 app01 sudo:     root : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/vssadmin delete\n"
    )
    rows, rep = collect(log, mtime=dt.datetime(2023, 1, 1, 6, 0, tzinfo=UTC), tz="Asia/Kolkata", tz_source="evidence_config")
    assert not rep.errors and len(rows) == 3
    # 23:59:58 IST on 31 Dec 2022 is 18:29:58 UTC; 00:00:03 IST on 1 Jan 2023 is 18:30:03 UTC on 31 Dec
    assert rows[0]["timestamp"] == dt.datetime(2022, 12, 31, 18, 29, 58, tzinfo=UTC)
    assert rows[1]["timestamp"] == dt.datetime(2022, 12, 31, 18, 30, 3, tzinfo=UTC)
    assert [json.loads(r["attrs"])["year"] for r in rows] == [2022, 2023, 2023]
    assert json.loads(rows[0]["attrs"])["year_source"] == "file modification time 2023-01-01, 1 New Year roll-over(s)"
    assert {r["tz_source"] for r in rows} == {"evidence_config"}
    assert (rows[0]["user"], rows[0]["src_ip"], json.loads(rows[0]["attrs"])["invalid_user"]) == ("admin", "203.0.113.7", True)
    assert (rows[2]["user"], rows[2]["target_user"], rows[2]["command_line"]) == ("root", "root", "/usr/bin/vssadmin delete")
    assert rows[0]["artifact"] == "syslog:auth"


def test_dst_ambiguous_and_missing_local_times_are_flagged(tmp_path):
    log = tmp_path / "messages"
    log.write_text("Nov  6 01:30:00 h1 app: fall back\nMar 12 02:30:00 h1 app: spring forward\n")
    rows, _ = collect(log, mtime=dt.datetime(2023, 3, 13, tzinfo=UTC), tz="America/New_York", tz_source="analyst")
    fall, spring = rows
    assert fall["timestamp"] == dt.datetime(2022, 11, 6, 5, 30, tzinfo=UTC)  # the earlier (EDT, -04:00) instant
    assert "ambiguous" in json.loads(fall["attrs"])["time_note"]
    assert spring["timestamp"] == dt.datetime(2023, 3, 12, 7, 30, tzinfo=UTC)  # read with EST (-05:00)
    assert "does not exist" in json.loads(spring["attrs"])["time_note"]
    assert {r["tz_source"] for r in rows} == {"analyst"}


def test_without_a_modification_time_year_less_lines_are_not_guessed(tmp_path):
    log = tmp_path / "syslog"
    log.write_text("Mar  1 10:00:00 h1 app: one\n2021-03-01T10:00:00+05:30 h1 app: two\n")
    rows, rep = collect(log, mtime=None)
    assert [r["timestamp"] for r in rows] == [dt.datetime(2021, 3, 1, 4, 30, tzinfo=UTC)]
    assert [w.kind for w in rep.warnings] == ["no_year"]


def test_lines_that_are_not_syslog_are_counted_not_dropped(tmp_path):
    log = tmp_path / "syslog"
    log.write_text("garbage first line\nMar  1 10:00:00 h1 app: one\n")
    assert not SyslogCollector.matches(str(log))
    log.write_text("Mar  1 10:00:00 h1 app: one\nMar 31 25:00:00 h1 app: bad hour\n")
    rows, rep = collect(log, mtime=dt.datetime(2021, 4, 1, tzinfo=UTC))
    assert len(rows) == 1 and [e.kind for e in rep.errors] == ["bad_time"]


def test_a_damaged_header_line_is_a_lost_record_not_a_continuation(plaso):
    # plaso's sample holds "MMM 22 07:54:32 ..." and "Mar 23 Wrong line ...": gluing them onto the record before
    # would change that record's message (found by the plaso parity report); a tab-indented line still continues.
    rows, rep = collect(plaso / "syslog_copy", dt.datetime(2013, 1, 10, tzinfo=UTC))
    by_ref = {r["record_ref"]: r for r in rows}
    assert json.loads(by_ref["line=6"]["attrs"])["message"] == "Job `cron.daily' terminated"
    assert json.loads(by_ref["line=10"]["attrs"])["message"] == "This syslog message has a fractional value for seconds."
    assert json.loads(by_ref["line=13"]["attrs"])["message"] == "This is a multi-line message that screws up\n\tmany syslog parsers."
    assert [(e.kind, e.record_ref, e.message) for e in rep.errors] == [
        ("unparsed_line", "line=7", "not a syslog line: 'MMM 22 07:54:32 myhostname.myhost.com anacron[29782]: Normal exit (1 job run)'"),
        ("unparsed_line", "line=11", "not a syslog line: 'Mar 23 Wrong line that should not be able to get through'"),
    ]


def test_year_rollover_rule():
    d = dt.date
    assert syslog_years([12, 12, 1, 2], d(2023, 3, 1)) == ([2022, 2022, 2023, 2023], 1)
    assert syslog_years([11], d(2023, 1, 1)) == ([2022], 0)  # last line later in the year than the file's mtime
    assert syslog_years([3, 2, 3], d(2023, 4, 1)) == ([2023, 2023, 2023], 0)  # a line out of order is not a new year
    assert syslog_years([4, 5, 4], d(2023, 6, 1)) == ([2023, 2023, 2023], 0)  # rsyslog's repeated-message reduction
    # two months back is a new year (plaso's rule; plaso's syslog_cron.log: Mar 11 ..., then Jan 22 ...)
    assert syslog_years([3, 3, 1], d(2026, 11, 1)) == ([2025, 2025, 2026], 1)
    # the day counts too: a line never postdates the last write (by more than a zone's day)
    assert syslog_years([12], d(2025, 12, 2), 10) == ([2024], 0)
    assert syslog_years([12], d(2025, 12, 2), 3) == ([2025], 0)
    assert syslog_years([1], d(2025, 12, 31), 1) == ([2025], 0)


def _crowdsec_asserts(text: str) -> dict:
    import collections
    import re

    out: dict = collections.defaultdict(dict)
    for m in re.finditer(r'results\["(s\d\d-[a-z]+)"\]\["([^"]+)"\]\[(\d+)\]\.(Success|Evt\.(?:Parsed|Meta)\["([a-z_]+)"\]) '
                         r'== (.*)', text):
        stage, _, i, _, key, val = m.groups()
        val = val.strip()
        out[(stage, int(i))][key or "Success"] = json.loads(val) if val.startswith('"') else val == "true"
    return out


def test_sshd_fields_agree_with_crowdsec_parser_asserts(evidence):
    """crowdsec's own parse of its sshd samples: every line's host, program, pid and message equal ours,
    and every source address (and attempted user) crowdsec extracts, we extract too."""
    import collections

    folders = sorted(p for p in (evidence / "crowdsec-hub" / ".tests").glob("sshd*")
                     if (p / "parser.assert").exists() and (p / "parser.assert").stat().st_size)
    assert [f.name for f in folders] == ["sshd-invalid-bf", "sshd-logs", "sshd-logs-fp", "sshd-success-logs"]
    for folder in folders:
        expect = _crowdsec_asserts((folder / "parser.assert").read_text())
        log = next(folder.glob("*.log"))
        rows, rep = collect(log, mtime=dt.datetime(2025, 1, 1, tzinfo=UTC))
        assert not rep.errors, folder.name
        raw = [v for (stage, _), v in sorted(expect.items()) if stage == "s00-raw"]
        assert len(rows) == len(raw), folder.name
        for r, e in zip(rows, raw):
            attrs = json.loads(r["attrs"])
            assert (r["host"], r["provider"], str(attrs["pid"]), attrs["message"]) == (
                e["machine"], e["program"], e["pid"], e["message"]), (folder.name, r["record_ref"])
        parsed = [v for (stage, _), v in sorted(expect.items()) if stage == "s01-parse" and v.get("Success")]
        theirs = collections.Counter(e["source_ip"] for e in parsed if "source_ip" in e)
        ours = collections.Counter(r["src_ip"] for r in rows if r["src_ip"])
        # ours has one more: "Disconnected from totobad user ftp ..." (any "<kind> user" is read)
        assert theirs - ours == collections.Counter(), folder.name
        assert sum((ours - theirs).values()) == (1 if folder.name == "sshd-logs" else 0), folder.name
        pairs = {(r["src_ip"], r["user"]) for r in rows}
        assert all((e["source_ip"], e["target_user"]) in pairs for e in parsed if "target_user" in e), folder.name


def test_many_roll_overs_are_flagged_as_doubtful_years(tmp_path):
    log = tmp_path / "messages"
    log.write_text("Nov  2 10:00:00 h1 app: a\nFeb  3 10:00:00 h1 app: b\nOct  4 10:00:00 h1 app: c\nJan  5 10:00:00 h1 app: d\n")
    rows, rep = collect(log, mtime=dt.datetime(2024, 2, 1, tzinfo=UTC))
    assert [json.loads(r["attrs"])["year"] for r in rows] == [2022, 2023, 2023, 2024]  # Nov>Feb, Oct>Jan: 2 roll-overs
    assert [w.kind for w in rep.warnings] == ["years_uncertain"]
