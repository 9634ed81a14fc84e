"""Decompression bombs and huge files: what an evidence item may copy out is capped while copying (per file, per
evidence item, and by how far a zip member or an archive's content expands), each cut a counted error naming the
file and the bytes kept, and temporary space holds one copy at a time.  The caps are module constants: these
tests lower them (one worker, in this process) to keep the files small."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

import collectors.target as target
from forensics import Case

LINE = "Jan 10 10:00:{s:02d} web01 sshd[1]: Accepted password for root from 203.0.113.7 port 22 ssh2\n"
ZIP_TIME = (2023, 11, 14, 22, 13, 20)


def _errors(case: Case) -> list[tuple[str, str, str]]:
    p = case.problems().to_pandas()
    return sorted(zip(p.kind, p.record_ref, p.message))


@pytest.fixture
def tmpdir_watch(tmp_path, monkeypatch):
    """Temporary copies go under a folder of the test; its peak size is sampled as each copy is written."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    peak = [0]
    real = target._copy_out

    def watched(*args, **kwargs):
        out = real(*args, **kwargs)
        peak[0] = max(peak[0], sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()))
        return out

    monkeypatch.setattr(target, "_copy_out", watched)
    return tmp, peak


def test_a_zip_bomb_is_cut_while_it_is_copied_out(tmp_path, monkeypatch, tmpdir_watch):
    """The trial: a 3 MB zip made 3 GB of temporary files.  Here 48 MiB of zeros pack into ~48 KiB: copying stops
    at 200 times that packed size (past the first 1 MiB allowed to any member), the bytes before are read."""
    monkeypatch.setattr(target, "EXPANSION_FREE", 1 << 20, raising=False)
    tmp, peak = tmpdir_watch
    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(zipfile.ZipInfo("var/log/auth.log", ZIP_TIME), LINE.format(s=1), zipfile.ZIP_DEFLATED)
        info = zipfile.ZipInfo("var/log/syslog", ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as out:
            for _ in range(48):
                out.write(bytes(1 << 20))
    packed = zipfile.ZipFile(arc).getinfo("var/log/syslog").compress_size
    assert os.path.getsize(arc) < 100_000
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    cut = 200 * packed
    assert _errors(case) == [("extract_capped", "/var/log/syslog",
                              f"/var/log/syslog: copy stopped after {cut} bytes at 200 times its packed size of {packed} "
                              f"bytes (a decompression bomb); those {cut} bytes were read, the rest of the file was not")]
    assert rep.errors == 1
    assert cut < 11 << 20 and peak[0] <= cut + 4096  # temporary space: at most the one copy, never 48 MiB
    assert not any(tmp.iterdir())  # each copy deleted once read
    t = case.timeline().to_pandas()
    assert list(t[t.source == "SYSLOG"].evidence_path) == ["/var/log/auth.log"]


def test_a_tar_gz_bomb_is_cut_by_how_far_the_archive_expands(tmp_path, monkeypatch, tmpdir_watch):
    monkeypatch.setattr(target, "EXPANSION_FREE", 1 << 20, raising=False)
    tmp, peak = tmpdir_watch
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, size in (("var/log/auth.log", None), ("var/log/kern.log", 32 << 20), ("var/log/messages", 4 << 20)):
            data = LINE.format(s=2).encode() if size is None else bytes(size)
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1700000000
            tf.addfile(ti, io.BytesIO(data))
    arc = tmp_path / "bomb.tar.gz"
    arc.write_bytes(gzip.compress(raw.getvalue(), compresslevel=9, mtime=0))
    size = os.path.getsize(arc)
    case = Case(tmp_path / "case", create=True)
    case.collect([arc], workers=1)
    auth = len(LINE.format(s=2))
    left = 200 * size - auth
    assert _errors(case) == [  # read in name order: auth.log, kern.log (cut), messages (nothing left)
        ("extract_capped", "/var/log/kern.log",
         f"/var/log/kern.log: copy stopped after {left} bytes at 200 times the size of the archive bomb.tar.gz ({size} "
         f"bytes) copied out of it in all (a decompression bomb); those {left} bytes were read, the rest of the file was not"),
        ("extract_capped", "/var/log/messages", f"/var/log/messages: not copied out: 200 times the size of the archive "
                                                f"bomb.tar.gz ({size} bytes) copied out of it in all (a decompression bomb) reached")]
    assert peak[0] <= left + 4096 and not any(tmp.iterdir())


def test_a_file_over_the_per_file_cap_is_cut_and_its_first_bytes_read(tmp_path, monkeypatch):
    monkeypatch.setattr(target, "EXTRACT_FILE_MAX", 10 * len(LINE.format(s=0)) + 5, raising=False)
    text = "".join(LINE.format(s=s) for s in range(30))
    arc = tmp_path / "logs.tar"
    with tarfile.open(arc, "w") as tf:
        ti = tarfile.TarInfo("var/log/auth.log")
        ti.size, ti.mtime = len(text), 1700000000
        tf.addfile(ti, io.BytesIO(text.encode()))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    cap = target.EXTRACT_FILE_MAX
    kinds = [(k, r) for k, r, _ in _errors(case)]
    assert ("extract_capped", "/var/log/auth.log") in kinds
    msg = next(m for k, _, m in _errors(case) if k == "extract_capped")
    assert msg == (f"/var/log/auth.log: copy stopped after {cap} bytes at the cap of {cap} bytes per file; those {cap} "
                   "bytes were read, the rest of the file was not")
    t = case.timeline().to_pandas()
    assert sorted(t[t.source == "SYSLOG"].timestamp.dt.second) == list(range(10))  # the 10 whole lines kept
    assert rep.errors >= 1


def test_the_evidence_items_budget_stops_further_copies(tmp_path, monkeypatch):
    """Three 40 KiB logs that pack into a few KiB; the item may copy out 100 KiB in all (at least twice its size)."""
    monkeypatch.setattr(target, "EXTRACT_ITEM_MAX", 100 << 10, raising=False)
    raw = io.BytesIO()
    names = ("var/log/auth.log", "var/log/auth.log.1", "var/log/auth.log.2")
    text = "".join(LINE.format(s=s % 60) for s in range((40 << 10) // len(LINE.format(s=0))))
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name in names:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(text), 1700000000
            tf.addfile(ti, io.BytesIO(text.encode()))
    arc = tmp_path / "logs.tgz"
    arc.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    assert 2 * os.path.getsize(arc) < 100 << 10
    case = Case(tmp_path / "case", create=True)
    case.collect([arc], workers=1)
    left = (100 << 10) - len(text) * 2
    assert [(k, r) for k, r, _ in _errors(case)] == [("extract_capped", "/var/log/auth.log.2")]
    assert _errors(case)[0][2] == (f"/var/log/auth.log.2: copy stopped after {left} bytes at the evidence item's cap of "
                                   f"{100 << 10} bytes copied out in all; those {left} bytes were read, the rest of the "
                                   "file was not")
