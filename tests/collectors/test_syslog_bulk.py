"""The column-wise bulk step of the syslog collector gives exactly what the row-by-row code gives:
every column of every row, the errors, warnings and counts, on every syslog file of the corpus and on
generated lines that probe its edges (DST, impossible dates, encodings, continuations, block boundaries)."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pyarrow as pa
import pytest

import collectors.syslog as syslog
from collectors import Artifact, SyslogCollector

UTC = dt.timezone.utc
CLOCKS = [(None, None), ("America/New_York", "analyst"), ("Asia/Kolkata", "evidence_config")]


def _run(path: Path, bulk: bool, mtime: dt.datetime | None, tz: str | None, tz_source: str | None):
    c = SyslogCollector()
    c.bulk = bulk
    art = Artifact("e1", path.name, str(path), "0" * 64, path.stat().st_size, tz=tz, tz_source=tz_source,
                   host="fallback-host", mtime_ns=None if mtime is None else int(mtime.timestamp() * 1e9))
    tables = list(c.collect(art)) + list(c.finish())
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    rep = c.report(art)
    return (rows, [(e.kind, e.record_ref, e.message) for e in rep.errors],
            [(w.kind, w.message) for w in rep.warnings], rep.stats)


def _same(path: Path, mtime=dt.datetime(2023, 3, 13, tzinfo=UTC), clocks=CLOCKS) -> int:
    """Bulk and row by row agree; returns how many rows (so a test can check the bulk step had work)."""
    n = 0
    for tz, tz_source in clocks:
        slow = _run(path, False, mtime, tz, tz_source)
        fast = _run(path, True, mtime, tz, tz_source)
        assert fast[1:] == slow[1:], (path, tz)
        assert len(fast[0]) == len(slow[0]), (path, tz)
        for a, b in zip(fast[0], slow[0]):
            for col in a:
                assert a[col] == b[col], (path, tz, b["record_ref"], col)
        n += len(fast[0])
    return n


def _corpus_syslog_files(evidence: Path) -> list[Path]:
    roots = [evidence / "plaso" / "test_data", evidence / "crowdsec-hub" / ".tests", evidence / "dfvfs" / "test_data"]
    return sorted(p for root in roots for p in root.rglob("*")
                  if p.is_file() and p.stat().st_size < 10_000_000 and SyslogCollector.matches(str(p)))


def test_bulk_equals_row_by_row_on_every_corpus_syslog_file(evidence, monkeypatch):
    files = _corpus_syslog_files(evidence)
    assert len(files) >= 35
    assert sum(_same(p) for p in files) > 1000
    # the bulk step reads most of them (the rest: RFC 5424, ISO 8601, forward formats, continuations...)
    runs = records = 0
    for p in files:
        for ref, item in SyslogCollector()._items(Artifact("e1", p.name, str(p), "0" * 64, p.stat().st_size)):
            runs += 0 if ref else len(item.lines)
            records += 1 if ref else len(item.lines)
    assert (runs, records) == (268, 362)
    # small blocks: every block boundary (a record cut from its continuation lines, the line carried over)
    monkeypatch.setattr(syslog, "_BLOCK", 300)
    for p in files:
        _same(p, clocks=CLOCKS[:1])
    # no modification time: year-less lines are skipped (warned), the others kept
    for p in files[:10]:
        _same(p, mtime=None, clocks=CLOCKS[:1])


EDGES = (
    "Nov  6 01:30:00 h1 app: fall back, ambiguous\n"
    "Nov  6 01:59:59 h1 app[7]: still ambiguous\n"
    "Nov  6 00:59:59 h1 app[007]: before the change\n"
    "Nov  6 02:00:00 h1 app: after\n"
    "Mar 12 02:30:00 h1 app: spring forward, missing\n"
    "Mar 12 03:00:00 h1 app: after the gap\n"
    "Feb 29 10:00:00 h1 app: not a leap year\n"
    "Feb 28 24:00:00 h1 app: bad hour\n"
    "Feb 28 23:60:00 h1 app: bad minute\n"
    "Feb 28 23:00:60 h1 app: leap second\n"
    "Apr 31 10:00:00 h1 app: no such day\n"
    "Feb  0 10:00:00 h1 app: day zero\n"
    "Mar  1 10:00:00.123456 h1 kernel: [ 12.5] usb 1-1: new device\n"
    "Mar  1 10:00:00.123456789 h1 sshd[22]: Accepted publickey for root from 10.0.0.5 port 4242 ssh2: RSA SHA256:x\n"
    "Mar  1 10:00:01 h1 sshd[23]: Failed password for invalid user admin from 2001:db8::1 port 22 ssh2\n"
    "Mar  1 10:00:02 h1 sudo:    alice : TTY=pts/0 ; PWD=/home/a \"q\" ; USER=root ; COMMAND=/bin/sh -c 'a\\b'\n"
    "Mar  1 10:00:03 h1 CRON[99]: (root) CMD (cd / && run-parts --report /etc/cron.hourly)\n"
    "Mar  1 10:00:04 h1 systemd[1]: Started Session 4 of user root.\n"
    "Mar  1 10:00:05 h1 su[5]: pam_unix(su:session): session opened for user root(uid=0) by alice(uid=1000)\n"
    "Mar  1 10:00:06 h1 useradd[8]: new user: name=backdoor, UID=1001, GID=1001\n"
    "Mar  1 10:00:07 h1 usermod[9]: add 'backdoor' to group 'sudo'\n"
    "Mar  1 10:00:08 h1 app: tab\there, quote \" backslash \\ unicode é ☃ \u2028 done\n"
    "Mar  1 10:00:09 h1 app: continued below\n"
    "\tcontinuation line\n"
    "\n"
    "Mar  1 10:00:10 h1 app: after a blank line\n"
    "Mar  1 10:00:11 h1 app <tag>: angle\n"
    "Mar  1 10:00:12 h1 app: glued<13>Mar  1 10:00:13 h2 other: second\n"
    "Mar  1 10:00:14 h1 app: control \x01 char\n"
    "Mar  1 10:00:15 h1 app: crlf line\r\n"
    "Mar  1 10:00:16 h1 sshd[9999999999999999999999]: giant pid\n"
    "Mar  1 10:00:17 sshd[5]: no host\n"
    "Mar  1 10:00:18 h1\n"
    "Mar  1 10:00:19 h1 \n"
    "Mar  1 10:00:20 h1  two spaces\n"
    "Mar  1 10:00:21: repeated\n"
    "Mar  1 10:00:22 h1 free text without a program\n"
    "Mar  1 10:00:23 h1 pr\u00a0og: non-breaking space in the program\n"
    "Mar  1 10:00:24 h\u00e9 app: non-ASCII host\n"
    "Mar  1 10:00:25 [::1] app: odd host\n"
    "MMM  1 10:00:26 h1 app: damaged header\n"
    "2023-03-01T10:00:27.5+05:30 h1 app[3]: iso line\n"
    "<34>1 2023-03-01T10:00:28Z h1 app 3 - - rfc 5424\n"
    "2023-03-01T10:00:29Z h1 sshd[4]: Invalid user x from 10.1.1.1 port 9\n"
    "2023-03-01T10:00:30.123456789-07:00 INFO periodic_scheduler[5]: severity, no host\n"
    "2023-03-01T10:00:31.1234567891+00:00 h1 app: ten digits\n"
    "2023-03-01T10:00:32+23:99 h1 app: offset of a day\n"
    "2023-02-29T10:00:33+01:00 h1 app: no such day\n"
    "0000-03-01T10:00:34+01:00 h1 app: year zero\n"
    "2023-03-01T10:00:35 h1 app: no offset\n"
    "2023-03-01T10:00:36,5+01:00 h1 app: comma\n"
    "2023-03-01 10:00:37 status installed foo 1.0\n"
    "2023-03-01T10:00:38+0100 h1 app: offset without colon\n"
    "Dec 31 23:59:59 h1 app: late in the year (a roll-over backwards)\n"
    "Mar  2 10:00:00 h1 app: last line without a line end"
)


@pytest.mark.parametrize("block", [4 << 20, 64, 7])
def test_bulk_equals_row_by_row_on_edge_lines(tmp_path, monkeypatch, block):
    monkeypatch.setattr(syslog, "_BLOCK", block)
    log = tmp_path / "auth.log"
    log.write_bytes(EDGES.encode() + b"\nMar  2 10:00:01 h1 app: bad byte \xff\xfe here\n" + EDGES.encode())
    assert _same(log) == 3 * (2 * 43 + 1)
    gz = tmp_path / "auth.log.1.gz"
    gz.write_bytes(gzip.compress(EDGES.encode() * 20, mtime=1_678_000_000))
    # 20 copies glued end to start (19 records fewer); the roll-overs reach 5 leap years where Feb 29 is a date
    assert _same(gz) == 3 * (20 * 43 - 19 + 5)
    cut = tmp_path / "syslog.2.gz"
    data = gzip.compress((EDGES + "\n").encode() * 200)
    cut.write_bytes(data[: len(data) // 2])
    assert _same(cut) > 0
