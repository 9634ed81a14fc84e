"""Files a folder holds that no collector reads (a capture, an ETL trace, netlogon.log, a fifo) are named where
the analyst looks: the collect summary, ``forensics info`` and ``info --json`` -- not only in custody.jsonl."""

from __future__ import annotations

import json
import os

from forensics import Case
from forensics.cli import main

LINE = "Jan 10 10:00:00 dc01 sshd[1]: Accepted password for root from 203.0.113.7 port 22 ssh2\n"


def _folder(tmp_path):
    ev = tmp_path / "dc01"
    (ev / "debug").mkdir(parents=True)
    (ev / "auth.log").write_text(LINE)
    (ev / "capture.pcap").write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(16))
    (ev / "trace.etl").write_bytes(b"\x00\x00\x01\x00" + bytes(60))
    (ev / "debug" / "netlogon.log").write_text("06/19 13:24:05 [LOGON] [2048] CORP: SamLogon: Network logon of CORP\\alice\n")
    os.mkfifo(ev / "pipe")  # listed, never opened (reading it would hang)
    return ev


UNREAD = ["capture.pcap", "debug/netlogon.log", "pipe (fifo)", "trace.etl"]


def test_unread_files_are_named_in_the_collect_summary_and_info(tmp_path, capsys):
    ev = _folder(tmp_path)
    case_dir = tmp_path / "case"
    assert main(["-q", "collect", str(ev), "--case", str(case_dir), "--workers", "1"]) == 0
    rep = Case(case_dir).collect([ev], workers=1)  # again: nothing new, the same files named
    walked = ["capture.pcap", "pipe (fifo)", "trace.etl", "debug/netlogon.log"]  # a folder's files, then its folders
    assert rep.unread == [f"{ev}: {u}" for u in walked]
    assert rep.summary().endswith("; 4 file(s) no collector reads: " + ", ".join(walked))
    info = Case(case_dir).info()
    assert sorted(info["evidence"][0]["unread"]) == UNREAD and info["unread_files"] == 4
    capsys.readouterr()
    assert main(["collect", str(ev), "--case", str(tmp_path / "case2"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 file(s) no collector reads: " in out and all(u in out for u in UNREAD)
    assert main(["info", str(case_dir)]) == 0
    out = capsys.readouterr().out
    assert "4 file(s) no collector reads: " in out and all(u in out for u in UNREAD)
    assert main(["info", str(case_dir), "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["evidence"][0]["unread"]) == UNREAD


def test_a_long_list_is_cut_in_the_summary_but_whole_in_info_json(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "auth.log").write_text(LINE)
    for i in range(25):
        (ev / f"trace{i:02d}.etl").write_bytes(bytes(8))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([ev], workers=1)
    assert rep.summary().endswith("; 25 file(s) no collector reads: " + ", ".join(f"trace{i:02d}.etl" for i in range(10))
                                  + " (+15 more; `forensics info --json` lists them)")
    assert case.info()["evidence"][0]["unread"] == [f"trace{i:02d}.etl" for i in range(25)]


def test_names_with_control_characters_do_not_reach_the_terminal_raw(tmp_path, capsys):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "auth.log").write_text(LINE)
    (ev / "x\x1b]0;pwned\x07.etl").write_bytes(bytes(8))
    assert main(["collect", str(ev), "--case", str(tmp_path / "case"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "x\\x1b]0;pwned\\x07.etl" in out
    assert main(["info", str(tmp_path / "case")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "x\\x1b]0;pwned\\x07.etl" in out
