"""Virtual-disk formats the corpus lacks (VHDX, VDI, fixed VHD, split and stream-optimised VMDK) and
differencing disks (QCOW2 overlay, VMDK snapshot), made by the real ``qemu-img`` from one ext4 server
image: each gives the same timeline as the raw image, and every file the image is read through is
hashed in the custody log."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from collectors.target import image_segments
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
