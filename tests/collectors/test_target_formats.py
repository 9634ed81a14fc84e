"""Virtual-disk formats the corpus lacks (VHDX, VDI, fixed VHD, split and stream-optimised VMDK) and
differencing disks (QCOW2 overlay, VMDK snapshot, Hyper-V checkpoint .avhdx), made by the real ``qemu-img``
from one ext4 server image (the checkpoint's parent locator then written by hand: qemu-img cannot make
one): each gives the same timeline as the raw image, and every file the image is read through is
hashed in the custody log."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collectors.target import image_segments
from timeline.errors import EvidenceNotFound
from forensics import Case

UTC = dt.timezone.utc
AUTH = "Nov 23 07:00:01 web01 sshd[100]: Accepted password for root from 203.0.113.7 port 50001 ssh2\n"


@pytest.fixture(scope="module")
def raw(tmp_path_factory, ext4_image) -> Path:
    d = tmp_path_factory.mktemp("formats")
    root = d / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("web01\n")
    (root / "etc" / "timezone").write_text("Asia/Kolkata\n")
    (root / "var" / "log" / "auth.log").write_text(AUTH)
    os.utime(root / "var" / "log" / "auth.log", ns=(1669200000_000_000_000,) * 2)  # 2022-11-23 10:40 UTC
    return ext4_image(root, d / "web01.raw")


def _convert(qemu_img: str, raw: Path, dest: Path, fmt: str, *opts: str) -> Path:
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", fmt, *opts, str(raw), str(dest)], check=True, capture_output=True)
    return dest


def _timeline(case_dir: Path, image: Path) -> tuple[list[tuple], dict]:
    case = Case(case_dir, create=True)
    rep = case.collect([image], workers=1)
    assert rep.errors == 0 and rep.warnings == 0
    t = case.timeline().to_pandas()
    rows = sorted(zip(t.path.fillna(t.evidence_path), t.timestamp_desc, t.timestamp.astype("int64"), t.host, t.tz_source))
    return rows, rep.evidence[0]


FORMATS = [  # (file name, qemu-img format, options, files the image is read through)
    ("web01.vhdx", "vhdx", (), 1),
    ("web01.vdi", "vdi", (), 1),
    ("web01.vhd", "vpc", ("-o", "subformat=fixed"), 1),
    ("web01-dyn.vhd", "vpc", (), 1),
    ("web01.vmdk", "vmdk", (), 1),
    ("web01-stream.vmdk", "vmdk", ("-o", "subformat=streamOptimized"), 1),
    ("web01-split.vmdk", "vmdk", ("-o", "subformat=twoGbMaxExtentSparse"), 2),  # descriptor + extent
    ("web01.qcow2", "qcow2", (), 1),
]


@pytest.mark.parametrize("name,fmt,opts,n_files", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_gives_the_raw_images_timeline(raw, qemu_img, tmp_path, name, fmt, opts, n_files):
    expected, _ = _timeline(tmp_path / "case-raw", raw)
    img = _convert(qemu_img, raw, tmp_path / name, fmt, *opts)
    got, ev = _timeline(tmp_path / "case", img)
    assert got == expected
    assert len(ev["files"]) == n_files  # every file of the image hashed before and after
    auth = [r for r in got if r[0] == "/var/log/auth.log" and r[1] == "Event Logged"]
    assert auth == [("/var/log/auth.log", "Event Logged", 1669167001_000_000_000, "web01", "evidence_config")]  # 07:00:01 IST


def test_differencing_disks_are_read_through_their_parent_and_hash_it(raw, qemu_img, tmp_path):
    expected, _ = _timeline(tmp_path / "case-raw", raw)
    base_q = _convert(qemu_img, raw, tmp_path / "base.qcow2", "qcow2")
    base_v = _convert(qemu_img, raw, tmp_path / "base.vmdk", "vmdk")
    over_q, snap_v = tmp_path / "overlay.qcow2", tmp_path / "snap.vmdk"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(over_q)], check=True, cwd=tmp_path)
    subprocess.run([qemu_img, "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", str(snap_v)], check=True, cwd=tmp_path)
    assert image_segments(over_q) == [over_q, base_q]
    assert image_segments(snap_v) == [snap_v, base_v]
    for i, img in enumerate((over_q, snap_v)):
        got, ev = _timeline(tmp_path / f"case{i}", img)
        assert got == expected
        assert sorted(Path(f["real_path"]).name for f in ev["files"]) == sorted([img.name, f"base.{img.suffix[1:]}"])


def test_a_folder_of_images_reads_each_once_whatever_the_names_order(raw, qemu_img, tmp_path):
    d = tmp_path / "seized"
    d.mkdir()
    _convert(qemu_img, raw, d / "a-split.vmdk", "vmdk", "-o", "subformat=twoGbMaxExtentSparse")  # a-split-s001.vmdk sorts first
    _convert(qemu_img, raw, d / "base.qcow2", "qcow2")
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "overlay.qcow2"], check=True, cwd=d)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([d], workers=1)
    images = sorted(a["evidence_path"] for a in rep.artifacts if a["collector"] == "target")
    assert images == ["a-split.vmdk", "overlay.qcow2"]
    assert sorted(Path(f["real_path"]).name for f in rep.evidence[0]["files"]) == [
        "a-split-s001.vmdk", "a-split.vmdk", "base.qcow2", "overlay.qcow2"]
    assert case.verify().ok


def _checkpoint(qemu_img: str, parent: Path, child: Path, relative: str, absolute: str) -> Path:
    """A Hyper-V checkpoint (differencing VHDX) of ``parent``: a fresh VHDX from qemu-img of the parent's size,
    then, per [MS-VHDX]: HasParent set in the file parameters, a parent locator (2.6.2.6: parent_linkage,
    relative_path, absolute_win32_path) added to the metadata table as a required item, every BAT entry
    PAYLOAD_BLOCK_NOT_PRESENT (nothing written since the checkpoint: every sector comes from the parent)."""
    from dissect.hypervisor.disk.c_vhdx import (BAT_REGION_GUID, FILE_PARAMETERS_GUID, METADATA_REGION_GUID,
                                                PARENT_LOCATOR_GUID, VHDX_PARENT_LOCATOR_GUID)

    info = json.loads(subprocess.run([qemu_img, "info", "--output=json", str(parent)], check=True,
                                     capture_output=True, text=True).stdout)
    subprocess.run([qemu_img, "create", "-q", "-f", "vhdx", str(child), str(info["virtual-size"])], check=True)
    buf = bytearray(child.read_bytes())
    regions = {}
    for i in range(struct.unpack_from("<I", buf, 0x30008)[0]):  # region table at 192 KiB: 16-byte header, 32-byte entries
        e = 0x30010 + 32 * i
        regions[bytes(buf[e:e + 16])] = struct.unpack_from("<QI", buf, e + 16)
    bat, bat_len = regions[BAT_REGION_GUID.bytes_le]
    buf[bat:bat + bat_len] = bytes(bat_len)
    meta = regions[METADATA_REGION_GUID.bytes_le][0]
    count = struct.unpack_from("<H", buf, meta + 10)[0]
    items = [(bytes(buf[meta + 32 + 32 * i:meta + 48 + 32 * i]), *struct.unpack_from("<II", buf, meta + 48 + 32 * i))
             for i in range(count)]
    params = next(off for guid, off, _ in items if guid == FILE_PARAMETERS_GUID.bytes_le)
    struct.pack_into("<I", buf, meta + params + 4, struct.unpack_from("<I", buf, meta + params + 4)[0] | 2)  # HasParent
    pairs = [("parent_linkage", "{6f1cbd2f-4d6b-4c39-9c0e-2a7d6a3f0b11}"), ("relative_path", relative),
             ("absolute_win32_path", absolute)]
    table, strings = b"", b""
    first = 20 + 12 * len(pairs)
    for k, v in pairs:
        kb, vb = k.encode("utf-16-le"), v.encode("utf-16-le")
        table += struct.pack("<IIHH", first + len(strings), first + len(strings) + len(kb), len(kb), len(vb))
        strings += kb + vb
    locator = VHDX_PARENT_LOCATOR_GUID.bytes_le + struct.pack("<HH", 0, len(pairs)) + table + strings
    at = max(off + length for _, off, length in items)
    buf[meta + at:meta + at + len(locator)] = locator
    entry = meta + 32 + 32 * count
    buf[entry:entry + 32] = PARENT_LOCATOR_GUID.bytes_le + struct.pack("<IIII", at, len(locator), 4, 0)  # IsRequired
    struct.pack_into("<H", buf, meta + 10, count + 1)
    child.write_bytes(bytes(buf))
    os.chmod(child, 0o444)
    return child


def test_a_hyper_v_checkpoint_is_read_through_its_parent_and_hashes_it(raw, qemu_img, tmp_path):
    expected, _ = _timeline(tmp_path / "case-raw", raw)
    vms = tmp_path / "vms"
    (vms / "Snapshots").mkdir(parents=True)
    base = _convert(qemu_img, raw, vms / "web01.vhdx", "vhdx")
    snap = _checkpoint(qemu_img, base, vms / "Snapshots" / "web01_6F1CBD2F.avhdx", "..\\web01.vhdx",
                       "D:\\Hyper-V\\web01.vhdx")
    assert image_segments(snap) == [snap, base]  # relative_path, resolved as dissect resolves it
    got, ev = _timeline(tmp_path / "case", snap)
    assert got == expected
    assert sorted(Path(f["real_path"]).name for f in ev["files"]) == ["web01.vhdx", "web01_6F1CBD2F.avhdx"]
    # a folder holding both: the checkpoint is the image, its parent one of its files, not an image of its own
    case = Case(tmp_path / "case-folder", create=True)
    rep = case.collect([vms], workers=1)
    assert sorted(a["evidence_path"] for a in rep.artifacts if a["collector"] == "target") == ["Snapshots/web01_6F1CBD2F.avhdx"]
    assert case.verify().ok


def test_a_checkpoint_without_its_parent_is_a_clear_error(raw, qemu_img, tmp_path):
    base = _convert(qemu_img, raw, tmp_path / "web01.vhdx", "vhdx")
    (tmp_path / "seized").mkdir()
    snap = _checkpoint(qemu_img, base, tmp_path / "seized" / "web01_1.avhdx", "web01.vhdx", "D:\\Hyper-V\\web01.vhdx")
    assert image_segments(snap) == [snap]  # the parent is not there to hash
    case = Case(tmp_path / "case", create=True)
    with pytest.raises(EvidenceNotFound, match=r"web01_1.avhdx: a differencing disk .* whose parent .*seized/web01.vhdx is not there"):
        case.collect([snap], workers=1)
    assert len(case.timeline().to_pandas()) == 0  # nothing written
    # in a folder, the orphan is reported and the other evidence is read
    shutil.copy(raw, tmp_path / "seized" / "web01.raw")
    rep = case.collect([tmp_path / "seized"], workers=1)
    assert [a["evidence_path"] for a in rep.artifacts if a["collector"] == "target"] == ["web01.raw"]
    assert any("web01_1.avhdx" in u and "parent" in u for u in rep.evidence[0]["unrecognised"])
