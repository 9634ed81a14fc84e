"""Hostile file systems read by the C libraries (collectors/filesystem.py): a directory hard-linked into
itself (a loop), an image cut short, a loose $MFT with damaged records; each is read as far as it goes, with
what is lost counted, and the run goes on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from collectors.filesystem import FS_READERS, Counts, MftCollector, Part, volume_stream
from forensics import Case


@pytest.fixture
def small_ext4(tmp_path, mke2fs) -> Path:
    root = tmp_path / "root"
    (root / "a/b").mkdir(parents=True)
    (root / "c").mkdir()
    for i in range(3):
        (root / f"a/f{i}.txt").write_text(str(i))
        (root / f"c/g{i}.txt").write_text(str(i))
    img = tmp_path / "small.img"
    subprocess.run([mke2fs, "-q", "-F", "-t", "ext4", "-d", str(root), str(img), "8M"], check=True, capture_output=True)
    return img


def test_a_directory_linked_into_itself_is_listed_once_not_followed(small_ext4, mke2fs, fls):
    debugfs = os.path.join(os.path.dirname(mke2fs), "debugfs")
    subprocess.run([debugfs, "-w", "-R", "ln /a /a/b/loop", str(small_ext4)], check=True, capture_output=True)
    counts = Counts()
    with open(small_ext4, "rb") as fh:
        paths = [e[0] for e in FS_READERS["ext"](volume_stream(fh), Part(), counts)]
    assert "/a/b/loop" in paths and not any(p.startswith("/a/b/loop/") for p in paths)
    listed = subprocess.run([fls, "-r", "-p", str(small_ext4)], capture_output=True, check=True).stdout.decode()
    assert sorted(paths) == sorted("/" + line.split("\t", 1)[1] for line in listed.splitlines()
                                   if not line.endswith("$OrphanFiles"))


def test_an_image_cut_short_loses_the_unreadable_folders_counted(small_ext4, tmp_path):
    cut = tmp_path / "cut.ext4"
    cut.write_bytes(small_ext4.read_bytes()[:200_000])
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([cut], workers=1)
    lost = case.problems().to_pandas()
    assert rep.errors == len(lost) == 3 and set(lost.kind) == {"unreadable"}
    assert sorted(r.split(" ")[0] for r in lost.record_ref) == ["/$OrphanFiles", "/a", "/c"]
    assert rep.rows_written > 0  # what lies before the cut is there


def test_a_loose_mft_with_damaged_records_reads_the_others(ntfs_image, fls, tmp_path):
    def fill(mnt: Path) -> None:
        for i in range(20):
            (mnt / f"file{i}.txt").write_text(str(i))

    img = ntfs_image(tmp_path / "v.img", fill)
    icat = os.path.join(os.path.dirname(fls), "icat")
    mft = bytearray(subprocess.run([icat, str(img), "0"], capture_output=True, check=True).stdout)
    mft[66 * 1024:66 * 1024 + 4] = b"XXXX"  # signature gone (libfsntfs calls the record empty)
    mft[70 * 1024 + 20:70 * 1024 + 22] = b"\xf0\x03"  # first attribute past the record's end
    bad = tmp_path / "$MFT"
    bad.write_bytes(bytes(mft))
    assert MftCollector.matches(str(bad))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([bad], workers=1)
    names = set(case.timeline().to_pandas().path)
    lost = case.problems().to_pandas()
    assert rep.errors == len(lost) == 2 and sorted(lost.record_ref) == ["MFT record 66", "MFT record 70"]
    assert len({f"/file{i}.txt" for i in range(20)} - names) == 2


def _read(img: Path, part: Part) -> tuple[list[tuple], Counts]:
    counts = Counts()
    with open(img, "rb") as fh:
        return sorted(e[:2] for e in FS_READERS["ext"](volume_stream(fh), part, counts)), counts


@pytest.mark.parametrize("n", [2, 3])
def test_crafted_link_counts_and_loops_move_work_between_parts_never_rows(small_ext4, mke2fs, tmp_path, n):
    """A split read trusts a folder's link count only to decide which part lists it: a folder with a sub-folder
    that claims none (2), a leaf that claims many, a folder linked into itself -- the parts still give the names
    of one read, each once; an image cut short loses the same folders, each counted by one part only."""
    debugfs = os.path.join(os.path.dirname(mke2fs), "debugfs")
    for cmd in ("ln /a /a/b/loop", "sif /a links_count 2", "sif /c links_count 9"):
        subprocess.run([debugfs, "-w", "-R", cmd, str(small_ext4)], check=True, capture_output=True)
    cut = tmp_path / "cut.ext4"
    cut.write_bytes(small_ext4.read_bytes()[:200_000])
    wholes = {}
    for img in (small_ext4, cut):
        whole, counts = wholes[img] = _read(img, Part())
        parts = [_read(img, Part(k, n)) for k in range(n)]
        assert sorted(e for p, _ in parts for e in p) == whole
        assert sum(c.entries for _, c in parts) == counts.entries == len(whole)
        assert sorted(e.record_ref for _, c in parts for e in c.errors) == sorted(e.record_ref for e in counts.errors)
    names = dict(wholes[small_ext4][0])
    assert names["/a/b/loop"] == names["/a"] and not any(p.startswith("/a/b/loop/") for p in names)
    cut_names, cut_counts = wholes[cut]
    assert cut_names and len(cut_counts.errors) == 3  # /a, /c and $OrphanFiles unreadable past the cut
