"""Evidence is opened with O_NOATIME (where the OS allows it) in one place, ``timeline.custody.open_evidence``,
by every reader: hashing, both EVTX engines, dissect.target (images, split segments, archives, OS trees), zipfile,
tarfile and py7zr.  Checked on a tmpfs mounted ``strictatime``, where every read of a file would update its atime."""

from __future__ import annotations

import os
import shutil

import pytest

from timeline.custody import EvidencePath, open_evidence

PAST = 1_000_000_000_000_000_000  # 2001-09-09: an access time no collection would write

IMAGES = [  # loose files the collectors read in every way they have
    "plaso/test_data/evtx/System.evtx", "dfvfs/test_data/ext2.split.E01", "dfvfs/test_data/ext2.split.E02",
    "dfvfs/test_data/ext2.splitraw.000", "dfvfs/test_data/ext2.splitraw.001", "dfvfs/test_data/ext2.qcow2",
    "dfvfs/test_data/ext2.vhd", "dfvfs/test_data/ext2.vmdk", "plaso/test_data/syslog.zip",
    "plaso/test_data/syslog.tgz", "plaso/test_data/syslog.tar", "plaso/test_data/syslog_image.dd",
    "AndrewRathbun-DFIRArtifactMuseum/Windows/SRUM/Server2022/APTSimulatorVM/APTSimulatorVM_SRUM_Clean_Server2022.7z",
]


def _files(root):
    return sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)


def test_collect_and_verify_leave_every_access_time(evidence, tmp_path, tmpfs, cli):
    mnt = tmpfs("100m", "strictatime")
    ev, tree = mnt / "ev", mnt / "tree"
    ev.mkdir()
    for rel in IMAGES:
        shutil.copy(evidence / rel, ev / os.path.basename(rel))
    (tree / "etc").mkdir(parents=True)  # an OS tree (a triage folder): read file by file through dissect
    (tree / "var" / "log").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("myhost\n")
    (tree / "etc" / "os-release").write_text('ID=debian\nNAME="Debian GNU/Linux"\n')
    shutil.copy(evidence / "plaso/test_data/syslog/syslog", tree / "var" / "log" / "syslog")
    files = _files(mnt)
    for f in files:
        os.utime(f, ns=(PAST, os.stat(f).st_mtime_ns))
    # the mount really is strictatime: a plain read moves the access time
    probe = mnt / "probe"
    probe.write_bytes(b"x")
    os.utime(probe, ns=(PAST, PAST))
    probe.read_bytes()
    assert os.stat(probe).st_atime_ns != PAST
    case = tmp_path / "case"
    for args in (["collect", str(ev), "--case", str(case), "--workers", "1"],
                 ["collect", str(tree), "--case", str(case), "--workers", "1"],
                 ["collect", str(ev / "System.evtx"), "--case", str(case), "--engine", "python-evtx", "--workers", "1"],
                 ["verify", str(case)]):
        r = cli("-q", *args)
        assert r.returncode == 0, r.stderr
    info = cli("info", str(case)).stdout
    assert "E01 media hash verified" in info and "host myhost" in info
    moved = [f for f in files if os.stat(f).st_atime_ns != PAST]
    assert moved == []


def test_the_fallback_when_o_noatime_is_not_allowed():
    """O_NOATIME needs the file's owner (or CAP_FOWNER): anyone else still reads it, with a plain read-only open."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a reader as another user")
    import tempfile

    folder = tempfile.mkdtemp(prefix="forensics-noatime-")  # under /tmp: other users can reach it
    try:
        os.chmod(folder, 0o755)
        f = os.path.join(folder, "evidence.bin")
        with open(f, "wb") as fh:
            fh.write(b"evidence")
        os.chmod(f, 0o444)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: another user (the file's owner is root), reads through open_evidence
            try:
                os.setgid(65534)
                os.setuid(65534)
                fd = open_evidence(f)
                os.write(write, os.read(fd, 100))
                os._exit(0)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                os.write(write, repr(exc).encode())
                os._exit(1)
        os.close(write)
        got = os.read(read, 1000)
        os.close(read)
        assert os.waitpid(pid, 0)[1] == 0, got
        assert got == b"evidence"
    finally:
        shutil.rmtree(folder)


def test_evidence_paths_open_read_only(tmp_path):
    f = tmp_path / "evidence.txt"
    f.write_text("line\n")
    p = EvidencePath(f)
    with p.open("rb") as fh:
        assert fh.read() == b"line\n" and fh.name == str(f)
    with (p.parent / "evidence.txt").open() as fh:  # derived paths open the same way
        assert fh.read() == "line\n" and fh.name == str(f)
    for mode in ("wb", "ab", "r+b", "x"):
        with pytest.raises(PermissionError, match="evidence is never opened for writing"):
            p.open(mode)
    assert f.read_text() == "line\n"
    flags = os.O_RDONLY | getattr(os, "O_NOATIME", 0)
    fd = open_evidence(f)
    try:
        import fcntl

        assert fcntl.fcntl(fd, fcntl.F_GETFL) & flags == flags
    finally:
        os.close(fd)
