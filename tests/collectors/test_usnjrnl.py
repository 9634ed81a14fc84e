"""The NTFS change journal ($UsnJrnl:$J): the real $J of the APTSimulator Windows 10 host (DFIR Artifact
Museum, KAPE-collected, 7z) read loose, checked record by record against dissect.ntfs's reader and a small
reference walk written here; a sparse zero prefix, damage, and the journal read from inside an NTFS image."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pyarrow as pa
import pytest

from collectors import collector_for
from collectors.base import ArtifactReport
from collectors.filesystem import Mft, volume_stream
from collectors.usnjrnl import UsnJrnlCollector, file_chunks, reason_names, usn_tables
from forensics import Case

SAMPLE = "AndrewRathbun-DFIRArtifactMuseum/Windows/NTFSArtifacts/J/Win10/APTSimulatorVM/APTSimulatorVMJ.7z"
RECORDS = 275_540


@pytest.fixture(scope="module")
def journal(museum_journal) -> Path:
    return museum_journal


def _reference(data: bytes) -> list[tuple[int, str, int, int]]:
    """(usn, name, reason, FILETIME) of each V2 record, walked as the journal is laid out: a zero length word
    is padding up to the next 4 KiB page."""
    out, pos = [], 0
    while pos + 60 <= len(data):
        length = struct.unpack_from("<I", data, pos)[0]
        if length == 0:
            pos = (pos // 4096 + 1) * 4096
            continue
        usn, ft, reason = struct.unpack_from("<qqI", data, pos + 24)
        nlen, noff = struct.unpack_from("<HH", data, pos + 56)
        out.append((usn, data[pos + noff:pos + noff + nlen].decode("utf-16-le"), reason, ft))
        pos += length
    return out


def _rows(path: Path, chunk: int = 16 << 20) -> tuple[pa.Table, ArtifactReport]:
    rep = ArtifactReport()
    fd = os.open(path, os.O_RDONLY)
    try:
        t = pa.concat_tables(list(usn_tables(file_chunks(fd, chunk), "e", "$J", None, "p", rep)))
    finally:
        os.close(fd)
    return t, rep


def test_the_museums_7z_is_collected_record_for_record(evidence, journal, tmp_path):
    """The KAPE 7z as published, collected as it is: its $J member is recognised by content."""
    assert collector_for(str(journal)) is UsnJrnlCollector
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([evidence / SAMPLE], workers=1)
    usn = [(a["evidence_path"], a["collector"], a["rows"], a["lost"]) for a in rep.artifacts if a["collector"] == "usnjrnl"]
    assert usn == [("/$J", "usnjrnl", RECORDS, 0)]
    t = case.timeline().to_pandas()
    t = t[t.artifact == "ntfs:usnjrnl"]
    got = sorted((json.loads(a)["usn"], json.loads(a)["name"], json.loads(a)["reason"], ts.value)
                 for a, ts in zip(t["attrs"], t.timestamp))
    ref = sorted((u, n, r, (ft - 116444736000000000) * 100) for u, n, r, ft in _reference(journal.read_bytes()))
    assert len(ref) == RECORDS and got == ref
    first = t[t.record_ref == "usn=209715200 offset=0x0"].iloc[0]
    assert first.timestamp.value == 1646946766392180200  # 2022-03-10 21:12:46.3921802 UTC, 100 ns kept
    attrs = json.loads(first["attrs"])
    assert attrs["name"] == "0d2609cc702e2545904e927af87deece.tmp" and attrs["extension"] == "tmp"
    assert attrs["reasons"] == ["DATA_OVERWRITE", "DATA_EXTEND", "FILE_CREATE", "RENAME_OLD_NAME", "BASIC_INFO_CHANGE"]
    assert (first.timestamp_desc, first.artifact, first.source, first.tz_source) == (
        "USN Journal Entry", "ntfs:usnjrnl", "FILE", "source_utc")
    assert (t.timestamp.min().value, t.timestamp.max().value) == (1646946766392180200, 1646948646870587900)
    # 21:12:46.3921802 to 21:44:06.8705879 UTC; a rename the journal holds: a font installed through a .tmp name
    rn = t[t.record_ref.str.startswith("usn=209715448 ")].iloc[0]
    assert (json.loads(rn["attrs"])["old_name"], json.loads(rn["attrs"])["name"]) == (
        "0d2609cc702e2545904e927af87deece.tmp", "skypeuisymbol-regular.ttf")


def _segment(ref) -> int:
    return ref.SegmentNumberLowPart | ref.SegmentNumberHighPart << 32


def test_equal_to_dissect_ntfs_on_the_first_eight_mib(journal, tmp_path):
    from dissect.ntfs.usnjrnl import UsnJrnl

    part = tmp_path / "J8"
    part.write_bytes(journal.read_bytes()[: 8 << 20])
    with open(part, "rb") as fh:
        theirs = [(r.Usn, r.filename, int(r.Reason), _segment(r.FileReferenceNumber),
                   _segment(r.ParentFileReferenceNumber), r.timestamp_ns) for r in UsnJrnl(fh).records()]
    t, rep = _rows(part, chunk=1 << 20)  # records cut by chunk ends are read whole
    mine = [(a["usn"], a["name"], a["reason"], a["file_record"], a["parent_record"], ts)
            for a, ts in zip(map(json.loads, t.column("attrs").to_pylist()), t.column("timestamp").cast(pa.int64()).to_pylist())]
    assert len(theirs) > 50_000 and mine == theirs and not rep.warnings


def test_renames_carry_the_old_name_and_extension(journal, tmp_path):
    t, _ = _rows_of(tmp_path / "J4", journal.read_bytes()[: 4 << 20])
    docs = [json.loads(a) for a in t.column("attrs").to_pylist()]
    new = [d for d in docs if "RENAME_NEW_NAME" in d["reasons"]]
    assert new and all("old_name" in d for d in new[:100])
    # reasons add up until the close: each record of the rename (the second with CLOSE) names the old name
    assert [(d["usn"], d["name"], d["old_name"]) for d in new[:2]] == [
        (209715336, "skypeuisymbol-regular.ttf", "0d2609cc702e2545904e927af87deece.tmp"),
        (209715448, "skypeuisymbol-regular.ttf", "0d2609cc702e2545904e927af87deece.tmp")]
    d = next(d for d in new if d["old_extension"] != d["extension"])
    old = [x for x in docs if x["usn"] < d["usn"] and "RENAME_OLD_NAME" in x["reasons"]
           and (x["file_record"], x["file_sequence"]) == (d["file_record"], d["file_sequence"])][-1]
    assert d["old_name"] == old["name"]
    assert reason_names(0x80002000) == ("RENAME_NEW_NAME", "CLOSE") and reason_names(0x8) == ("0x8",)


def test_a_sparse_or_zero_prefix_and_damage(journal, tmp_path):
    data = journal.read_bytes()[: 1 << 20]
    plain, _ = _rows_of(tmp_path / "plain", data)
    base = _usns(plain)
    (tmp_path / "zeros-only").write_bytes(bytes(1 << 20))
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as fh:  # a hole of 256 MiB, as a live journal's $J keeps ahead of its records
        fh.seek(256 << 20)
        fh.write(data)
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(3 << 20) + data)  # the same prefix written out as zeros
    for p in (sparse, zeros):
        assert UsnJrnlCollector.matches(str(p))
        t, rep = _rows(p)
        assert _usns(t) == base and not rep.warnings
    # damage: 200 bytes of garbage over the 3rd record's start; the rest is read, the bytes are counted
    starts = [json.loads(a)["offset"] for a in plain.column("attrs").to_pylist()]
    bad = bytearray(data)
    bad[starts[2]:starts[2] + 200] = b"\xaa" * 200
    t, rep = _rows_of(tmp_path / "bad", bytes(bad))
    lost = [s for s in starts if starts[2] <= s < starts[2] + 200]
    assert len(t) == len(base) - len(lost)
    assert [w.kind for w in rep.warnings] == ["damage"]
    assert rep.stats["usn"]["damaged_bytes"] == next(s for s in starts if s >= starts[2] + 200) - starts[2]
    text = tmp_path / "text"
    text.write_bytes(b"Dec  2 14:00:00 host sshd[1]: Accepted\n" * 100)
    assert not UsnJrnlCollector.matches(str(text)) and not UsnJrnlCollector.matches(str(tmp_path / "zeros-only"))


def _usns(t: pa.Table) -> list[int]:
    return [json.loads(a)["usn"] for a in t.column("attrs").to_pylist()]


def _rows_of(path: Path, data: bytes) -> tuple[pa.Table, ArtifactReport]:
    path.write_bytes(data)
    return _rows(path)


def test_the_journal_stream_inside_an_ntfs_image(journal, ntfs_image, tmp_path):
    """ntfs-3g will not write $Extend/$UsnJrnl itself: the same sparse $J stream is written as a named stream of
    another file and read through the volume's extents (the hole is skipped, not read)."""
    data = journal.read_bytes()[: 1 << 20]

    def fill(mnt: Path) -> None:
        (mnt / "docs").mkdir()
        (mnt / "docs/jrnl").touch()
        with open(mnt / "docs/jrnl:$J", "wb") as fh:
            fh.seek(32 << 20)
            fh.write(data)

    img = ntfs_image(tmp_path / "usn.img", fill, size="64M")
    with open(img, "rb") as fh:
        mft = Mft(volume_stream(fh))
        chunks = list(mft.stream_chunks("\\docs\\jrnl", "$J"))
        assert [(at, len(b)) for at, b in chunks] == [(32 << 20, 1 << 20)]
        rep = ArtifactReport()
        t = pa.concat_tables(list(usn_tables(iter(chunks), "e", "img", None, "p", rep, where="/docs/jrnl:$J ")))
    loose = tmp_path / "plain"
    loose.write_bytes(data)
    ref, _ = _rows(loose)
    assert t.num_rows == ref.num_rows
    assert t.column("record_ref")[0].as_py() == f"/docs/jrnl:$J usn=209715200 offset=0x{32 << 20:x}"
