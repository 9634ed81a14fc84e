"""Evidence cannot drive the analyst's terminal: every line the CLI prints for a terminal shows control
characters (C0, DEL, C1) and bidirectional overrides as escapes; CSV and JSON keep the data unchanged.  Without a
terminal, collection progress is plain lines, without escape codes."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from collectors.evtx_writer import Event, EvtxWriter
from forensics.cli import terminal_safe

HOST = "SRV\x1b]0;pwned\x07\u202eexe.01"  # OSC retitles the window; U+202E shows the rest backwards
SERVICE = "evil\x1b[2J\x1b[1;1H\x9b31m\u202etxt.exe\u2066"  # clear screen, cursor home, C1 CSI, bidi
IMAGE = "C:\\x\x1b[5m\r\nFAKE LINE.exe"  # blink, and a fake line of output
EVIL_NAME = "bad\x1b[31m\u202e.evtx"  # an evidence file name

# anything a terminal acts on, but the newline ending each line
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Evidence whose host name, service name and path carry terminal escapes, and a file whose name does."""
    base = tmp_path_factory.mktemp("hostile")
    ev = base / "ev\x1b[7m"
    ev.mkdir()
    t = dt.datetime(2022, 11, 23, 1, 30, tzinfo=dt.timezone.utc)
    with EvtxWriter(ev / "System.evtx") as w:
        w.write(Event(7045, t, "Service Control Manager", "System", HOST, event_data={
            "ServiceName": SERVICE, "ImagePath": IMAGE, "ServiceType": "user mode service", "StartType": "auto start",
            "AccountName": "LocalSystem"}))
    (ev / EVIL_NAME).write_bytes(b"ElfFile\0" + b"garbage" * 100)  # unreadable: its name goes into warnings
    return base, ev


def _clean(text: str) -> None:
    found = RAW.findall(text)
    assert not found, f"raw control characters reach the terminal: {found!r}"


def test_terminal_safe_escapes_every_kind():
    assert terminal_safe("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert terminal_safe("\x00\x07\x7f\x85\x9b\x9d") == "\\x00\\x07\\x7f\\x85\\x9b\\x9d"
    assert terminal_safe("t\tn\nr\r") == "t\\tn\\nr\\r"
    assert terminal_safe("\u202eabc\u2066\u2069\u200f\u061c\u2028") == "\\u202eabc\\u2066\\u2069\\u200f\\u061c\\u2028"
    assert terminal_safe("bad\udcff") == "bad\\udcff"  # a lone surrogate (an undecodable byte) cannot even be printed
    # ordinary text of any script stays as it is, joiners included
    text = "नमस्ते क्ष‍ि  مرحبا שלום  €  ✓ ü\u200d\u200c"
    assert terminal_safe(text) == text
    assert terminal_safe(42) == "42"


def test_every_text_output_is_escaped(hostile, cli):
    base, ev = hostile
    case = base / "case"
    r = cli("collect", str(ev), "--case", str(case), "--workers", "2")  # two units: one in a pool process
    assert r.returncode == 0, r.stderr
    _clean(r.stdout + r.stderr)
    assert "bad\\x1b[31m\\u202e.evtx" in r.stderr  # the worker's warning and the summary name it, escaped
    # no terminal: plain progress lines, no carriage returns or cursor codes
    assert "collect: 2/2 file(s), 1 rows" in r.stderr.splitlines()
    assert "ev\\x1b[7m: 2/2 artifact(s), rows=1" in r.stderr.splitlines()
    outputs = {
        ("hunt", str(case)): ["SRV\\x1b]0;pwned\\x07\\u202eexe.01",
                              "evil\\x1b[2J\\x1b[1;1H\\x9b31m\\u202etxt.exe\\u2066 -> C:\\x\\x1b[5m FAKE LINE.exe"],
        ("query", str(case)): ["SRV\\x1b]0;pwned\\x07\\u202eexe.01", "evil\\x1b[2J"],
        ("info", str(case)): ["hosts       SRV\\x1b]0;pwned\\x07\\u202eexe.01 (1)", "ev\\x1b[7m"],
        ("sql", str(case), "SELECT host, service_name, path FROM timeline"): ["\\x9b31m", "\\r\\nFAKE LINE.exe"],
        ("verify", str(case)): ["verify OK"],
    }
    for args, shown in outputs.items():
        r = cli(*args)
        _clean(r.stdout + r.stderr)
        for s in shown:
            assert s in r.stdout, (args, s, r.stdout)
        assert not any(line.startswith("FAKE LINE") for line in r.stdout.splitlines())
    # CSV and JSON hold the data unchanged
    rows = [json.loads(line) for line in cli("query", str(case), "-o", "json").stdout.splitlines()]
    assert [(x["host"], x["service_name"], x["path"]) for x in rows] == [(HOST, SERVICE, IMAGE)]
    story = [json.loads(line) for line in cli("hunt", str(case), "-o", "json").stdout.splitlines()]
    assert story[0]["host"] == HOST and SERVICE in story[0]["finding"]
    csv = cli("query", str(case), "-o", "csv").stdout
    assert HOST in csv and SERVICE in csv


def test_error_messages_are_escaped(hostile, cli):
    base, ev = hostile
    r = cli("collect", str(ev / EVIL_NAME), "--case", str(base / "other"), "--only", "syslog")
    assert r.returncode == 4
    _clean(r.stderr)
    assert "bad\\x1b[31m\\u202e.evtx" in r.stderr
