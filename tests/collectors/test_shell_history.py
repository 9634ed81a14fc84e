"""Shell histories: bash (with and without times), zsh extended, fish, PowerShell; nothing lost."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pytest

from collectors import Artifact, ShellHistoryCollector, collector_for
from collectors.shell_history import MTIME_DESC, history_kind, home_owner
from collectors.target import _is_log
from timeline.schema import SCHEMA, iso_ns

MTIME = 1_669_167_000_123_456_789  # 2022-11-23T01:30:00.123456789Z = 07:00 in Asia/Kolkata


def collect(path, evidence_path=None, mtime_ns="stat", host=None):
    c = ShellHistoryCollector()
    mtime = os.stat(path).st_mtime_ns if mtime_ns == "stat" else mtime_ns
    art = Artifact("e1", evidence_path or os.path.basename(path), str(path), "0" * 64, os.path.getsize(path),
                   host=host, mtime_ns=mtime)
    tables = list(c.collect(art)) + list(c.finish())
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return table.to_pylist(), c.report(art)


def timed(rows):
    return [(iso_ns(r["timestamp"].value), r["command_line"]) for r in rows]


@pytest.fixture(scope="module")
def plaso(evidence):
    return evidence / "plaso" / "test_data"


# --- the shared corpus ------------------------------------------------------------------------

BASH = [
    ("2013-10-01T12:36:17.000000000Z", "/usr/lib/plaso"),
    ("2013-10-01T12:36:18.000000000Z", "/bin/bash"),
    ("2013-10-01T12:36:19.000000000Z", "/usr/local/bin/splunk -p 8080"),
    ("2021-06-10T22:30:36.000000000Z", 'binary argument1 "--params=\\\nparam1=foo,\nparam2=bar\n" argument2'),
]


def test_plaso_bash_history(plaso):
    rows, rep = collect(plaso / "bash_history", "home/alice/.bash_history")
    assert timed(rows) == BASH
    assert {r["timestamp_desc"] for r in rows} == {"Command Executed"}
    assert {(r["source"], r["artifact"], r["user"], r["process"], r["tz_source"]) for r in rows} == {
        ("SHELL", "bash_history", "alice", "bash", "source_utc")}
    assert [r["record_ref"] for r in rows] == ["line=2", "line=4", "line=6", "line=8"]
    last = json.loads(rows[3]["attrs"])
    assert (last["order"], last["line"], last["time_line"], last["lines"]) == (4, 8, 7, 4)
    assert rows[3]["message"] == 'bash command by alice: binary argument1 "--params=\\\\nparam1=foo,\\nparam2=bar\\n" argument2'
    assert rep.errors == [] and rep.warnings == [] and rep.stats == {"rows": 4, "timed": 4, "untimed": 0, "commands": 4}


def test_plaso_bash_history_desync_keeps_the_undated_command(plaso):
    path = plaso / "bash_history_desync"
    rows, rep = collect(path, "root/.bash_history")
    first = rows[0]
    # the command before the first time line: placed at the file's modification time, said so, kept in order
    assert (first["timestamp"].value, first["timestamp_desc"], first["command_line"], first["record_ref"]) == (
        os.stat(path).st_mtime_ns, MTIME_DESC, "/sbin/reboot", "line=1")
    assert json.loads(first["attrs"]) == {"shell": "bash", "command": "/sbin/reboot", "order": 1, "line": 1,
                                          "time_source": "file mtime"}
    assert timed(rows[1:]) == BASH and {r["user"] for r in rows} == {"root"}
    assert [json.loads(r["attrs"])["order"] for r in rows] == [1, 2, 3, 4, 5]
    assert rep.errors == [] and rep.stats == {"rows": 5, "timed": 4, "untimed": 1, "commands": 5}


def test_plaso_zsh_extended_history(plaso):
    rows, rep = collect(plaso / "zsh_extended_history.txt", "home/bob/.zsh_history")
    assert timed(rows) == [
        ("2016-03-12T08:26:50.000000000Z", "cd plaso"),
        ("2016-03-12T08:26:52.000000000Z", "ls"),
        ("2016-03-26T11:54:53.000000000Z", "echo dfgdfg \\\n& touch /tmp/afile"),
        ("2016-03-26T11:54:57.000000000Z", "PYTHONPATH=. ./runtests.py"),
    ]
    assert [r["record_ref"] for r in rows] == ["line=1", "line=2", "line=3", "line=5"]
    assert {r["artifact"] for r in rows} == {"zsh_history"} and {r["user"] for r in rows} == {"bob"}
    assert json.loads(rows[2]["attrs"])["elapsed_seconds"] == 0
    assert rep.errors == [] and rep.warnings == []


def test_plaso_fish_history(plaso):
    rows, rep = collect(plaso / "fish_history", "home/carol/.local/share/fish/fish_history")
    assert len(rows) == 10 and rep.errors == [] and rep.warnings == []
    assert timed(rows)[:3] == [("2021-04-29T22:53:00.000000000Z", "ll"), ("2021-04-29T22:53:02.000000000Z", "la"),
                               ("2021-04-29T22:53:24.000000000Z", "mkdir test")]
    assert timed(rows)[-2:] == [("2021-07-11T02:58:01.000000000Z", "git clone git@github.com:log2timeline/plaso.git"),
                                ("2021-07-11T02:58:35.000000000Z", "cd plaso")]
    assert [json.loads(r["attrs"]).get("paths") for r in rows[3:6]] == [["test"], ["test"], ["test"]]
    assert json.loads(rows[9]["attrs"])["paths"] == ["plaso"]
    assert {r["user"] for r in rows} == {"carol"} and {r["artifact"] for r in rows} == {"fish_history"}


def test_registry_picks_the_histories_of_the_corpus(plaso):
    for name in ("bash_history", "bash_history_desync", "zsh_extended_history.txt", "fish_history"):
        assert collector_for(str(plaso / name)) is ShellHistoryCollector, name
    assert collector_for(str(plaso / "apt_history.log")) is not ShellHistoryCollector


# --- generated files --------------------------------------------------------------------------

PS_COMMANDS = [
    "Get-ChildItem C:\\Users\\bob\\Documents",
    'Write-Host "नमस्ते दुनिया"',
    'Get-Process |\n  Where-Object { $_.CPU -gt 100 } |\n  Stop-Process',
    "Set-Content -Path .\\नोट.txt -Value 'फ़ाइलें एन्क्रिप्ट हो गई हैं'",
    "vssadmin delete shadows /all /quiet",
]
PS_TEXT = ("Get-ChildItem C:\\Users\\bob\\Documents\n"
           'Write-Host "नमस्ते दुनिया"\n'
           "Get-Process |`\n  Where-Object { $_.CPU -gt 100 } |`\n  Stop-Process\n"
           "Set-Content -Path .\\नोट.txt -Value 'फ़ाइलें एन्क्रिप्ट हो गई हैं'\n"
           "vssadmin delete shadows /all /quiet\n")
PS_PATH = "Users/bob/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_powershell_history_with_hindi(tmp_path, encoding):
    path = tmp_path / "ConsoleHost_history.txt"
    path.write_bytes(PS_TEXT.replace("\n", "\r\n").encode(encoding))
    os.utime(path, ns=(MTIME, MTIME))
    assert collector_for(str(path)) is ShellHistoryCollector
    rows, rep = collect(path, PS_PATH, host="DC01")
    assert [r["command_line"] for r in rows] == PS_COMMANDS
    assert {(r["timestamp"].value, r["timestamp_desc"], r["user"], r["artifact"], r["process"], r["host"]) for r in rows} == {
        (MTIME, MTIME_DESC, "bob", "powershell_history", "powershell", "DC01")}
    assert [json.loads(r["attrs"])["order"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["record_ref"] for r in rows] == ["line=1", "line=2", "line=3", "line=6", "line=7"]
    assert rows[1]["message"] == 'powershell command by bob: Write-Host "नमस्ते दुनिया"'
    assert rep.errors == [] and rep.warnings == [] and rep.stats["untimed"] == 5
    assert len({r["event_hash"] for r in rows}) == 5


def test_undated_commands_without_a_modification_time_are_counted_errors(tmp_path):
    path = tmp_path / ".bash_history"
    path.write_text("ls -la\n\ncat /etc/shadow\n#1700000000\nwhoami\n")
    rows, rep = collect(path, "home/alice/.bash_history", mtime_ns=None)
    assert timed(rows) == [("2023-11-14T22:13:20.000000000Z", "whoami")]
    assert [(e.record_ref, e.kind, e.count) for e in rep.errors] == [("line=1..3", "no_time", 2)]
    assert rep.errors[0].message == "2 command(s) without a time, and no file modification time to place them at"


def test_bash_bad_and_repeated_times(tmp_path):
    path = tmp_path / ".bash_history.gz"
    text = "#1700000000\nls\n#1700000000\nls\n#99999999999999999\nrm -rf /tmp/x\n#1700000001\n#1700000002\nid\n"
    path.write_bytes(gzip.compress(text.encode()))
    rows, rep = collect(path, "home/alice/.bash_history.gz", mtime_ns=MTIME)
    assert [(iso_ns(r["timestamp"].value), r["timestamp_desc"], r["command_line"]) for r in rows] == [
        ("2023-11-14T22:13:20.000000000Z", "Command Executed", "ls"),
        ("2023-11-14T22:13:20.000000000Z", "Command Executed", "ls"),
        ("2022-11-23T01:30:00.123456789Z", MTIME_DESC, "rm -rf /tmp/x"),
        ("2023-11-14T22:13:22.000000000Z", "Command Executed", "id"),
    ]
    assert rows[0]["event_hash"] != rows[1]["event_hash"]  # the same command twice in one second: two events
    assert json.loads(rows[2]["attrs"])["bad_time"] == 99999999999999999
    assert [(w.kind, w.record_ref) for w in rep.warnings] == [("bad_time", "line=6"), ("empty_command", "line=7")]


def test_zsh_plain_metafied_and_continued(tmp_path):
    path = tmp_path / ".zsh_history"
    # zsh writes bytes 0x83..0x9f as 0x83 followed by the byte xor 0x20 ("Ã" is c3 83)
    path.write_bytes(b"echo \xc3\x83\xa3\n: 1700000000:5;tar czf /tmp/a.tgz \\\n  /home/alice\nexit\n")
    rows, rep = collect(path, "home/alice/.zsh_history", mtime_ns=MTIME)
    assert [(r["timestamp_desc"], r["command_line"]) for r in rows] == [
        (MTIME_DESC, "echo Ã"), ("Command Executed", "tar czf /tmp/a.tgz \n  /home/alice"), (MTIME_DESC, "exit")]
    assert json.loads(rows[1]["attrs"])["elapsed_seconds"] == 5
    assert rep.errors == []


def test_fish_escapes(tmp_path):
    path = tmp_path / "fish_history"
    path.write_text("- cmd: echo a\\nb \\\\n\n  when: 1700000000\n- cmd: ls\n  when: soon\nstray line\n")
    rows, rep = collect(path, "root/.local/share/fish/fish_history", mtime_ns=MTIME)
    assert [(r["timestamp_desc"], r["command_line"], r["user"]) for r in rows] == [
        ("Command Executed", "echo a\nb \\n", "root"), (MTIME_DESC, "ls", "root")]
    assert [w.kind for w in rep.warnings] == ["bad_time", "unparsed_line"]


# --- recognition ------------------------------------------------------------------------------


def test_names_and_home_owners():
    assert [history_kind(n) for n in (".bash_history", "bash_history", "bash_history_desync", ".zsh_history",
                                      "zsh_history", "zsh_extended_history.txt", "fish_history",
                                      "ConsoleHost_history.txt", "Visual Studio Code Host_history.txt",
                                      ".bash_history.1.gz")] == [
        "bash", "bash", "bash", "zsh", "zsh", "zsh", "fish", "powershell", "powershell", "bash"]
    assert [history_kind(n) for n in ("apt_history.log", "history.txt", ".python_history", "notes")] == [None] * 4
    assert [home_owner(p) for p in (
        "/home/alice/.bash_history", "home/alice/.bash_history", "/root/.zsh_history", "root/.bash_history",
        "C:/Users/bob/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt",
        "C:\\Users\\bob\\AppData\\x.txt", "fs1:/Users/eve/x", "image.tar!/home/dave/.local/share/fish/fish_history",
        ".bash_history", "/var/tmp/.bash_history", "/Users/mallory/.zsh_history")] == [
        "alice", "alice", "root", "root", "bob", "bob", "eve", "dave", None, None, "mallory"]
    assert _is_log("/home/alice/.local/share/fish/fish_history") and _is_log(
        "/" + PS_PATH) and _is_log("/root/zsh_extended_history.txt")


def test_matches_is_strict(tmp_path):
    (tmp_path / ".bash_history").write_bytes(os.urandom(4096))
    (tmp_path / "fish_history").write_text("ls\ncd /\n")  # not fish's format
    (tmp_path / "notes.txt").write_text("ls\n")  # not a history's name
    for name in (".bash_history", "fish_history", "notes.txt"):
        assert not ShellHistoryCollector.matches(str(tmp_path / name)), name
    (tmp_path / "zsh_history").write_bytes(b"")
    rows, rep = collect(tmp_path / "zsh_history")
    assert rows == [] and rep.errors == []
