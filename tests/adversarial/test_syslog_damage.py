"""Syslog files as an unclean shutdown or an editor leaves them (issue 16, section 10): runs of NUL bytes between
lines (zeroed blocks) and at the start of a file, and a UTF-8 byte order mark."""

from __future__ import annotations

import json
import os

import pytest

from forensics import Case
from timeline.schema import iso_ns

L1 = b"Dec  1 10:00:00 web01 sshd[1]: Accepted password for root from 203.0.113.7 port 22 ssh2\n"
L2 = b"Dec  1 10:00:05 web01 sshd[2]: Failed password for bob from 203.0.113.8 port 22 ssh2\n"
L3 = b"Dec  1 10:00:09 web01 cron[3]: (root) CMD (true)\n"
MTIME = 1764676800  # 2025-12-02T12:00:00Z


def _collect(tmp_path, files: dict[str, bytes]):
    ev = tmp_path / "ev"
    ev.mkdir()
    for name, data in files.items():
        (ev / name).write_bytes(data)
        os.utime(ev / name, (MTIME, MTIME))
    case = Case(tmp_path / "case", create=True, tz="UTC")
    rep = case.collect([ev], workers=1)
    t = case.timeline().sort_by([("evidence_path", "ascending"), ("record_ref", "ascending")])
    rows = [(r["evidence_path"].rsplit("/", 1)[-1], r["record_ref"], iso_ns(ts.value), r["message"])
            for r, ts in zip(t.drop_columns(["timestamp"]).to_pylist(), t["timestamp"])]
    problems = sorted((p["severity"], p["kind"], p["evidence_path"].rsplit("/", 1)[-1], p["record_ref"], p["count"])
                      for p in case.problems().to_pylist())
    return rep, rows, problems, t


def test_a_nul_run_between_two_lines_does_not_glue_them(tmp_path):
    # the NUL run has no line end: the next line is on the same line as far as newlines go
    rep, rows, problems, t = _collect(tmp_path, {"auth.log": L1 + b"\x00" * 8192 + L2 + L3})
    assert rows == [
        ("auth.log", "line=1", "2025-12-01T10:00:00.000000000Z",
         "web01 sshd[1]: Accepted password for root from 203.0.113.7 port 22 ssh2"),
        ("auth.log", "line=2", "2025-12-01T10:00:05.000000000Z",
         "web01 sshd[2]: Failed password for bob from 203.0.113.8 port 22 ssh2"),
        ("auth.log", "line=3", "2025-12-01T10:00:09.000000000Z", "web01 cron[3]: (root) CMD (true)"),
    ]
    assert problems == [("warning", "damage", "auth.log", "line=2", 1)]
    assert (rep.records_read, rep.errors, rep.warnings) == (3, 0, 1)
    msg = Case(tmp_path / "case").problems().to_pylist()[0]["message"]
    assert msg.startswith("8192 NUL byte(s) in 1 run(s)"), msg
    assert json.loads(t["attrs"][0].as_py())["message"].endswith("port 22 ssh2")


def test_a_nul_run_cutting_a_line_short(tmp_path):
    # the tail of line 1 lost to a zeroed block: its head is a row, the line after the NULs one of its own
    rep, rows, problems, _ = _collect(tmp_path, {"syslog": L1[:40] + b"\x00" * 4096 + L2})
    assert rows == [
        ("syslog", "line=1 part=1", "2025-12-01T10:00:00.000000000Z", "web01 sshd[1]: Accepted "),
        ("syslog", "line=1 part=2", "2025-12-01T10:00:05.000000000Z",
         "web01 sshd[2]: Failed password for bob from 203.0.113.8 port 22 ssh2"),
    ]
    assert problems == [("warning", "damage", "syslog", "line=1", 1)]


@pytest.mark.parametrize("head", [b"\x00" * 8192, b"\xef\xbb\xbf"], ids=["nul-start", "bom"])
def test_a_file_starting_with_nuls_or_a_bom_is_recognised(tmp_path, head, cli):
    rep, rows, problems, _ = _collect(tmp_path, {"messages": head + L1 + L2, "other.log": L3})
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("messages", "line=1", "2025-12-01T10:00:00.000000000Z"),
        ("messages", "line=2", "2025-12-01T10:00:05.000000000Z"),
        ("other.log", "line=1", "2025-12-01T10:00:09.000000000Z"),
    ]
    assert rows[0][3] == "web01 sshd[1]: Accepted password for root from 203.0.113.7 port 22 ssh2"
    assert rep.unread == []
    assert problems == ([("warning", "damage", "messages", "line=1", 1)] if head[:1] == b"\x00" else [])
    # and alone, as a file given by name
    r = cli("collect", "--case", str(tmp_path / "case2"), str(tmp_path / "ev" / "messages"))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bulk", [True, False])
def test_a_time_beyond_what_a_timestamp_holds_is_that_lines_error(tmp_path, monkeypatch, bulk):
    """Found by benchmarks/fuzz_trust.py: an ISO line of the year 2300 made the whole file fail (OverflowError)."""
    from collectors import SyslogCollector

    monkeypatch.setattr(SyslogCollector, "bulk", bulk)
    lines = (b"".join(b"2023-05-01T10:00:00+00:00 web01 app: before %d\n" % i for i in range(70))
             + b"2300-01-01T10:00:00+05:30 web01 app: far\n"
             + b"".join(b"2023-05-01T10:00:01+00:00 web01 app: after %d\n" % i for i in range(70)))
    rep, rows, problems, _ = _collect(tmp_path, {"messages": lines})
    assert (rep.records_read, rep.rows_written, rep.errors) == (141, 140, 1)
    assert [(p[1], p[3]) for p in problems] == [("bad_time", "line=71")]
