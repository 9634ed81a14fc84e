"""Host names from hostile evidence: control characters, bidirectional overrides and ``../`` in a syslog host
field, a folder name or an OS tree's /etc/hostname are stored safely (a value, never a path; derived names
escaped; record data unchanged) and never reach a terminal raw."""

from __future__ import annotations

import json
import os

import forensics
from forensics import Case
from timeline.schema import UNKNOWN_HOST

HOSTILE = "web\x1b]0;pwned\x07\u202e../../etc"
LINE = "Nov 23 07:00:0{n} {host} sshd[1{n}]: Failed password for root from 203.0.113.{n} port 22 ssh2\n"


def _names(root) -> set[str]:
    return {name for _, dirs, files in os.walk(root) for name in dirs + files}


def _rows(case) -> list[tuple[str, str, str]]:
    df = forensics.open(case).to_pandas(["host", "attrs", "evidence_path"])
    return sorted((r.evidence_path, r.host, json.loads(r.attrs)["host_source"]) for r in df.itertuples())


def test_a_syslog_host_field_with_escapes_and_dot_dot(tmp_path, cli):
    ev = tmp_path / "evidence"
    ev.mkdir()
    (ev / "auth.log").write_text(LINE.format(n=1, host=HOSTILE))
    os.utime(ev / "auth.log", (1669190400 + 86400,) * 2)
    case = tmp_path / "case"
    r = cli("collect", str(ev), "--case", str(case), "--workers", "1")
    assert r.returncode == 0, r.stderr
    # the record's own name stays as written (rows keep the data; every output escapes it), said to come from the log
    assert _rows(case) == [("auth.log", HOSTILE, "log")]
    # a value, never a path: nothing in the case is named after it
    assert not any("pwned" in n or n == "etc" for n in _names(case))
    for args in (("hunt", str(case)), ("info", str(case)), ("query", str(case))):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout
    assert "web\\x1b]0;pwned\\x07\\u202e../../etc" in cli("info", str(case)).stdout


def test_a_hostile_folder_name_is_no_host(tmp_path):
    ev = tmp_path / "evidence"
    for n, name in enumerate(("srv\x1b[31m", "db\u202e01", "..."), 5):  # lines that differ: identical ones merge
        (ev / name).mkdir(parents=True)
        (ev / name / "auth.log").write_text(LINE.format(n=n, host="-").replace(" - sshd", " sshd"))
    (ev / "web01").mkdir()
    (ev / "web01" / "auth.log").write_text(LINE.format(n=3, host="-").replace(" - sshd", " sshd"))
    for p in ev.rglob("auth.log"):
        os.utime(p, (1669190400 + 86400,) * 2)
    Case(tmp_path / "case", create=True).collect([ev], workers=1)
    rows = _rows(tmp_path / "case")
    assert [r for r in rows if r[2] != "unknown"] == [("web01/auth.log", "web01", "folder")]
    assert sorted(r[0] for r in rows if r[2] == "unknown") == sorted(["db\u202e01/auth.log", ".../auth.log",
                                                                      "srv\x1b[31m/auth.log"])
    assert {r[1] for r in rows if r[2] == "unknown"} == {UNKNOWN_HOST}


def test_an_os_tree_whose_hostname_holds_escapes(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "var" / "log").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("app\x1b[2J\u202e01/x\n")  # (dissect keeps what is before a dot)
    (tree / "var" / "log" / "auth.log").write_text(LINE.format(n=4, host="-").replace(" - sshd", " sshd"))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([tree], workers=1)
    shown = "app\\x1b[2J\\u202e01/x"
    assert {r[1:] for r in _rows(tmp_path / "case")} == {(shown, "os")}
    facts = [a["facts"] for a in rep.artifacts if a.get("facts")]
    assert [(f["host"], f["host_source"]) for f in facts] == [(shown, "os")]
    assert case.info()["hosts"] == {shown: len(case.timeline())}
    # the analyst's name wins over the tree's
    case2 = Case(tmp_path / "case2", create=True)
    rep2 = case2.collect([tree], workers=1, host="app01")
    assert {r[1:] for r in _rows(tmp_path / "case2")} == {("app01", "given")}
    assert [a["facts"]["host_source"] for a in rep2.artifacts if a.get("facts")] == ["given"]
