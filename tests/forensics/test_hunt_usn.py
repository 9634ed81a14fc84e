"""``encryption_burst`` on the NTFS change journal.

The corpus holds no journal of a ransomware run: the museum's real ``$J`` (APTSimulator, Windows 10) is one of a
host being updated, thousands of ``.tmp`` files renamed to ``.mui`` / ``.dll`` in minutes, and must give no
burst.  The burst is a journal made here: the first 4 MiB of that real ``$J`` followed by the USN_RECORD_V2
records an encryption run writes -- files encrypted in place and renamed (``scan3.pdf`` -> ``scan3.pdf.lockbit``),
files copied encrypted and the originals deleted (``report2.docx.lockbit`` created, ``report2.docx`` deleted), a
ransom note per folder -- and, as a control, copies whose originals stay (not encryption)."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path

import pandas as pd
import pytest

import forensics
from forensics import Case
from timeline.schema import UNKNOWN_HOST, iso_ns

J_AT = 209_715_200  # the museum journal's first USN
PREFIX = 4 << 20
BURST = dt.datetime(2022, 3, 10, 22, 0, 0, tzinfo=dt.timezone.utc)
R = {"DATA_OVERWRITE": 0x1, "DATA_EXTEND": 0x2, "FILE_CREATE": 0x100, "FILE_DELETE": 0x200, "RENAME_OLD_NAME": 0x1000,
     "RENAME_NEW_NAME": 0x2000, "CLOSE": 0x80000000}


def _ft(t: dt.datetime) -> int:
    return int((t - dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc)) / dt.timedelta(microseconds=1)) * 10


def _record(usn: int, t: dt.datetime, record: int, parent: int, name: str, *reasons: str) -> bytes:
    """A USN_RECORD_V2 as NTFS writes it (sequence numbers 1 and 5 in the references' top 16 bits)."""
    raw = name.encode("utf-16-le")
    length = (60 + len(raw) + 7) // 8 * 8
    reason = sum(R[r] for r in reasons)
    head = struct.pack("<IHHQQqqIIIIHH", length, 2, 0, record | 1 << 48, parent | 5 << 48, usn, _ft(t), reason, 0, 0,
                       0x20, len(raw), 60)
    return (head + raw).ljust(length, b"\0")


class _Journal:
    """Records appended after a real journal's prefix, in 4 KiB pages (a record never spans two)."""

    def __init__(self, prefix: bytes):
        self.data = bytearray(prefix)
        self.t = BURST
        self.first_usn: int | None = None

    def add(self, record: int, parent: int, name: str, *reasons: str, step: float = 0.0) -> int:
        self.t += dt.timedelta(seconds=step)
        usn = J_AT + len(self.data)
        rec = _record(usn, self.t, record, parent, name, *reasons)
        if len(self.data) // 4096 != (len(self.data) + len(rec) - 1) // 4096:
            self.data += bytes(-len(self.data) % 4096)
            usn = J_AT + len(self.data)
            rec = _record(usn, self.t, record, parent, name, *reasons)
        self.data += rec
        return usn


@pytest.fixture(scope="module")
def museum_j(museum_journal) -> Path:
    return museum_journal


def ransomware_journal(museum: bytes) -> tuple[bytes, dict]:
    j = _Journal(museum[:PREFIX])
    first = {}
    rec = 90_000
    for d in range(12):  # encrypted in place, then renamed: 10 files in each of 12 folders
        folder = 5_000 + d
        for f in range(10):
            rec += 1
            name = f"scan{f}.pdf"
            j.add(rec, folder, name, "DATA_OVERWRITE", step=0.5)
            j.add(rec, folder, name, "DATA_OVERWRITE", "CLOSE", step=0.01)
            j.add(rec, folder, name, "RENAME_OLD_NAME", step=0.01)
            usn = j.add(rec, folder, name + ".lockbit", "RENAME_NEW_NAME", step=0.01)
            first.setdefault("rename", (usn, j.t))
            j.add(rec, folder, name + ".lockbit", "RENAME_NEW_NAME", "CLOSE")
        j.add(rec + 500, folder, "README_LOCKBIT.txt", "FILE_CREATE", step=0.1)
        first.setdefault("note", j.t)
        j.add(rec + 500, folder, "README_LOCKBIT.txt", "FILE_CREATE", "DATA_EXTEND", "CLOSE")
        rec += 1
    for d in range(3):  # copied encrypted, the original deleted: 10 files in each of 3 folders
        folder = 6_000 + d
        for f in range(10):
            rec += 1
            j.add(rec, folder, f"report{f}.docx.lockbit", "FILE_CREATE", step=0.5)
            first["last"] = j.t  # the burst's last file: the last copy whose original is deleted
            j.add(rec, folder, f"report{f}.docx.lockbit", "FILE_CREATE", "DATA_EXTEND", "CLOSE", step=0.01)
            j.add(80_000 + d * 10 + f, folder, f"report{f}.docx", "FILE_DELETE", "CLOSE", step=0.01)
        j.add(rec + 500, folder, "README_LOCKBIT.txt", "FILE_CREATE", "DATA_EXTEND", "CLOSE", step=0.1)
        rec += 1
    for f in range(10):  # control: copies whose originals stay are not encryption
        rec += 1
        j.add(rec, 7_000, f"keep{f}.xlsx.lockbit", "FILE_CREATE", "DATA_EXTEND", "CLOSE", step=0.5)
    return bytes(j.data), first


def test_the_museums_update_journal_is_no_burst(museum_j, tmp_path):
    """Thousands of files renamed to an extension not seen before within minutes: Windows servicing renames its
    ``.tmp`` files; a rule counting every rename to a new extension would report them."""
    case = Case(tmp_path / "case", create=True)
    case.collect([museum_j], workers=1)
    tl = forensics.open(case.path)
    u = tl.sql("SELECT timestamp, attrs FROM timeline WHERE artifact = 'ntfs:usnjrnl' AND attrs LIKE '%RENAME_NEW%'")
    docs = u["attrs"].map(json.loads)
    naive = u[docs.map(lambda d: "CLOSE" in d["reasons"] and d.get("old_extension") not in (None, d["extension"])
                       and d["extension"] == "mui")]
    ns = naive["timestamp"].astype("int64").sort_values().to_numpy()
    densest = max(((ns >= x) & (ns <= x + 600 * 10**9)).sum() for x in ns)
    assert densest == 3906  # every rename to .mui of the journal (3897 of them from .tmp) fell inside ten minutes
    assert tl.encryption_burst().empty


def test_a_burst_of_renames_and_encrypted_copies_in_the_journal(museum_j, tmp_path):
    data, first = ransomware_journal(museum_j.read_bytes())
    j = tmp_path / "$J"
    j.write_bytes(data)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([j], workers=1)
    assert [(a["collector"], a["lost"]) for a in rep.artifacts] == [("usnjrnl", 0)]
    tl = forensics.open(case.path)
    eb = tl.encryption_burst(window="10min", min_files=100)
    assert eb["evidence_id"].tolist() == [rep.evidence[0]["evidence_id"]]
    assert eb.drop(columns=["first", "last", "evidence_id"]).to_dict("records") == [{
        "host": UNKNOWN_HOST, "extension": "lockbit", "files": 150, "directories": 15, "notes": 15,
        "first_note": "README_LOCKBIT.txt", "evidence_path": "$J",
        "record_ref": f"usn={first['rename'][0]} offset=0x{first['rename'][0] - J_AT:x}", "renamed": 120}]
    assert iso_ns(eb["first"].iloc[0].value) == iso_ns(int(pd.Timestamp(first["rename"][1]).value))
    assert iso_ns(eb["first"].iloc[0].value) == "2022-03-10T22:00:00.530000000Z"
    assert iso_ns(eb["last"].iloc[0].value) == iso_ns(int(pd.Timestamp(first["last"]).value)) == "2022-03-10T22:01:20.580000000Z"
    assert tl.encryption_burst(min_files=151).empty
    # the same files also seen by Sysmon (event 11 at each rename): where the journal covers, it is the record
    from forensics import hunt

    df = tl.to_pandas()
    usn = df[(df.artifact == "ntfs:usnjrnl") & df["attrs"].str.contains('"RENAME_NEW_NAME","CLOSE"', regex=False)]
    sysmon = pd.DataFrame({"timestamp": usn.timestamp.to_numpy(), "host": usn.host.to_numpy(), "source": "EVTX",
                           "artifact": "evtx:Microsoft-Windows-Sysmon/Operational", "timestamp_desc": "Event Logged",
                           "channel": "Microsoft-Windows-Sysmon/Operational", "event_id": 11,
                           "path": ("C:\\Records\\" + usn.path).to_numpy(), "attrs": "{}", "evidence_id": "s",
                           "evidence_path": "Sysmon.evtx", "record_ref": [f"record={i}" for i in range(len(usn))]})
    assert len(sysmon) == 120
    both = hunt.encryption_burst(pd.concat([df, sysmon], ignore_index=True))
    assert both[["files", "renamed", "record_ref"]].to_dict("records") == eb[["files", "renamed", "record_ref"]].to_dict("records")
