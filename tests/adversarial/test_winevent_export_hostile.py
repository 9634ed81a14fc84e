"""Hostile Windows event exports: a truncated JSON line, garbage, NUL runs, an endless line, a cut XML record.
Every bad line is a counted error with its line number and reason; the good lines around it are read."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pytest

from collectors import WinEventExportCollector, winevent_export
from collectors.base import Artifact

GOOD = {"EventID": 4688, "Channel": "Security", "Hostname": "WS1", "SourceName": "Microsoft-Windows-Security-Auditing",
        "TimeCreated": "2022-11-23T07:00:00.123456Z", "NewProcessName": "C:\\Windows\\System32\\vssadmin.exe",
        "CommandLine": "vssadmin delete shadows /all /quiet", "SubjectUserName": "admin", "SubjectDomainName": "HOSP"}
XML = ("<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-"
       "Security-Auditing'/><EventID>4624</EventID><TimeCreated SystemTime='2022-11-23T07:00:01.1234567Z'/>"
       "<EventRecordID>7</EventRecordID><Channel>Security</Channel><Computer>WS1</Computer></System><EventData>"
       "<Data Name='TargetUserName'>bob</Data><Data Name='LogonType'>10</Data><Data Name='IpAddress'>10.1.2.3</Data>"
       "</EventData></Event>")


def read(path):
    c = WinEventExportCollector()
    art = Artifact("e" * 16, path.name, str(path), "0" * 64, path.stat().st_size)
    tables = list(c.collect(art)) + list(c.finish())
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    return rows, c.report(art)


def good(**kw) -> bytes:
    return json.dumps({**GOOD, **kw}).encode()


def test_truncated_and_garbage_lines_are_counted_errors(tmp_path):
    p = tmp_path / "export.json"
    p.write_bytes(b"\n".join([good(), good()[:57], b"\xff\xfe garbage \x01\x02", b"[1, 2]", b'{"no": "event"}',
                              good(TimeCreated="2022-13-45T99:00:00Z"), good(CommandLine="whoami")]) + b"\n")
    rows, rep = read(p)
    assert [r["record_ref"] for r in rows] == ["line=1", "line=7"] and rows[1]["command_line"] == "whoami"
    assert [(e.record_ref, e.kind) for e in rep.errors] == [
        ("line=2", "bad_json"), ("line=3", "bad_json"), ("line=4", "bad_json"), ("line=5", "not_an_event"),
        ("line=6", "no_valid_time")]
    assert "2022-13-45" not in rep.errors[4].message or "month" in rep.errors[4].message


def test_nul_runs(tmp_path):
    p = tmp_path / "export.json"
    # a zero-filled region (a preallocated log, a torn copy), then NULs glued before and after records
    p.write_bytes(good() + b"\n" + b"\x00" * 100_000 + b"\n" + b"\x00" * 512 + good(CommandLine="a") + b"\x00" * 7
                  + b"\n" + good(CommandLine="b\x00c") .replace(b"\\u0000", b"\x00") + b"\n")
    rows, rep = read(p)
    assert [r["command_line"] for r in rows] == ["vssadmin delete shadows /all /quiet", "a"]
    assert [(e.record_ref, e.kind) for e in rep.errors] == [("line=2", "nul_bytes"), ("line=4", "bad_json")]
    assert [(w.record_ref, w.kind) for w in rep.warnings] == [("line=3", "nul_bytes")]
    assert "519 NUL byte(s)" in rep.warnings[0].message


def test_a_nul_file_is_not_claimed(tmp_path):
    p = tmp_path / "zeros.json"
    p.write_bytes(b"\x00" * 10_000)
    assert not WinEventExportCollector.matches(str(p))


def test_endless_line_is_skipped_not_buffered(tmp_path, monkeypatch):
    monkeypatch.setattr(winevent_export, "MAX_LINE", 1 << 20)
    p = tmp_path / "export.json.gz"
    with gzip.open(p, "wb") as fh:  # compressed too: the reader decompresses by magic
        fh.write(good() + b"\n" + b"{" + b"A" * (5 << 20) + b"\n" + good(CommandLine="after") + b"\n")
    rows, rep = read(p)
    assert [r["command_line"] for r in rows][-1] == "after" and len(rows) == 2
    assert [(e.record_ref, e.kind) for e in rep.errors] == [("line=2", "line_too_long")]


def test_cut_and_broken_xml_records(tmp_path):
    p = tmp_path / "xml.log"
    cut = XML[:XML.index("<Data Name='IpAddress'>") + 30]  # cut inside the last field, as a pipeline cuts at 2 KiB
    p.write_text("\n".join([XML, cut, "<Event><System><Provider Name='x'/>garbage", XML + XML, "not xml at all"]) + "\n")
    rows, rep = read(p)
    # line 2, cut, is read up to its last whole field (a warning); line 3 has no System part left (an error);
    # line 4 holds two records
    assert [r["record_ref"] for r in rows] == ["line=1", "line=2", "line=4 part=1", "line=4 part=2"]
    assert rows[0]["timestamp"].value % 10**9 == 123456700 and (rows[0]["user"], rows[0]["logon_type"]) == ("bob", 10)
    assert (rows[1]["user"], rows[1]["logon_type"], rows[1]["src_ip"]) == ("bob", 10, None)
    assert [(w.record_ref, w.kind) for w in rep.warnings] == [("line=2", "repaired_record")]
    assert [(e.record_ref, e.kind) for e in rep.errors] == [("line=3", "bad_xml"), ("line=5", "bad_xml")]


def test_xml_record_cut_at_the_end_is_repaired_with_a_warning(tmp_path):
    p = tmp_path / "xml.log"
    p.write_text(XML + "\n" + XML[:XML.index("<Data Name='IpAddress'>") + 30] + "\n")
    rows, rep = read(p)
    assert len(rows) == 1 and [(e.record_ref, e.kind) for e in rep.errors] == [("line=2", "bad_xml")]
    assert "not closed before the end of the file" in rep.errors[0].message
