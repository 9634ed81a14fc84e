"""Giant lines and messages (issue 16, section 8): a line of hundreds of MB is cut (a counted warning) in bounded
memory and the rest of its file kept; a huge message cannot make the case's queries and exports run out of
memory: the message column is cut in one place (timeline.schema.cap_messages, applied by RowBuilder)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import timeline.schema as schema
from collectors.text import LINE_MAX
from forensics import Case

ROOT = Path(__file__).resolve().parents[2]
L1 = b"Dec  1 10:00:00 web01 sshd[1]: Accepted password for root from 203.0.113.7 port 22 ssh2\n"
L3 = b"Dec  1 10:00:09 web01 cron[3]: (root) CMD (true)\n"
HEAD2 = b"Dec  1 10:00:05 web01 app[2]: "
MTIME = 1764676800  # 2025-12-02T12:00:00Z


def _giant_gz(path: Path, mb: int) -> None:
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(L1 + HEAD2)
        block = b"A" * (1 << 20)
        for _ in range(mb):
            f.write(block)
        f.write(b"\n" + L3)
    os.utime(path, (MTIME, MTIME))


def test_a_giant_line_in_a_gzip_is_cut_and_the_rest_kept_in_bounded_memory(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    _giant_gz(ev / "auth.log.1.gz", 384)
    assert (ev / "auth.log.1.gz").stat().st_size < 2 << 20
    # in a process of its own, to measure its peak memory: VmHWM, the high-water mark of its own memory map
    # (ru_maxrss is no good here: Linux carries the forking process's peak over exec, and pytest's may be large)
    code = (
        "import json, re, sys\n"
        "from forensics import Case\n"
        "case = Case(sys.argv[1], create=True, tz='UTC')\n"
        "rep = case.collect([sys.argv[2]], workers=1)\n"
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        "print(json.dumps([rep.records_read, rep.rows_written, rep.errors, rep.warnings, hwm]))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "case"), str(ev)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    read, written, errors, warnings, maxrss_kb = json.loads(r.stdout.strip().splitlines()[-1])
    assert (read, written, errors, warnings) == (3, 3, 0, 1)
    assert maxrss_kb < 400 * 1024, f"peak memory {maxrss_kb // 1024} MB for a 384 MB line"
    case = Case(tmp_path / "case")
    t = case.timeline().sort_by("record_ref")
    assert t["record_ref"].to_pylist() == ["line=1", "line=2", "line=3"]
    long = json.loads(t["attrs"][1].as_py())["message"]
    assert long == "A" * (LINE_MAX - len(HEAD2))  # the line's first LINE_MAX bytes
    assert len(t["message"][1].as_py()) == schema.MESSAGE_MAX
    p = case.problems().to_pylist()
    assert [(x["severity"], x["kind"], x["record_ref"], x["count"]) for x in p] == [("warning", "line_cut", "line=2", 1)]
    assert p[0]["message"] == (f"a line of {len(HEAD2) + (384 << 20):,} bytes: cut at {LINE_MAX:,} bytes, "
                               f"{len(HEAD2) + (384 << 20) - LINE_MAX:,} bytes left out")


def test_a_32mb_message_does_not_stop_exports(tmp_path, cli):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "auth.log").write_bytes(L1 + HEAD2 + b"B" * (32 << 20) + b"\n" + L3)
    os.utime(ev / "auth.log", (MTIME, MTIME))
    case_dir = tmp_path / "case"
    r = cli("collect", "--case", str(case_dir), "--tz", "UTC", str(ev))
    assert r.returncode == 0, r.stderr
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"all.{fmt}"
        r = cli("export", str(case_dir), "--format", fmt, "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert out.stat().st_size < 3 * LINE_MAX  # the line's kept bytes, in attrs
    t = Case(case_dir).timeline()
    assert max(len(m) for m in t["message"].to_pylist()) == schema.MESSAGE_MAX


@pytest.mark.parametrize("bulk", [True, False])
def test_the_message_cap_is_defined_and_applied_in_one_place(tmp_path, monkeypatch, bulk):
    """Lower the one cap: rows built one by one (RowBuilder) and column-wise (syslog, web) both follow it."""
    from collectors import SyslogCollector, WebCollector
    from collectors.base import Artifact

    monkeypatch.setattr(schema, "MESSAGE_MAX", 40)
    monkeypatch.setattr(SyslogCollector, "bulk", bulk)
    monkeypatch.setattr(WebCollector, "bulk", bulk)
    monkeypatch.setattr(WebCollector, "bulk_min", 1)
    log = tmp_path / "auth.log"
    log.write_bytes(L1 * 3 + L3)
    web = tmp_path / "access.log"
    web.write_text('203.0.113.7 - - [01/Dec/2025:10:00:00 +0000] "GET /a/very/long/path/indeed/yes HTTP/1.1" '
                   '200 512 "-" "curl/8.0"\n' * 3)
    for path, cls in ((log, SyslogCollector), (web, WebCollector)):
        c = cls()
        art = Artifact("e", path.name, str(path), "", 0, mtime_ns=MTIME * 10**9, tz="UTC", tz_source="analyst")
        tables = list(c.collect(art)) + list(c.finish())
        msgs = [m for t in tables for m in t["message"].to_pylist()]
        assert len(msgs) >= 3 and max(len(m) for m in msgs) == 40, (cls.name, msgs)
        assert all(m.endswith("…") for m in msgs if len(m) == 40)
