"""File-system timelines through the C libraries (collectors/filesystem.py): every name The Sleuth Kit's
``fls -r -m /`` lists, deleted and orphan ones included, with the same inode and times; the same rows as the
dissect walk gave for allocated files; a volume read in parts gives exactly the rows of one read; a loose
``$MFT`` gives the volume's timeline; raw file-system images are recognised by content."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from collectors.base import ArtifactReport
from collectors.filesystem import (FS_READERS, Context, Counts, MftCollector, Part, fs_tables, sniff, sniff_file,
                                   volume_stream)
from collectors.target import is_container
from forensics import Case

EXT4_FAKE_TIME = 1669166000  # mke2fs's E2FSPROGS_FAKE_TIME: the inodes' creation time


def _body(fls: str, img: Path, fstype: str) -> set[tuple]:
    """``fls -r -m / -p`` of ``img`` as (path, inode, label, (mtime, atime, ctime, crtime), deleted) with a time
    (names without one -- wiped inode numbers, TSK's virtual $OrphanFiles -- left out); an NTFS stream line
    ("file:$SDS") gives its file's $SI times."""
    out = subprocess.run([fls, "-r", "-m", "/", "-p", str(img)], capture_output=True, check=True).stdout
    body = set()
    for line in out.decode("utf-8", "replace").splitlines():
        f = line.split("|")
        name = f[1]
        deleted = name.endswith((" (deleted)", " (deleted-realloc)"))
        name = name.replace(" (deleted-realloc)", "").replace(" (deleted)", "").split(" -> ")[0]
        label = "" if fstype != "ntfs" else "$FN" if name.endswith(" ($FILE_NAME)") else "$SI"
        name = name.removesuffix(" ($FILE_NAME)")
        if fstype == "ntfs" and ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        times = tuple(int(f[i]) for i in (8, 7, 9, 10))
        if any(times):
            body.add((name, int(f[2].split("-")[0]), label, times, deleted))
    return body


def _entries(img: Path, fstype: str, part: Part = Part()) -> tuple[list[tuple], Counts]:
    counts = Counts()
    with open(img, "rb") as fh:
        return list(FS_READERS[fstype](volume_stream(fh), part, counts)), counts


def _as_body(entries: list[tuple]) -> set[tuple]:
    """Our entries as fls writes them: whole seconds, non-UTF-8 bytes as TSK's replacement."""
    out = set()
    for path, ino, _, _, _, _, label, m, a, c, b, extra in entries:
        if extra and "name_bytes" in extra:
            path = path.replace("\\xff", "\ufffd")
        out.add((path, ino, label, tuple(x // 10**9 if x else 0 for x in (m, a, c, b)),
                 bool(extra and extra.get("deleted"))))
    return out


def _table(img: Path, fstype: str, part: Part = Part()) -> pa.Table:
    counts = Counts()
    with open(img, "rb") as fh:
        return pa.concat_tables(list(fs_tables(FS_READERS[fstype](volume_stream(fh), part, counts),
                                               Context("e1", "img", "h", "p/1", fstype), ArtifactReport(), 7)))


@pytest.fixture(scope="module")
def ext4_deleted(tmp_path_factory, mke2fs) -> Path:
    """An ext4 image with two files deleted by debugfs, a name that is not UTF-8, links in and out of it."""
    base = tmp_path_factory.mktemp("ext4del")
    root = base / "root"
    (root / "srv/records").mkdir(parents=True)
    (root / "etc").mkdir()
    for i in range(6):
        (root / f"srv/records/patient{i}.pdf").write_bytes(b"%PDF" + bytes(i))
    (root / "etc/hostname").write_text("records01\n")
    (root / "var/log").mkdir(parents=True)
    (root / "var/log/syslog").write_text("".join(f"Nov 23 01:1{i}:00 records01 sshd[42]: Accepted password for u{i}\n"
                                                 for i in range(3)))
    os.symlink("/etc/shadow", root / "srv/out")
    os.symlink("records/patient0.pdf", root / "srv/in")
    (root / os.fsdecode(b"srv/records/bad\xffname")).write_text("x")
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.utime(p, (1_700_000_000, 1_700_000_001))
    img = base / "records.img"
    subprocess.run([mke2fs, "-q", "-F", "-t", "ext4", "-d", str(root), str(img), "8M"], check=True,
                   env=dict(os.environ, E2FSPROGS_FAKE_TIME=str(EXT4_FAKE_TIME)), capture_output=True)
    debugfs = os.path.join(os.path.dirname(mke2fs), "debugfs")
    # mke2fs -d copies whole seconds: nanoseconds set in the inode's extra field ((ns << 2) | epoch bits)
    subprocess.run([debugfs, "-w", "-R", f"sif /srv/records/patient2.pdf mtime_extra {987654321 << 2}", str(img)],
                   check=True, capture_output=True)
    for name in ("patient2.pdf", "patient3.pdf"):
        subprocess.run([debugfs, "-w", "-R", f"rm /srv/records/{name}", str(img)], check=True, capture_output=True)
    os.chmod(img, 0o444)
    return img


def _fill_ntfs(mnt: Path) -> None:
    (mnt / "Users/nurse/Documents").mkdir(parents=True)
    (mnt / "gone").mkdir()
    for i in range(5):
        (mnt / f"Users/nurse/Documents/scan{i}.pdf").write_bytes(b"%PDF" * (i + 1))
    (mnt / "gone/inner.txt").write_text("x")
    os.rename(mnt / "Users/nurse/Documents/scan4.pdf", mnt / "Users/nurse/Documents/scan4.pdf.locked")
    os.link(mnt / "Users/nurse/Documents/scan0.pdf", mnt / "Users/nurse/Documents/hardlink.pdf")
    os.unlink(mnt / "Users/nurse/Documents/scan1.pdf")
    os.unlink(mnt / "gone/inner.txt")
    os.rmdir(mnt / "gone")
    (mnt / "Users/nurse/café.txt").write_text("y")


@pytest.fixture(scope="module")
def ntfs_deleted(tmp_path_factory, ntfs_image) -> Path:
    """An NTFS image (mkntfs, filled through ntfs-3g) with a deleted file, a deleted folder, a rename, a hard link."""
    return ntfs_image(tmp_path_factory.mktemp("ntfsdel") / "ward.img", _fill_ntfs)


def test_ext4_names_inodes_and_times_equal_fls_deleted_included(ext4_deleted, fls):
    entries, counts = _entries(ext4_deleted, "ext")
    body = _body(fls, ext4_deleted, "ext")
    assert _as_body(entries) == body
    deleted = sorted((p, ino) for p, ino, *_, extra in entries if extra and extra.get("deleted"))
    assert [p for p, _ in deleted] == ["/srv/records/patient2.pdf", "/srv/records/patient3.pdf"]
    assert (counts.deleted, counts.orphans) == (2, 0)
    # nanoseconds kept (fls writes seconds): mtime with the ns debugfs set, atime as utime set it, crtime mke2fs's
    e = next(x for x in entries if x[0] == "/srv/records/patient2.pdf")
    assert (e[7], e[8], e[10]) == (1_700_000_001_987_654_321, 1_700_000_000 * 10**9, EXT4_FAKE_TIME * 10**9)


def test_ntfs_names_records_and_times_equal_fls_deleted_included(ntfs_deleted, fls):
    entries, counts = _entries(ntfs_deleted, "ntfs")
    body = _body(fls, ntfs_deleted, "ntfs")
    # mkntfs leaves $MFT's $SI times zero: no row here; fls shows TSK's conversion of FILETIME 0 (year 2076)
    assert [x[3] for x in body if x[0] == "/$MFT" and x[2] == "$SI"] == [(TSK_FILETIME_ZERO,) * 4]
    _same_as_fls(entries, body)
    deleted = sorted({(p, ino) for p, ino, *_, extra in entries if extra and extra.get("deleted")})
    # the deleted folder's file under $OrphanFiles by its own name; the unnamed reserved records 16-23 as TSK names them
    assert [p for p, _ in deleted] == [f"/$OrphanFiles/OrphanFile-{i}" for i in range(16, 24)] + [
        "/$OrphanFiles/inner.txt", "/Users/nurse/Documents/scan1.pdf"]
    names = {p for p, *_ in entries}
    assert {"/Users/nurse/Documents/hardlink.pdf", "/Users/nurse/Documents/scan0.pdf",
            "/Users/nurse/Documents/scan4.pdf.locked", "/Users/nurse/café.txt"} <= names


TSK_FILETIME_ZERO = 3373865674  # what fls shows for an NTFS time stored as 0 (we give no row for it)


def _same_as_fls(entries: list[tuple], body: set[tuple]) -> None:
    zero = {x for x in body if x[3] == (TSK_FILETIME_ZERO,) * 4}
    assert {x[0] for x in zero} <= {"/$MFT"}
    ours = _as_body(entries)
    assert ours - {x for x in ours if x[3] == (0, 0, 0, 0)} == body - zero


@pytest.mark.parametrize("image, fstype", [("plaso/test_data/vsstest.qcow2", "ntfs"), ("plaso/test_data/image.qcow2", "ext"),
                                           ("dfvfs/test_data/windows_volume.qcow2", "ntfs"),
                                           ("dfvfs/test_data/ext2.qcow2", "ext")])
def test_corpus_images_equal_fls(evidence, fls, qemu_img, tmp_path, image, fstype):
    raw = tmp_path / "raw.img"
    subprocess.run([qemu_img, "convert", "-O", "raw", str(evidence / image), str(raw)], check=True)
    entries, _ = _entries(raw, fstype)
    _same_as_fls(entries, _body(fls, raw, fstype))


@pytest.mark.parametrize("image, fstype", [("Velocidex-go-ewf/test/test.ntfs.dd.E01", "ntfs"),
                                           ("dfvfs/test_data/ext2.E01", "ext")])
def test_corpus_e01_images_equal_fls(evidence, fls, tmp_path, image, fstype):
    """fls reads the E01 itself; we read its media (dissect's EWF reader) as a raw volume."""
    from dissect.evidence.ewf import EWF

    e01 = evidence / image
    with open(e01, "rb") as fh:
        ewf = EWF([fh])
        raw = tmp_path / "media.raw"
        raw.write_bytes(ewf.open().read(ewf.size))
    entries, _ = _entries(raw, fstype)
    _same_as_fls(entries, _body(fls, e01, fstype))
    if fstype == "ntfs":  # Windows formatted it: 100 ns kept
        si = next(x for x in entries if x[0] == "/$UpCase" and x[6] == "$SI")
        assert si[7] % 100 == 0 and si[7] % 10**9


@pytest.mark.parametrize("fstype", ["ext", "ntfs"])
def test_two_parts_give_exactly_the_rows_of_one_read(ext4_deleted, ntfs_deleted, fstype):
    img = ext4_deleted if fstype == "ext" else ntfs_deleted
    whole = _table(img, fstype)
    parts = [_table(img, fstype, Part(k, 3)) for k in range(3)]
    assert all(p.num_rows for p in parts)
    key = lambda t: sorted(t.column("event_hash").to_pylist())  # noqa: E731
    assert key(pa.concat_tables(parts)) == key(whole)


@pytest.fixture(scope="module")
def ext4_nested(tmp_path_factory, mke2fs, fls) -> Path:
    """An ext4 image with directories within directories, a deleted file and a deleted folder with its files
    (``debugfs kill_file`` + ``unlink``: fls lists ``gone/f1`` ... as deleted-realloc)."""
    base = tmp_path_factory.mktemp("ext4nest")
    folders = ("a", "a/b", "a/b/c", "a/x", "gone", "gone/sub", "z")
    for d in folders:
        (base / "root" / d).mkdir(parents=True)
        for i in range(3):
            (base / "root" / d / f"f{i}").write_text(f"{d} {i}\n")
    img = base / "nested.img"
    subprocess.run([mke2fs, "-q", "-F", "-t", "ext4", "-d", str(base / "root"), str(img), "8M"], check=True,
                   env=dict(os.environ, E2FSPROGS_FAKE_TIME=str(EXT4_FAKE_TIME)), capture_output=True)
    debugfs = os.path.join(os.path.dirname(mke2fs), "debugfs")
    for cmd in ("kill_file /gone", "unlink /gone", "kill_file /a/x/f1", "unlink /a/x/f1"):
        subprocess.run([debugfs, "-w", "-R", cmd, str(img)], check=True, capture_output=True)
    os.chmod(img, 0o444)
    return img


@pytest.mark.parametrize("n", [2, 3, 5])
def test_ext_parts_split_the_walk_and_give_exactly_the_rows_of_one_read(ext4_nested, fls, n):
    """Each part lists the leaf directories it owns (and those with sub-directories): the parts' names are
    those of one read, each once, deleted ones included; their counts add up to the whole read's."""
    whole, counts = _entries(ext4_nested, "ext")
    assert _as_body(whole) == _body(fls, ext4_nested, "ext")
    assert {p for p, *_, extra in whole if extra and extra.get("deleted")} >= {"/a/x/f1", "/gone", "/gone/f0"}
    parts = [_entries(ext4_nested, "ext", Part(k, n)) for k in range(n)]
    assert sorted(e[:2] for p, _ in parts for e in p) == sorted(e[:2] for e in whole)
    for k in ("entries", "deleted", "orphans", "no_metadata"):
        assert sum(getattr(c, k) for _, c in parts) == getattr(counts, k), k
    assert counts.entries == len(whole) and sum(1 for p, _ in parts if p) >= 2


def test_a_collected_image_has_deleted_rows_with_exact_times(ext4_deleted, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([ext4_deleted], workers=1)
    assert rep.errors == 0
    t = case.timeline().to_pandas()
    rows = t[t.path == "/srv/records/patient2.pdf"].sort_values("timestamp_desc")
    assert list(rows.timestamp_desc) == ["Content Modification Time", "Creation Time", "Last Access Time",
                                         "Metadata Modification Time"]
    attrs = json.loads(rows["attrs"].iloc[0])
    assert attrs["deleted"] is True and attrs["macb"] == "M..." and attrs["inode"] == 21
    assert rows.timestamp.iloc[0].value == 1_700_000_001_987_654_321
    assert rows.message.iloc[0] == "M... /srv/records/patient2.pdf (-rw-r--r--, 6 bytes) (deleted)"
    # a name that is not UTF-8: shown with \xff, its bytes kept; the link out of the evidence is a row, not followed
    bad = t[t.path == "/srv/records/bad\\xffname"]
    assert len(bad) == 4 and json.loads(bad["attrs"].iloc[0])["name_bytes"] == b"/srv/records/bad\xffname".hex()
    out = t[t.path == "/srv/out"]
    assert {(json.loads(a)["mode"], json.loads(a)["link_target"]) for a in out["attrs"]} == {("lrwxrwxrwx", "/etc/shadow")}
    assert len(out) == 4 and out.message.iloc[0].endswith("/srv/out -> /etc/shadow (lrwxrwxrwx, 11 bytes)")
    assert not t[t.path.str.startswith("/etc/shadow")].shape[0]
    arts = {a["evidence_path"]: a for a in rep.artifacts}
    assert arts["records.img"]["stats"]["fs_readers"] == {"/": "The Sleuth Kit"}
    assert arts["records.img"]["stats"]["fs_entries"]["deleted"] == 2


def test_allocated_rows_equal_the_dissect_walk(evidence, tmp_path):
    """For allocated files the C readers give exactly the rows the dissect walk gave (every column)."""
    from collectors.base import Artifact
    from collectors.target import TargetCollector

    img = evidence / "plaso/test_data/vsstest.qcow2"

    def rows(force_dissect: bool) -> set:
        c = TargetCollector()
        if force_dissect:
            c._c_filesystem = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("off"))
        art = Artifact("e", "vsstest.qcow2", str(img), "0" * 64, 0)
        t = pa.concat_tables(list(c.collect(art)) + list(c.finish()))
        t = t.filter(pa.compute.equal(t.column("source"), "FILE"))
        return {tuple(map(repr, r.values())) for r in t.to_pylist()}

    new, old = rows(False), rows(True)
    assert len(old) == 232 and new == old


def test_a_loose_mft_gives_the_volumes_timeline(ntfs_deleted, fls, tmp_path):
    icat = os.path.join(os.path.dirname(fls), "icat")
    mft = tmp_path / "$MFT"
    mft.write_bytes(subprocess.run([icat, str(ntfs_deleted), "0"], capture_output=True, check=True).stdout)
    assert MftCollector.matches(str(mft)) and not MftCollector.matches(str(ntfs_deleted))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([mft], workers=1)
    assert [a["collector"] for a in rep.artifacts] == ["mft"] and rep.errors == 0
    loose = case.timeline().to_pandas()
    vol = _table(ntfs_deleted, "ntfs").to_pandas()
    key = lambda t: sorted(zip(t.path, t.artifact, t.timestamp_desc, t.timestamp.astype("int64"), t.attrs))  # noqa: E731
    assert key(loose) == key(vol)
    assert (loose.path == "/Users/nurse/Documents/scan1.pdf").sum() == 8


def test_raw_file_system_images_are_recognised_by_content(ext4_deleted, ntfs_deleted, tmp_path):
    for name, img, fstype in (("disk.ext4", ext4_deleted, "ext"), ("ntfs-volume", ntfs_deleted, "ntfs")):
        link = tmp_path / name
        link.symlink_to(img)
        assert sniff_file(str(link)) == fstype and is_container(str(link))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([tmp_path / "disk.ext4"], workers=1)
    assert rep.rows_written > 0 and rep.errors == 0
    fat = bytearray(4096)
    fat[54:62], fat[510:512] = b"FAT16   ", b"\x55\xaa"
    exfat = bytearray(4096)
    exfat[3:11] = b"EXFAT   "
    assert (sniff(bytes(fat)), sniff(bytes(exfat)), sniff(b"XFSB" + bytes(4092)), sniff(bytes(4096))) == (
        "fat", "exfat", "xfs", None)


def test_an_image_split_across_two_workers_gives_the_rows_of_one_and_resumes(ext4_deleted, tmp_path, monkeypatch):
    import forensics.case as case_mod

    one = Case(tmp_path / "one", create=True)
    one.collect([ext4_deleted], workers=1)
    whole = one.timeline().to_pandas()
    assert (whole.source == "SYSLOG").sum() == 3
    monkeypatch.setattr(case_mod, "SPLIT_BYTES", 0)
    two = Case(tmp_path / "two", create=True)
    rep = two.collect([ext4_deleted], workers=2)
    assert sorted(a.get("part") for a in rep.artifacts if a["collector"] == "target") == [[0, 2], [1, 2]]
    assert sorted(two.timeline().to_pandas().event_hash) == sorted(whole.event_hash)
    assert rep.errors == 0 and rep.duplicates_dropped == 0
    # the image is hashed after once, when both shares are read; both commits record that hash
    assert [f["path"] for e in rep.evidence for f in e["files"]] == ["records.img"]
    commits = [e for e in two.store.custody.entries() if e.get("action") == "commit"]
    assert len(commits) == 2 and {e["evidence"][0]["files"][0]["sha256_after"] for e in commits} == {
        rep.evidence[0]["files"][0]["sha256"]}
    # a run that committed only share 0 of 2: the next run reads share 1 alone, and nothing more
    bins = case_mod._bins
    monkeypatch.setattr(case_mod, "_bins", lambda tasks, workers, unit: bins(tasks, workers, unit)[:1])
    cut = Case(tmp_path / "cut", create=True)
    cut.collect([ext4_deleted], workers=2)
    assert 0 < cut.timeline().num_rows < len(whole)
    monkeypatch.setattr(case_mod, "_bins", bins)
    rep = cut.collect([ext4_deleted], workers=2)
    assert [a.get("part") for a in rep.artifacts if a["collector"] == "target"] == [[1, 2]]
    assert sorted(cut.timeline().to_pandas().event_hash) == sorted(whole.event_hash)
    assert cut.collect([ext4_deleted], workers=2).skipped  # all shares committed: nothing left to read
