"""Hostile 7z archives: member names that climb out of the archive, members whose data is corrupt (solid and not).
Nothing is written outside the private temporary folder; what is not read is a counted error naming the member."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest

import forensics
from collectors import sevenzip

LINE = b"Nov 23 07:00:%02d web01 sshd[4242]: Accepted password for root from 10.0.0.%d port 22 ssh2\n"


def _seven_zip() -> str:
    import shutil

    exe = shutil.which("7z")
    if exe is None:
        pytest.skip("7z (Debian p7zip-full) is not installed")
    return exe


def _climbing(path: Path) -> Path:
    """A 7z with members '../evil.log' and 'ok/auth.log' (py7zr will not write the first: the name is patched into
    the plain header and the header CRCs recomputed)."""
    import py7zr

    with py7zr.SevenZipFile(path, "w", filters=[{"id": py7zr.FILTER_COPY}]) as z:
        z.encoded_header_mode = False
        z.writestr(LINE % (0, 1), "xx/evil.log")
        z.writestr(LINE % (1, 2), "ok/auth.log")
    d = bytearray(path.read_bytes())
    i = d.find("xx/evil".encode("utf-16-le"))
    d[i:i + 4] = "..".encode("utf-16-le")
    off, size = struct.unpack_from("<QQ", d, 12)
    struct.pack_into("<I", d, 28, zlib.crc32(d[32 + off:32 + off + size]))
    struct.pack_into("<I", d, 8, zlib.crc32(d[12:32]))
    path.write_bytes(bytes(d))
    return path


def test_climbing_member_is_refused_and_counted(tmp_path):
    arch = _climbing(tmp_path / "triage.7z")
    work = tmp_path / "work"
    work.mkdir()
    problems: list = []
    got = [(m.name, m.size) for m in sevenzip.members(str(arch), str(work), problems)]
    assert got == [("ok/auth.log", len(LINE % (1, 2)))]
    assert [(p.name, p.kind) for p in problems] == [("../evil.log", "unsafe_name")]
    assert not (tmp_path / "evil.log").exists() and list(work.iterdir()) == []  # every copy removed after use

    case = forensics.Case(tmp_path / "case", create=True)
    case.collect([arch], workers=1)
    tl = forensics.open(case.path)
    assert list(tl.sql("SELECT evidence_path FROM timeline WHERE source = 'SYSLOG'")["evidence_path"]) == ["/ok/auth.log"]
    problems = case.problems().to_pylist()
    assert [(p["severity"], p["record_ref"], p["kind"]) for p in problems] == [("error", "/../evil.log", "unsafe_name")]


@pytest.mark.parametrize("solid", [False, True])
def test_corrupt_member(tmp_path, solid):
    exe = _seven_zip()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(bytes(range(256)) * 80)
    (src / "auth.log").write_bytes(b"".join(LINE % (i, i) for i in range(3)))
    (src / "c.log").write_bytes(LINE % (9, 9))
    arch = tmp_path / "t.7z"
    subprocess.run([exe, "a", f"-ms={'on' if solid else 'off'}", "-mx1", str(arch), "a.bin", "auth.log", "c.log"],
                   cwd=src, check=True, capture_output=True)
    d = bytearray(arch.read_bytes())
    d[32 + 40] ^= 0xFF  # inside a.bin's packed data (the first stream)
    arch.write_bytes(bytes(d))
    problems: list = []
    names = [m.name for m in sevenzip.members(str(arch), str(tmp_path), problems)]
    if solid:  # one solid block: nothing after the corrupt member can be reached, each member reported
        assert names == [] and [(p.name, p.kind) for p in problems] == [
            ("a.bin", "undecompressable"), ("auth.log", "undecompressable"), ("c.log", "undecompressable")]
    else:  # one block per member: the others are read
        assert names == ["auth.log", "c.log"] and [(p.name, p.kind) for p in problems] == [("a.bin", "undecompressable")]
