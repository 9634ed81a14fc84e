"""Login records: utmp/wtmp/btmp of every layout, macOS utmpx, lastlog; damage counted, never a crash."""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import json
import os
import shutil
import struct
import zlib

import pyarrow as pa
import pytest

from collectors import Artifact, UtmpCollector, collector_for
from collectors.target import _is_log
from collectors.utmp import login_file_kind
from timeline.schema import SCHEMA, iso_ns

LINUX = struct.Struct("<h2xi32s4s32s256shhiii16s20x")


def utmp_record(typ, pid, line, ut_id, user, host, sec, usec=0, addr=None, exit=(0, 0), session=0) -> bytes:
    """One x86_64 ``struct utmp`` (384 bytes); ``addr`` an IPv4 or IPv6 address string."""
    packed = ipaddress.ip_address(addr).packed if addr else b""
    return LINUX.pack(typ, pid, line.encode(), ut_id.encode(), user.encode(), host.encode(), exit[0], exit[1],
                      session, sec, usec, packed.ljust(16, b"\0"))


def collect(path, evidence_path=None, tz=None, tz_source=None, host=None):
    c = UtmpCollector()
    art = Artifact("e1", evidence_path or os.path.basename(path), str(path), "0" * 64, os.path.getsize(path),
                   host=host, tz=tz, tz_source=tz_source)
    tables = list(c.collect(art)) + list(c.finish())
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return table.to_pylist(), c.report(art)


def brief(rows):
    return [(iso_ns(r["timestamp"].value), r["timestamp_desc"], r["user"], r["src_ip"]) for r in rows]


def errors(rep):
    return [(e.record_ref, e.kind, e.message) for e in rep.errors]


@pytest.fixture(scope="module")
def plaso(evidence):
    return evidence / "plaso" / "test_data"


# --- the shared corpus ------------------------------------------------------------------------


def test_plaso_utmp(plaso):
    rows, rep = collect(plaso / "utmp" / "utmp")
    assert len(rows) == 14 and rep.errors == [] and rep.warnings == []
    assert rep.stats == {"rows": 14, "empty": 0, "layout": "linux-384-le", "records": 14}
    assert {r["artifact"] for r in rows} == {"utmp"} and {r["source"] for r in rows} == {"LOGIN"}
    assert {r["tz_source"] for r in rows} == {"source_utc"}
    assert [r["timestamp_desc"] for r in rows[:3]] == ["Boot Time", "Run Level Change Time", "Login Prompt Time"]
    assert rows[0]["message"] == "utmp: system boot (kernel 3.8.0-33-generic)"
    assert rows[1]["message"] == "utmp: run level change to 2"
    prompt = rows[2]
    assert (iso_ns(prompt["timestamp"].value), prompt["user"], prompt["record_ref"]) == (
        "2013-12-13T14:45:09.000000000Z", None, "record=2 offset=0x300")
    attrs = json.loads(prompt["attrs"])
    assert (attrs["type_name"], attrs["pid"], attrs["line"], attrs["user"], attrs["exit"]) == (
        "LOGIN_PROCESS", 1115, "tty4", "LOGIN", {"termination": 0, "exit": 0})
    login = rows[12]
    assert brief([login]) == [("2013-12-18T22:46:56.305504000Z", "Login Time", "moxilo", None)]
    assert login["message"] == "utmp: login: moxilo on pts/4 from :0 (pid 2684)"
    assert login["src_host"] is None  # ":0" is an X display, not a host
    assert [r["timestamp_desc"] for r in rows].count("Login Time") == 6


def test_plaso_wtmp_with_a_stray_trailing_byte(plaso):
    rows, rep = collect(plaso / "utmp" / "wtmp.1")
    assert brief(rows) == [("2011-12-01T17:36:38.432935000Z", "Login Time", "userA", "10.10.122.1"),
                           ("2011-12-02T00:21:18.725048000Z", "Session End Time", None, None)]
    assert {r["artifact"] for r in rows} == {"wtmp"}
    assert rows[0]["message"] == "wtmp: login: userA on pts/32 from 10.10.122.1 (pid 20060)"
    assert json.loads(rows[0]["attrs"])["id"] == "s/12"
    assert rep.stats["empty"] == 2 and rep.stats["records"] == 4
    # 1537 bytes = 4 records and one zero byte: noticed, nothing lost
    assert rep.errors == []
    assert [(w.record_ref, w.kind) for w in rep.warnings] == [("offset=0x600", "truncated")]


@pytest.mark.parametrize("name, layout, step, when, ip", [
    ("utmp_x86_64", "linux-384-le", 384, "2026-07-03T14:58:29", "4.3.2.1"),
    ("utmp_aarch64", "linux-400-le", 400, "2026-07-03T14:57:58", "4.3.2.1"),
    ("utmp_s390", "linux-400-be", 400, "2026-07-04T05:00:25", "1.2.3.4"),
])
def test_plaso_utmp_layouts(plaso, name, layout, step, when, ip):
    rows, rep = collect(plaso / "utmp" / name)
    assert rep.stats["layout"] == layout and rep.errors == [] and rep.warnings == []
    assert [r["timestamp_desc"] for r in rows] == ["Record Time", "Session End Time", "Boot Time", "Shutdown Time",
                                                   "Clock Change Time", "Clock Change Time"]
    assert [r["record_ref"] for r in rows] == [f"record={i} offset={hex(i * step)}" for i in range(6)]
    assert iso_ns(rows[1]["timestamp"].value) == when + ".000000000Z"
    dead = json.loads(rows[1]["attrs"])
    assert (dead["line"], dead["addr"], rows[1]["src_ip"]) == ("tty2", ip, ip)
    # the new clock is five minutes after the old one
    assert rows[5]["timestamp"].value - rows[4]["timestamp"].value == 300 * 10**9
    assert json.loads(rows[3]["attrs"])["user"] == "shutdown"


def test_plaso_corrupted_utmp_keeps_every_whole_record(plaso):
    rows, rep = collect(plaso / "utmp" / "utmp_corrupted")
    assert brief(rows) == [("2023-11-14T22:30:00.000000000Z", "Login Time", "alice", None),
                           ("2023-11-14T22:46:40.000000000Z", "Login Time", "bob", "10.0.0.5")]
    assert rows[1]["record_ref"] == "record=3 offset=0x480"
    assert errors(rep) == [
        ("record=1 offset=0x180", "bad_record", "unknown record type 99"),
        ("record=2 offset=0x300", "bad_record", "unknown record type 99"),
        ("offset=0x600", "truncated", "trailing partial record: 50 of 384 bytes"),
    ]


def test_plaso_macos_utmpx(plaso):
    rows, rep = collect(plaso / "utmpx_mac")
    assert rep.stats == {"rows": 5, "empty": 1, "layout": "macos-628-le", "signature": "utmpx-1.00", "records": 7}
    assert rep.errors == []
    assert brief(rows) == [
        ("2013-11-13T17:52:34.000000000Z", "Boot Time", None, None),
        ("2013-11-13T17:52:41.736713000Z", "Login Time", "moxilo", None),
        ("2013-11-14T03:47:22.428014000Z", "Login Time", "moxilo", None),
        ("2013-11-14T04:32:56.641464000Z", "Session End Time", "moxilo", None),
        ("2013-11-14T03:37:14.718830000Z", "Session End Time", "moxilo", None),
    ]
    assert [json.loads(r["attrs"])["line"] for r in rows[1:]] == ["console", "ttys000", "ttys002", "ttys003"]
    assert {r["artifact"] for r in rows} == {"utmp"}


def test_registry_picks_the_login_files_of_the_corpus(plaso):
    for name in ("utmp", "utmp_aarch64", "utmp_corrupted", "utmp_s390", "utmp_x86_64", "wtmp.1"):
        assert collector_for(str(plaso / "utmp" / name)) is UtmpCollector, name
    assert collector_for(str(plaso / "utmpx_mac")) is UtmpCollector
    assert not UtmpCollector.matches(str(plaso / "syslog"))


# --- generated files --------------------------------------------------------------------------

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def _wtmp_bytes() -> bytes:
    return b"".join([
        utmp_record(2, 0, "~", "~~", "reboot", "6.1.0-13-amd64", T0, 123456),
        utmp_record(7, 4242, "pts/0", "ts/0", "alice", "10.0.0.5", T0 + 3600, 654321, addr="10.0.0.5"),
        utmp_record(7, 4300, "pts/1", "ts/1", "bob", "2001:db8::7", T0 + 3700, 1, addr="2001:db8::7"),
        utmp_record(8, 4242, "pts/0", "ts/0", "", "", T0 + 7200, 999999, exit=(0, 1)),
        utmp_record(1, 0x30, "~", "~~", "shutdown", "6.1.0-13-amd64", T0 + 9000),
    ])


def test_generated_wtmp_with_a_truncated_tail(tmp_path):
    wtmp = tmp_path / "wtmp"
    tail = utmp_record(7, 5000, "pts/2", "ts/2", "carol", "", T0 + 9999)[:100]
    wtmp.write_bytes(_wtmp_bytes() + tail)
    rows, rep = collect(wtmp, "var/log/wtmp", tz="Asia/Kolkata", tz_source="evidence_config", host="web01")
    assert brief(rows) == [
        ("2023-11-14T22:13:20.123456000Z", "Boot Time", None, None),
        ("2023-11-14T23:13:20.654321000Z", "Login Time", "alice", "10.0.0.5"),
        ("2023-11-14T23:15:00.000001000Z", "Login Time", "bob", "2001:db8::7"),
        ("2023-11-15T00:13:20.999999000Z", "Session End Time", None, None),
        ("2023-11-15T00:43:20.000000000Z", "Shutdown Time", None, None),
    ]
    # a zone stated by the evidence changes nothing: utmp stores UTC
    assert {r["tz_source"] for r in rows} == {"source_utc"} and {r["host"] for r in rows} == {"web01"}
    assert [r["message"] for r in rows] == [
        "wtmp: system boot (kernel 6.1.0-13-amd64)",
        "wtmp: login: alice on pts/0 from 10.0.0.5 (pid 4242)",
        "wtmp: login: bob on pts/1 from 2001:db8::7 (pid 4300)",
        "wtmp: session end on pts/0 (pid 4242, exit 1 termination 0)",
        "wtmp: system shutdown (kernel 6.1.0-13-amd64)",
    ]
    assert rows[1]["evidence_path"] == "var/log/wtmp" and rows[1]["record_ref"] == "record=1 offset=0x180"
    assert rows[1]["parser"].startswith("forensics-utmp/")
    assert json.loads(rows[4]["attrs"])["runlevel"] == "0"
    assert errors(rep) == [("offset=0x780", "truncated", "trailing partial record: 100 of 384 bytes")]
    assert rep.stats["rows"] == 5


def test_compressed_rotations_give_the_same_events(tmp_path):
    plain = tmp_path / "wtmp.1"
    plain.write_bytes(_wtmp_bytes())
    gz = tmp_path / "wtmp.2.gz"
    gz.write_bytes(gzip.compress(_wtmp_bytes()))
    xz = tmp_path / "wtmp-20231115.bz2"
    xz.write_bytes(bz2.compress(_wtmp_bytes()))
    a, _ = collect(plain)
    for p in (gz, xz):
        b, rep = collect(p)
        assert rep.errors == [] and rep.stats["layout"] == "linux-384-le"
        assert [r["event_hash"] for r in b] == [r["event_hash"] for r in a]
        assert {r["artifact"] for r in b} == {"wtmp"}
    # a compressed stream cut short: the whole records before the cut, and an error
    # a compressed stream cut short (inside the fifth record): the four whole records, and one error
    z = zlib.compressobj(wbits=31)  # gzip container
    cut_data = z.compress(_wtmp_bytes()[:4 * 384 + 100]) + z.flush(zlib.Z_SYNC_FLUSH)  # no end-of-stream marker
    cut = tmp_path / "wtmp.3.gz"
    cut.write_bytes(cut_data)
    rows, rep = collect(cut)
    assert [r["event_hash"] for r in rows] == [r["event_hash"] for r in a[:4]]
    assert [(e.kind, e.record_ref) for e in rep.errors] == [("truncated", "offset=0x664")]
    assert rep.errors[0].message.startswith("compressed stream ended early after 1636 bytes; what followed is lost")


def test_the_same_record_in_utmp_and_wtmp_is_one_event(tmp_path):
    rec = utmp_record(7, 4242, "pts/0", "ts/0", "alice", "10.0.0.5", T0 + 3600, 654321, addr="10.0.0.5")
    (tmp_path / "utmp").write_bytes(rec)
    (tmp_path / "wtmp").write_bytes(rec)
    (tmp_path / "btmp").write_bytes(rec)
    u, _ = collect(tmp_path / "utmp")
    w, _ = collect(tmp_path / "wtmp")
    b, _ = collect(tmp_path / "btmp")
    assert u[0]["event_hash"] == w[0]["event_hash"] != b[0]["event_hash"]


def test_generated_btmp_failed_logins(tmp_path):
    btmp = tmp_path / "btmp.1.gz"
    recs = [utmp_record(6, 7000 + i, "ssh:notty", "", user, "203.0.113.9", T0 + 60 * i, addr="203.0.113.9")
            for i, user in enumerate(["root", "admin", "उपयोगकर्ता"])]
    btmp.write_bytes(gzip.compress(b"".join(recs)))
    rows, rep = collect(btmp, "var/log/btmp.1.gz")
    assert rep.errors == []
    assert brief(rows) == [
        ("2023-11-14T22:13:20.000000000Z", "Failed Login Time", "root", "203.0.113.9"),
        ("2023-11-14T22:14:20.000000000Z", "Failed Login Time", "admin", "203.0.113.9"),
        ("2023-11-14T22:15:20.000000000Z", "Failed Login Time", "उपयोगकर्ता", "203.0.113.9"),
    ]
    assert {r["artifact"] for r in rows} == {"btmp"}
    assert rows[0]["message"] == "btmp: failed login: root on ssh:notty from 203.0.113.9 (pid 7000)"


def test_garbage_records_are_counted_errors(tmp_path):
    good = utmp_record(7, 1, "pts/0", "ts/0", "alice", "", T0)
    bad_usec = utmp_record(7, 2, "pts/0", "ts/0", "alice", "", T0, 0)
    bad_usec = bad_usec[:344] + struct.pack("<i", 2_000_000) + bad_usec[348:]
    far = utmp_record(7, 3, "pts/0", "ts/0", "alice", "", 2**31 - 1)  # 2038: in range
    negative = utmp_record(7, -5, "pts/0", "ts/0", "alice", "", T0)
    no_time = utmp_record(7, 4, "pts/0", "ts/0", "alice", "", 0)
    (tmp_path / "wtmp").write_bytes(good + bad_usec + far + negative + no_time + good)
    rows, rep = collect(tmp_path / "wtmp")
    assert [r["record_ref"] for r in rows] == ["record=0 offset=0x0", "record=2 offset=0x300", "record=5 offset=0x780"]
    assert iso_ns(rows[1]["timestamp"].value) == "2038-01-19T03:14:07.000000000Z"
    assert errors(rep) == [
        ("record=1 offset=0x180", "bad_record", "microseconds 2000000 out of range 0..999999"),
        ("record=3 offset=0x480", "bad_record", "negative pid -5"),
        ("record=4 offset=0x600", "bad_record", "record has no time (0)"),
    ]
    far64 = struct.Struct("<h2xi32s4s32s256shhqqq16s20x4x")
    recs = [far64.pack(7, 1, b"pts/0", b"", b"alice", b"", 0, 0, 0, T0 + i, 0, b"\0" * 16) for i in range(3)]
    recs.append(far64.pack(7, 1, b"pts/0", b"", b"alice", b"", 0, 0, 0, 10**12, 0, b"\0" * 16))
    (tmp_path / "utmp").write_bytes(b"".join(recs))
    rows, rep = collect(tmp_path / "utmp")
    assert len(rows) == 3 and rep.stats["layout"] == "linux-400-le"
    assert errors(rep) == [("record=3 offset=0x4b0", "bad_record", "time 1000000000000 s out of range (1970..2100)")]


def test_generated_lastlog(tmp_path):
    for fmt, size in (("<i32s256s", 292), ("<q32s256s", 296), (">q32s256s", 296)):
        s = struct.Struct(fmt)
        data = bytearray(size * 1001)
        data[0:size] = s.pack(T0, b"tty1", b"")
        data[1000 * size:1001 * size] = s.pack(T0 + 86400, b"pts/3", b"10.0.0.5")
        path = tmp_path / f"{size}{fmt[0]}" / "lastlog"
        path.parent.mkdir()
        path.write_bytes(bytes(data))
        rows, rep = collect(path, "var/log/lastlog")
        assert rep.errors == [] and rep.stats["rows"] == 2
        assert brief(rows) == [("2023-11-14T22:13:20.000000000Z", "Last Login", None, None),
                               ("2023-11-15T22:13:20.000000000Z", "Last Login", None, "10.0.0.5")]
        assert [r["record_ref"] for r in rows] == ["uid=0 offset=0x0", f"uid=1000 offset={hex(1000 * size)}"]
        assert rows[1]["message"] == "lastlog: last login of uid 1000 on pts/3 from 10.0.0.5"
        assert {r["artifact"] for r in rows} == {"lastlog"}
        assert json.loads(rows[1]["attrs"])["uid"] == 1000


# --- recognition ------------------------------------------------------------------------------


def test_names():
    assert [login_file_kind(n) for n in ("wtmp", "wtmp.1", "btmp-20231101.gz", "utmpx", "lastlog", "utmp_s390",
                                         "WTMP.2.xz")] == ["wtmp", "wtmp", "btmp", "utmp", "lastlog", "utmp", "wtmp"]
    assert [login_file_kind(n) for n in ("utmp.h", "utmp.py", "wtmpdb", "libutmp.so", "notes.txt", "utmp.5.txt")] == [None] * 6
    assert _is_log("/run/utmp") and _is_log("/var/run/utmpx") and _is_log("/var/log/btmp.1.gz") and _is_log("/usr/bin/lastlog")
    assert not _is_log("/usr/include/utmp.h")


def test_matches_is_strict(tmp_path):
    for name, data in [
        ("wtmp", os.urandom(384 * 8)),  # random bytes
        ("btmp", b"Nov 23 07:00:01 web01 sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2\n" * 20),
        ("lastlog", open(shutil.which("ls"), "rb").read()[:65536]),  # a program named lastlog (/usr/bin/lastlog)
        ("utmp", open(shutil.which("ls"), "rb").read()[:65536]),
    ]:
        (tmp_path / name).write_bytes(data)
        assert not UtmpCollector.matches(str(tmp_path / name)), name
        assert collector_for(str(tmp_path / name)) is not UtmpCollector
    (tmp_path / "notes.bin").write_bytes(_wtmp_bytes())  # right structure, wrong name
    assert not UtmpCollector.matches(str(tmp_path / "notes.bin"))
    (tmp_path / "wtmp.1").write_bytes(b"")  # just rotated: nothing in it, nothing wrong with it
    rows, rep = collect(tmp_path / "wtmp.1")
    assert rows == [] and rep.errors == [] and rep.warnings == []
    with pytest.raises(Exception, match="not a utmp/wtmp/btmp/lastlog file"):
        list(UtmpCollector().collect(Artifact("e1", "wtmp", str(tmp_path / "wtmp"), "0" * 64, 3072)))


def test_login_records_and_histories_inside_an_archive(tmp_path):
    """A tar triage collection: the target collector hands wtmp and .bash_history to these collectors,
    with the host it found (/etc/hostname) and the files' times from the archive."""
    import io
    import tarfile

    import forensics

    members = {
        "etc/hostname": (b"web01\n", 0),
        "var/log/wtmp": (_wtmp_bytes(), 0),
        "home/alice/.bash_history": (b"ls\n#1669165560\nid\n", 1_669_166_100),
    }
    tar_path = tmp_path / "triage.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, (data, mtime) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime or T0
            tar.addfile(info, io.BytesIO(data))
    case = forensics.Case(tmp_path / "case", create=True)
    report = case.collect([tar_path], workers=1)
    inner = {a["evidence_path"]: (a["collector"], a["rows"], a["lost"]) for a in report.artifacts if a.get("inside")}
    assert inner == {"/var/log/wtmp": ("utmp", 5, 0), "/home/alice/.bash_history": ("shell_history", 2, 0)}
    rows = [r for r in case.timeline().to_pylist() if r["source"] in ("LOGIN", "SHELL")]
    assert [(iso_ns(r["timestamp"].value), r["timestamp_desc"], r["host"], r["user"], r["src_ip"], r["command_line"])
            for r in rows] == [
        ("2022-11-23T01:06:00.000000000Z", "Command Executed", "web01", "alice", None, "id"),
        ("2022-11-23T01:15:00.000000000Z", "History File Modified (command time unknown)", "web01", "alice", None, "ls"),
        ("2023-11-14T22:13:20.123456000Z", "Boot Time", "web01", None, None, None),
        ("2023-11-14T23:13:20.654321000Z", "Login Time", "web01", "alice", "10.0.0.5", None),
        ("2023-11-14T23:15:00.000001000Z", "Login Time", "web01", "bob", "2001:db8::7", None),
        ("2023-11-15T00:13:20.999999000Z", "Session End Time", "web01", None, None, None),
        ("2023-11-15T00:43:20.000000000Z", "Shutdown Time", "web01", None, None, None),
    ]
