"""The XFS file-system timeline, on an image this test builds with ``mkfs.xfs -p protofile`` (no root, no
mounting) and whose inode times it then sets to known values with nanoseconds, re-sealing each inode's
CRC; ``xfs_repair -n`` checks the result is a consistent XFS before dissect reads it."""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from forensics import Case

UTC = dt.timezone.utc
PROTO = """/dummy
0 0
d--755 0 0
etc d--755 0 0
hostname ---644 0 0 {src}/hostname
timezone ---644 0 0 {src}/timezone
$
var d--755 0 0
log d--755 0 0
syslog ---640 0 4 {src}/syslog
$
$
home d--755 0 0
alice d--700 1000 1000
notes.txt ---600 1000 1000 {src}/notes.txt
$
$
$
"""
ENTRIES = ["/etc", "/etc/hostname", "/etc/timezone", "/home", "/home/alice", "/home/alice/notes.txt", "/var",
           "/var/log", "/var/log/syslog"]
BASE = 1669166000  # 2022-11-23 01:13:20 UTC: every inode's four times, but for the two files below
# (atime, mtime, ctime, crtime) as (seconds, nanoseconds)
SYSLOG_TIMES = ((1669200001, 987654321), (1669200000, 123456789), (1669200002, 1), (1669166000, 5))
NOTES_TIMES = ((1669167120, 999999999), (1669167120, 999999999), (1669167121, 0), (1669167000, 500))


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as XFS seals its metadata with."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _set_times(img: Path, xfs_db: str, path: str, times) -> None:
    """Write an inode's atime, mtime, ctime and crtime (bigtime: ns since 1901-12-13T20:45:52Z, big-endian),
    then its CRC. xfs_db finds the inode's byte offset (its own ``write`` of time fields does not take
    seconds in xfsprogs 6.1)."""
    out = subprocess.run([xfs_db, "-r", "-c", f"path {path}", "-c", "inode", img], check=True, capture_output=True,
                         text=True).stdout
    ino = int(out.split("current inode number is")[1].split()[0])
    out = subprocess.run([xfs_db, "-r", "-c", f"convert ino {ino} byte", img], check=True, capture_output=True,
                         text=True).stdout
    off = int(out.split("(")[1].split(")")[0])
    with open(img, "r+b") as fh:
        fh.seek(off)
        inode = bytearray(fh.read(512))
        assert inode[:2] == b"IN" and inode[4] == 3  # a v3 inode
        for pos, (sec, nsec) in zip((32, 40, 48, 144), times):
            inode[pos:pos + 8] = struct.pack(">Q", (sec + 2**31) * 1_000_000_000 + nsec)
        inode[100:104] = b"\0\0\0\0"
        inode[100:104] = struct.pack("<I", _crc32c(bytes(inode)))
        fh.seek(off)
        fh.write(inode)


@pytest.fixture
def xfs_image(tmp_path, mkfs_xfs) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "hostname").write_text("ehosp-db01\n")
    (src / "timezone").write_text("Asia/Kolkata\n")
    (src / "syslog").write_text("Nov 23 07:00:01 ehosp-db01 CRON[7]: (root) CMD (backup.sh)\n")
    (src / "notes.txt").write_text("patient records moved\n")
    (tmp_path / "proto").write_text(PROTO.format(src=src))
    img = tmp_path / "db01-xfs.raw"
    with open(img, "wb") as fh:
        fh.truncate(32 << 20)
    # mkfs.xfs refuses file systems under 300 MB unless run by the fstests harness, which it recognises by
    # these variables; a 32 MB image keeps the test fast
    env = dict(os.environ, TEST_DIR=str(tmp_path), TEST_DEV=str(img), QA_CHECK_FS="1")
    subprocess.run([mkfs_xfs, "-q", "-p", str(tmp_path / "proto"), str(img)], check=True, env=env, capture_output=True)
    xfs_db = str(Path(mkfs_xfs).with_name("xfs_db"))
    for p in ["/"] + ENTRIES:
        t = SYSLOG_TIMES if p == "/var/log/syslog" else NOTES_TIMES if p == "/home/alice/notes.txt" else ((BASE, 0),) * 4
        _set_times(img, xfs_db, p, t)
    repair = subprocess.run([str(Path(mkfs_xfs).with_name("xfs_repair")), "-n", "-f", str(img)], capture_output=True, text=True)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    os.chmod(img, 0o444)
    return img


def _ns(sec: int, nsec: int) -> int:
    return sec * 1_000_000_000 + nsec


def test_xfs_file_system_timeline_keeps_nanoseconds(xfs_image, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([xfs_image], workers=1)
    assert rep.errors == 0 and rep.warnings == 0
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    assert target["facts"]["host"] == "ehosp-db01" and target["facts"]["tz"] == "Asia/Kolkata"
    assert target["rows"] == 36  # 9 entries x 4 times (the root folder itself is not an entry)
    assert target["stats"]["fs_readers"] == {"/": "libfsxfs"}
    t = case.timeline().to_pandas()
    files = t[t.source == "FILE"]
    assert sorted(set(files.path)) == ENTRIES and set(files.artifact) == {"fs:xfs"}
    syslog = files[files.path == "/var/log/syslog"]
    got = {r.timestamp_desc: int(r.timestamp.value) for r in syslog.itertuples()}
    (a, m, c, b) = (_ns(*x) for x in SYSLOG_TIMES)
    assert got == {"Last Access Time": a, "Content Modification Time": m, "Metadata Modification Time": c,
                   "Creation Time": b}
    assert got["Content Modification Time"] == 1669200000123456789  # 2022-11-23 10:40:00.123456789 UTC
    attrs = json.loads(syslog["attrs"].iloc[0])
    assert (attrs["mode"], attrs["uid"], attrs["gid"], attrs["size"], attrs["fs"]) == ("-rw-r-----", 0, 4, 59, "xfs")
    notes = files[files.path == "/home/alice/notes.txt"]
    macb = {r.timestamp_desc: json.loads(r.attrs)["macb"] for r in notes.itertuples()}
    assert macb == {"Content Modification Time": "MA..", "Last Access Time": "MA..", "Metadata Modification Time": "..C.",
                    "Creation Time": "...B"}
    assert json.loads(notes["attrs"].iloc[0])["uid"] == 1000
    assert set(files[files.path == "/etc"].timestamp.astype("int64")) == {BASE * 1_000_000_000}
    # the log inside went through the syslog collector, dated in the image's zone: 07:00:01 IST
    log = t[t.evidence_path == "/var/log/syslog"]
    assert list(log.timestamp) == [dt.datetime(2022, 11, 23, 1, 30, 1, tzinfo=UTC)] and list(log.tz_source) == ["evidence_config"]


@pytest.mark.parametrize("n", [2, 3])
def test_xfs_parts_give_exactly_the_names_of_one_read(xfs_image, n):
    """Read in parts (leaf folders listed by their own part only), XFS gives the names of one read, each once."""
    from collectors.filesystem import FS_READERS, Counts, Part, volume_stream

    def read(part: Part) -> tuple[list[tuple], Counts]:
        counts = Counts()
        with open(xfs_image, "rb") as fh:
            return list(FS_READERS["xfs"](volume_stream(fh), part, counts)), counts

    whole, counts = read(Part())
    assert sorted(e[0] for e in whole) == ENTRIES and counts.entries == 9
    parts = [read(Part(k, n)) for k in range(n)]
    assert sorted(e[:2] for p, _ in parts for e in p) == sorted(e[:2] for e in whole)
    assert sum(c.entries for _, c in parts) == 9 and sum(1 for p, _ in parts if p) >= 2
