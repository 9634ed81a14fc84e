"""systemd journal files written by systemd itself (systemd-journal-remote from the export format)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pyarrow as pa

from collectors import Artifact, JournalCollector
from forensics import Case
from forensics.hunt import logons

UTC = dt.timezone.utc
BOOT = "0123456789abcdef0123456789abcdef"


def _export(entries: list[dict[str, str]]) -> bytes:
    out = []
    for i, e in enumerate(entries):
        fields = {"__REALTIME_TIMESTAMP": e.pop("us"), "__MONOTONIC_TIMESTAMP": str(1000 + i), "_BOOT_ID": BOOT, **e}
        out.append("".join(f"{k}={v}\n" for k, v in fields.items()))
    return ("\n".join(out) + "\n").encode()


ENTRIES = [
    {"us": "1669167003123456", "_HOSTNAME": "ehosp-app01", "SYSLOG_IDENTIFIER": "sshd", "_PID": "100", "_COMM": "sshd",
     "_EXE": "/usr/sbin/sshd", "_SYSTEMD_UNIT": "ssh.service", "PRIORITY": "6",
     "MESSAGE": "Failed password for root from 198.51.100.23 port 50000 ssh2"},
    {"us": "1669167581000001", "_HOSTNAME": "ehosp-app01", "SYSLOG_IDENTIFIER": "sshd", "_PID": "101", "_COMM": "sshd",
     "_SYSTEMD_UNIT": "ssh.service", "PRIORITY": "6", "MESSAGE": "Accepted password for ehadmin from 198.51.100.23 port 50001 ssh2"},
    {"us": "1669168265000000", "_HOSTNAME": "ehosp-app01", "SYSLOG_IDENTIFIER": "sudo", "_PID": "102", "PRIORITY": "5",
     "MESSAGE": "  ehadmin : TTY=pts/1 ; PWD=/home/ehadmin ; USER=root ; COMMAND=/bin/bash"},
    {"us": "1669168300000000", "_HOSTNAME": "ehosp-app01", "SYSLOG_IDENTIFIER": "kernel", "PRIORITY": "4",
     "MESSAGE": "रोगी रिकॉर्ड सर्वर: disk sda1 नियंत्रण"},
]


def make_journal(tmp_path: Path, exe: str, entries=ENTRIES) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "in.export"
    src.write_bytes(_export([dict(e) for e in entries]))
    out = tmp_path / "journal" / "system.journal"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, f"--output={out}", str(src)], check=True, capture_output=True)
    return out


def collect(path: Path):
    c = JournalCollector()
    art = Artifact("e1", "var/log/journal/" + BOOT + "/" + path.name, str(path), "0" * 64, path.stat().st_size)
    tables = list(c.collect(art)) + list(c.finish())
    return (pa.concat_tables(tables).to_pylist() if tables else []), c.report(art)


def test_entries_fields_and_microseconds(tmp_path, journal_remote):
    path = make_journal(tmp_path, journal_remote)
    assert JournalCollector.matches(str(path)) and not JournalCollector.matches(str(tmp_path / "in.export"))
    rows, rep = collect(path)
    assert not rep.errors and not rep.warnings and rep.stats["announced"] == 4
    assert [r["timestamp"] for r in rows] == [dt.datetime(2022, 11, 23, 1, 30, 3, 123456, tzinfo=UTC),
                                              dt.datetime(2022, 11, 23, 1, 39, 41, 1, tzinfo=UTC),
                                              dt.datetime(2022, 11, 23, 1, 51, 5, tzinfo=UTC),
                                              dt.datetime(2022, 11, 23, 1, 51, 40, tzinfo=UTC)]
    r = rows[0]
    assert (r["host"], r["provider"], r["process"], r["service_name"], r["user"], r["src_ip"]) == (
        "ehosp-app01", "sshd", "/usr/sbin/sshd", "ssh.service", "root", "198.51.100.23")
    assert (r["source"], r["artifact"], r["tz_source"]) == ("SYSLOG", "journal:system", "source_utc")
    assert json.loads(r["attrs"])["priority"] == "6"
    assert (rows[2]["user"], rows[2]["target_user"], rows[2]["command_line"]) == ("ehadmin", "root", "/bin/bash")
    assert rows[3]["message"] == "ehosp-app01 kernel: रोगी रिकॉर्ड सर्वर: disk sda1 नियंत्रण"


def test_a_truncated_journal_counts_what_it_lost(tmp_path, journal_remote):
    many = [{**ENTRIES[0], "us": str(1669167003123456 + i * 1_000_000), "MESSAGE": f"line {i} " + "x" * 200}
            for i in range(400)]
    path = make_journal(tmp_path, journal_remote, many)
    data = path.read_bytes()
    at = data.find(b"MESSAGE=line 200 ")  # cut the file in the middle of the 201st entry's data
    cut = tmp_path / "cut" / "system.journal"
    cut.parent.mkdir()
    cut.write_bytes(data[:at])
    rows, rep = collect(cut)
    assert 0 < len(rows) < 400
    assert len(rows) + sum(e.count for e in rep.errors) >= 400 - 1  # every entry is read or counted
    assert rep.errors


def test_journal_logons_in_a_case(tmp_path, journal_remote):
    make_journal(tmp_path / "ev", journal_remote)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([tmp_path / "ev" / "journal"], workers=1)
    assert rep.errors == 0 and rep.rows_written == 4
    lg = logons(case.timeline().to_pandas())
    assert [(r.user, r.src_ip, r.outcome) for r in lg.itertuples()] == [
        ("root", "198.51.100.23", "failure"), ("ehadmin", "198.51.100.23", "success")]
