"""Integrity around disk images: E01 stored media hashes verified (real E01s of dfvfs and plaso), and
``--gather`` copying raw artifacts out of an image into the case, hashed in the custody log."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

import pyewf
import pytest

from collectors.target import ewf_media_hashes
from forensics import Case
from forensics.cli import main

# media size, MD5, SHA-1 of the media data (MD5 is also what the images store; none stores a SHA-1)
E01 = {
    "dfvfs/test_data/ext2.E01": (4194304, "196066add11fb71c4c49cf1bb50d6d24", "4766c63c7acd5175015e3e8b90013a827e63f4ee"),
    "dfvfs/test_data/ext2.split.E01": (4194304, "196066add11fb71c4c49cf1bb50d6d24", "4766c63c7acd5175015e3e8b90013a827e63f4ee"),
    "plaso/test_data/image.E01": (102400, "d73c51f10c7ee6a681b7b619ccc6f1c4", "d9f264323004fd9518c0474967f80421e60e9813"),
    "plaso/test_data/image-split.E01": (1474560, "38ea5af8a80e16e46c095c9110242fc0", "34de9912223904d829534a02331a49a9a9241c0d"),
}


@pytest.mark.parametrize("name", sorted(E01))
def test_e01_stored_media_hashes_are_verified(evidence, name):
    size, md5, sha1 = E01[name]
    got = ewf_media_hashes(evidence / name)
    assert got["media_size"] == got["media_read"] == size
    assert got["stored"] == {"md5": md5, "sha1": None}
    assert got["computed"] == {"md5": md5, "sha1": sha1}
    assert got["verified"] is True and got["segments"] == (2 if "split" in name else 1)
    # libewf (pyewf, an independent reader) finds the same stored hash and media size
    h = pyewf.handle()
    h.open(pyewf.glob(str(evidence / name)))
    assert (h.get_hash_value("MD5"), h.get_media_size()) == (md5, size)
    h.close()


def test_not_an_e01_gives_no_media_hashes(evidence):
    assert ewf_media_hashes(evidence / "dfvfs" / "test_data" / "ext2.qcow2") is None


def test_the_verification_is_in_the_custody_log_and_a_mismatch_is_a_counted_warning(evidence, tmp_path):
    good = evidence / "dfvfs" / "test_data" / "ext2.E01"
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([good], workers=1)
    ewf = next(a["facts"]["ewf"] for a in rep.artifacts if a["collector"] == "target")
    assert ewf["verified"] is True and ewf["stored"]["md5"] == E01["dfvfs/test_data/ext2.E01"][1]
    commit = [e for e in case.store.custody.entries() if e.get("action") == "commit"][-1]
    assert commit["artifacts"][0]["facts"]["ewf"]["computed"]["sha1"] == E01["dfvfs/test_data/ext2.E01"][2]
    assert rep.warnings == 0

    # the same image with one byte of its stored MD5 changed: the media data no longer matches what it states
    bad = tmp_path / "ext2.E01"
    data = bytearray(good.read_bytes())
    at = _hash_section_offset(good)
    data[at] ^= 0xFF
    bad.write_bytes(bytes(data))
    os.chmod(bad, 0o444)
    case2 = Case(tmp_path / "case2", create=True)
    rep2 = case2.collect([bad], workers=1)
    ewf2 = next(a["facts"]["ewf"] for a in rep2.artifacts if a["collector"] == "target")
    assert ewf2["verified"] is False and ewf2["computed"]["md5"] == E01["dfvfs/test_data/ext2.E01"][1]
    assert ewf2["stored"]["md5"] != ewf2["computed"]["md5"]
    problems = case2.problems().to_pandas()
    mism = problems[problems.kind == "ewf_hash_mismatch"]
    assert len(mism) == 1 and rep2.warnings == 1
    assert mism.iloc[0].message.startswith(f"E01 stores media MD5 {ewf2['stored']['md5']} but its media data hashes to "
                                           f"{E01['dfvfs/test_data/ext2.E01'][1]}")
    info = case2.info()
    assert info["warnings"] == 1 and info["evidence"][0]["e01_media_hash"] == "MISMATCH"
    assert case.info()["evidence"][0]["e01_media_hash"] == "verified"
    # the file system is read all the same: same file-system rows as the good image
    assert case2.timeline().num_rows == case.timeline().num_rows


def _hash_section_offset(path: Path) -> int:
    from dissect.evidence.ewf import EWF

    with open(path, "rb") as fh:
        ewf = EWF([fh])
        return next(s.data_offset for s in ewf.segment(0).sections if s.type == b"hash")


# --- --gather ------------------------------------------------------------------------------------

MTIME = 1669167120_000_000_000  # 2022-11-23 01:32:00 UTC
FILES = {  # path inside the image -> content; the first six are gathered, the binary is not
    "etc/hostname": b"ehosp-app01\n",
    "etc/timezone": b"Asia/Kolkata\n",
    "etc/passwd": b"root:x:0:0:root:/root:/bin/bash\n",
    "etc/cron.d/upd": b"*/5 * * * * root /tmp/.x/kworker\n",
    "home/alice/.ssh/authorized_keys": b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB attacker@kali\n",
    "var/log/auth.log": b"Nov 23 07:00:01 ehosp-app01 sshd[100]: Accepted password for root from 203.0.113.7 port 50001 ssh2\n",
    "usr/bin/kworker": b"\x7fELF not gathered",
}


def _gather_image(tmp_path: Path, ext4_image) -> Path:
    root = tmp_path / "root"
    for rel, data in FILES.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        os.utime(f, ns=(MTIME, MTIME))
    return ext4_image(root, tmp_path / "app01.raw")


def test_gather_copies_raw_artifacts_hashed_with_path_and_times(tmp_path, ext4_image, capsys):
    img = _gather_image(tmp_path, ext4_image)
    before = hashlib.sha256(img.read_bytes()).hexdigest()
    case_dir = tmp_path / "case"
    assert main(["-q", "collect", str(img), "--case", str(case_dir), "--gather", "--workers", "1"]) == 0
    assert hashlib.sha256(img.read_bytes()).hexdigest() == before  # the evidence is untouched
    case = Case(case_dir)
    commit = [e for e in case.store.custody.entries() if e.get("action") == "commit"][-1]
    target = next(a for a in commit["artifacts"] if a["collector"] == "target")
    eid = target["evidence_id"]
    gathered = {g["path"]: g for g in target["facts"]["gathered"]}
    assert sorted(gathered) == sorted(f"/{p}" for p in FILES if p != "usr/bin/kworker")
    for path, g in gathered.items():
        data = FILES[path[1:]]
        stored = case_dir / g["stored_as"]
        assert g["stored_as"] == f"gathered/{eid}{path}"
        assert stored.read_bytes() == data and (stored.stat().st_mode & 0o777) == 0o444
        assert (g["sha256"], g["md5"], g["size"]) == (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data))
        assert g["mtime"] == "2022-11-23T01:32:00.000000000Z"
        assert g["birthtime"] == "2022-11-23T01:13:20.000000000Z"  # mke2fs's (fake) time
    assert not (case_dir / "staging").exists() or not any((case_dir / "staging").rglob("*.log"))
    # the gathered log is also what was parsed: its row points into the evidence, not into the case
    auth = case.timeline().to_pandas().query("evidence_path == '/var/log/auth.log'")
    assert len(auth) == 1 and auth.iloc[0].src_ip == "203.0.113.7"
    assert case.verify().ok
    assert main(["info", str(case_dir)]) == 0
    out = capsys.readouterr().out
    assert "host ehosp-app01, os unix, zone Asia/Kolkata (evidence_config), 6 file(s) gathered" in out

    # a gathered copy altered, or a file slipped in: verify names it
    victim = case_dir / gathered["/etc/passwd"]["stored_as"]
    os.chmod(victim, 0o644)
    victim.write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    (case_dir / "gathered" / eid / "etc" / "extra").write_bytes(b"x")
    v = case.verify()
    assert not v.ok
    assert f"gathered/{eid}/etc/passwd: SHA-256 differs from the custody log (file was altered)" in v.problems
    assert f"gathered/{eid}/etc/extra: file is not recorded in the custody log" in v.problems


def test_without_gather_nothing_is_copied_into_the_case(tmp_path, ext4_image):
    img = _gather_image(tmp_path, ext4_image)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([img], workers=1)
    assert not (tmp_path / "case" / "gathered").exists()
    assert "gathered" not in next(a["facts"] for a in rep.artifacts if a["collector"] == "target")


def test_gather_from_a_triage_archive_takes_windows_artifacts_by_name(tmp_path):
    src = tmp_path / "kape" / "C"
    pf = src / "Windows" / "Prefetch" / "PSEXESVC.EXE-AD70946C.pf"
    hive = src / "Windows" / "System32" / "config" / "SYSTEM"
    other = src / "Windows" / "notepad.exe"
    for f, data in ((pf, b"MAM\x04 prefetch bytes"), (hive, b"regf not a real hive"), (other, b"MZ")):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
    arc = tmp_path / "triage.tar"
    with tarfile.open(arc, "w") as tf:
        tf.add(tmp_path / "kape", arcname=".")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1, gather=True)
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    got = {g["path"]: g["sha256"] for g in target["facts"]["gathered"]}
    assert got == {"/C/Windows/Prefetch/PSEXESVC.EXE-AD70946C.pf": hashlib.sha256(pf.read_bytes()).hexdigest(),
                   "/C/Windows/System32/config/SYSTEM": hashlib.sha256(hive.read_bytes()).hexdigest()}
    assert case.verify().ok
    shutil.rmtree(tmp_path / "kape")
