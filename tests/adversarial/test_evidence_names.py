"""Names that are not UTF-8 and trees of any depth: in a folder, an OS tree, a tar and an ext4 image.  A name is
shown with ``\\xNN`` for each byte that is not UTF-8 (rows, custody, exports: all UTF-8), and its raw bytes are
kept beside it (``attrs.name_bytes``, custody ``real_path_bytes``, hex), from which verify opens the file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import forensics
from forensics import Case
from forensics.cli import main

LINE = "Jan 10 10:00:00 web01 sshd[1]: Accepted password for root from {ip} port 22 ssh2\n"


def _deep(root: Path, depth: int, name: str, text: str) -> Path:
    """``root/d/d/.../name`` ``depth`` folders down, made with relative steps (the path outgrows nothing)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write(text)
    finally:
        os.close(fd)
    return root / ("d/" * depth + name)


@pytest.fixture
def deep():
    """Folders holding a ``d/d/...`` chain, removed level by level after the test: ``shutil.rmtree`` recurses, and
    1,200 levels overflow it (pytest's own clean-up of old temporary folders too)."""
    made: list[Path] = []
    yield made
    for top in made:
        while (top / "d").is_dir():
            if (top / "d" / "d").is_dir():
                os.rename(top / "d" / "d", top / "d.next")
            shutil.rmtree(top / "d")
            if (top / "d.next").is_dir():
                os.rename(top / "d.next", top / "d")


def _logins(case: Case) -> dict[str, str]:
    s = case.sightings().to_pandas()
    t = case.timeline().to_pandas().set_index("event_hash")
    s = s[s.parser.str.startswith("forensics-syslog")]
    return {p: t.loc[h, "src_ip"] for p, h in zip(s.evidence_path, s.event_hash)}


def test_a_name_that_is_not_utf8_in_a_folder_is_read_and_shown_escaped(tmp_path, capsys):
    ev = tmp_path / os.fsdecode(b"seized-\xfe")
    ev.mkdir()
    (ev / "auth.log").write_text(LINE.format(ip="203.0.113.7"))
    (ev / os.fsdecode(b"bad\xffauth.log")).write_text(LINE.format(ip="198.51.100.9"))
    (ev / os.fsdecode(b"notes-\xff.pcap")).write_bytes(b"\x00\x01")
    case_dir = tmp_path / "case"
    case = Case(case_dir, create=True)
    rep = case.collect([ev], workers=1)
    assert _logins(case) == {"auth.log": "203.0.113.7", "bad\\xffauth.log": "198.51.100.9"}
    assert rep.evidence[0]["unrecognised"] == ["notes-\\xff.pcap"]
    assert rep.evidence[0]["path"] == str(tmp_path) + "/seized-\\xfe"
    assert bytes.fromhex(rep.evidence[0]["path_bytes"]) == os.fsencode(ev)
    f = {x["path"]: x for x in rep.evidence[0]["files"]}["bad\\xffauth.log"]
    assert bytes.fromhex(f["real_path_bytes"]) == os.fsencode(ev / os.fsdecode(b"bad\xffauth.log"))
    for line in (case_dir / "custody.jsonl").read_bytes().splitlines():  # UTF-8 JSON, every line
        json.loads(line.decode("utf-8"))
    assert case.verify().ok
    (ev / os.fsdecode(b"bad\xffauth.log")).write_text("changed\n")
    assert [p for p in case.verify().problems if "bad\\xffauth.log" in p]
    (ev / os.fsdecode(b"bad\xffauth.log")).write_text(LINE.format(ip="198.51.100.9"))
    # exports and the CLI take such names
    tl = forensics.open(case_dir)
    for fmt, name in (("csv", "t.csv"), ("jsonl", "t.jsonl"), ("parquet", "t.parquet"), ("xlsx", "t.xlsx"),
                      ("timesketch-jsonl", "ts.jsonl")):
        tl.export(tmp_path / name, fmt)
    assert "bad\\xffauth.log" in (tmp_path / "t.csv").read_text(encoding="utf-8")
    assert "bad\\xffauth.log" in pq.read_table(tmp_path / "t.parquet").column("evidence_path").to_pylist()
    assert main(["info", str(case_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["evidence"][0]["unread"] == ["notes-\\xff.pcap"]


def test_a_folder_1200_deep_is_walked(tmp_path, deep):
    """The trial: ``RecursionError`` from a 1,200-deep folder aborted the collection."""
    ev = tmp_path / "logs"
    ev.mkdir()
    deep.append(ev)
    _deep(ev, 1200, "auth.log", LINE.format(ip="203.0.113.7"))
    (ev / "top.log").write_text(LINE.format(ip="192.0.2.1").replace("10:00:00", "10:00:01"))
    case = Case(tmp_path / "case", create=True)
    case.collect([ev], workers=1)
    assert _logins(case) == {"d/" * 1200 + "auth.log": "203.0.113.7", "top.log": "192.0.2.1"}
    assert case.verify().ok


def test_an_os_tree_1200_deep_with_names_that_are_not_utf8(tmp_path, deep):
    tree = tmp_path / "app01"
    (tree / "etc").mkdir(parents=True)
    (tree / "var" / "log").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("app01\n")
    (tree / "var" / "log" / os.fsdecode(b"auth\xff.log")).write_text(LINE.format(ip="198.51.100.9"))
    deep.append(tree / "var" / "log")
    _deep(tree / "var" / "log", 1200, "deep.log", LINE.format(ip="192.0.2.7"))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([tree], workers=1)
    assert _logins(case) == {"/var/log/auth\\xff.log": "198.51.100.9", "/var/log/" + "d/" * 1200 + "deep.log": "192.0.2.7"}
    t = case.timeline().to_pandas()
    fs = {r.path: json.loads(r.attrs) for r in t[t.source == "FILE"].itertuples()}
    assert fs["/var/log/auth\\xff.log"]["name_bytes"] == b"/var/log/auth\xff.log".hex()
    assert len(rep.evidence[0]["files"]) == 3 and rep.errors == 0
    assert case.verify().ok


def test_a_hostile_ext4_image(tmp_path, ext4_image, deep):
    """An image built by mke2fs -d from a hostile tree: names that are not UTF-8, a folder 500 deep, links to
    /etc/shadow and out of the root; everything is a row, nothing is read from this machine."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("img01\n")
    (root / "var" / "log" / os.fsdecode(b"auth\xfe.log")).write_text(LINE.format(ip="198.51.100.9"))
    (root / os.fsdecode(b"\xff\xfe")).mkdir()
    (root / "etc" / "shadow").symlink_to("/etc/shadow")
    (root / "var" / "log" / "up").symlink_to("../../../../../../../etc")
    deep.append(root / "var" / "log")
    _deep(root / "var" / "log", 500, "deep.log", LINE.format(ip="192.0.2.7"))
    img = ext4_image(root, tmp_path / "img01.raw", "16M")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([img], workers=1)
    assert _logins(case) == {"/var/log/auth\\xfe.log": "198.51.100.9", "/var/log/" + "d/" * 500 + "deep.log": "192.0.2.7"}
    t = case.timeline().to_pandas()
    fs = {r.path: json.loads(r.attrs) for r in t[t.source == "FILE"].itertuples()}
    assert fs["/\\xff\\xfe"]["name_bytes"] == b"/\xff\xfe".hex()
    assert fs["/etc/shadow"]["link_target"] == "/etc/shadow"
    assert fs["/var/log/up"]["link_target"] == "../../../../../../../etc"
    assert rep.errors == 0 and rep.warnings == 0
    assert set(t[t.source == "FILE"].host) == {"img01"}


def test_a_shown_name_stays_unique_in_its_folder(tmp_path):
    """``a\\xff`` (a backslash, x, f, f) and ``a<0xFF>`` show the same: the second keeps its bytes in its name."""
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / os.fsdecode(b"a\\xff")).write_text(LINE.format(ip="192.0.2.1"))
    (ev / os.fsdecode(b"a\xff")).write_text(LINE.format(ip="192.0.2.2"))
    case = Case(tmp_path / "case", create=True)
    case.collect([ev], workers=1)
    assert _logins(case) == {"a\\xff": "192.0.2.1", "a\\xff [name bytes 61ff]": "192.0.2.2"}
    assert case.verify().ok
