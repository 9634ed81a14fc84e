"""Shared fixtures.

The real evidence corpus lives outside the repository (``../shared/evidence`` from the
project root, or ``$FORENSICS_EVIDENCE``).  On a user's fresh clone without it, tests
that need it skip with a clear reason; CI sets ``FORENSICS_REQUIRE_EVIDENCE=1`` so that
a missing corpus fails instead of skipping.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE = Path(os.environ.get("FORENSICS_EVIDENCE", ROOT.parent / "shared" / "evidence")).resolve()
REQUIRE = os.environ.get("FORENSICS_REQUIRE_EVIDENCE", "") not in ("", "0", "false", "no")


def _need(path: Path) -> Path:
    if not path.exists():
        reason = f"shared corpus not found at {path} (set FORENSICS_EVIDENCE / FORENSICS_SIGMA to its folder)"
        if REQUIRE:
            pytest.fail(reason + "; FORENSICS_REQUIRE_EVIDENCE is set, so this is a failure", pytrace=False)
        pytest.skip(reason)
    return path


SIGMA = Path(os.environ.get("FORENSICS_SIGMA", ROOT.parent / "shared" / "sigma")).resolve()


@pytest.fixture(scope="session")
def sigma_dir() -> Path:
    """The shared SigmaHQ rules and their regression samples."""
    return _need(SIGMA)


@pytest.fixture(scope="session")
def evidence() -> Path:
    """The shared evidence folder."""
    return _need(EVIDENCE)


MUSEUM_J = "AndrewRathbun-DFIRArtifactMuseum/Windows/NTFSArtifacts/J/Win10/APTSimulatorVM/APTSimulatorVMJ.7z"


@pytest.fixture(scope="session")
def museum_journal(evidence: Path, tmp_path_factory) -> Path:
    """The DFIR Artifact Museum's real ``$UsnJrnl:$J`` of the APTSimulator Windows 10 host, extracted once from its 7z."""
    import py7zr

    out = tmp_path_factory.mktemp("museum-j")
    with py7zr.SevenZipFile(evidence / MUSEUM_J) as z:
        z.extractall(out)
    return out / "$J"


@pytest.fixture(scope="session")
def reference_minimum(evidence: Path) -> dict[str, int]:
    """The corpus README's EVTX reference table: file -> minimum records a loss-free timeline holds."""
    table = {}
    for line in (evidence / "README.md").read_text().splitlines():
        m = re.match(r"\| (\S.*?\.evtx) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", line)
        if m:
            table[m.group(1)] = int(m.group(5))
    assert len(table) == 34, "reference table of the corpus README changed"
    return table


@pytest.fixture(scope="session")
def corpus_case(evidence: Path, reference_minimum: dict[str, int], tmp_path_factory):
    """A case holding the 34 EVTX files of the corpus README's reference table (collected once per test
    session), read from a folder that holds exactly those files under their corpus paths (copies with their
    times; the corpus's real-attack collections are read by their own tests)."""
    import shutil

    from forensics import Case

    base = tmp_path_factory.mktemp("corpus")
    folder = base / "evidence"
    for rel in reference_minimum:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(evidence / rel, folder / rel)
    case = Case(base / "case", create=True)
    report = case.collect([folder], workers=1, only=["evtx"])
    return case, report


def _tool(name: str, package: str, path: str = "/usr/sbin:/sbin", needs: tuple[str, ...] = ()) -> str:
    """A Debian tool the tests run (with the tools beside it in ``needs``); skipped with the package to install
    when missing, a failure when FORENSICS_REQUIRE_EVIDENCE is set."""
    import shutil

    exe = shutil.which(name) or shutil.which(name, path=path)
    if exe is None or any(shutil.which(n, path=os.path.dirname(exe)) is None for n in needs):
        reason = f"{' / '.join((name, *needs))} (Debian package {package}) is not installed"
        if REQUIRE:
            pytest.fail(reason + "; FORENSICS_REQUIRE_EVIDENCE is set, so this is a failure", pytrace=False)
        pytest.skip(reason)
    return exe


@pytest.fixture(scope="session")
def mke2fs() -> str:
    """``mke2fs`` (Debian e2fsprogs), to build ext4 test images from folders without root."""
    return _tool("mke2fs", "e2fsprogs")


@pytest.fixture(scope="session")
def ext4_image(mke2fs: str):
    """Build a read-only ext4 image from a folder: ``ext4_image(root, img, size="8M")`` → ``img``.  The file
    system's own times (creation of every inode) are mke2fs's fake time 2022-11-23 01:13:20 UTC."""
    import subprocess

    def build(root: Path, img: Path, size: str = "8M") -> Path:
        subprocess.run([mke2fs, "-q", "-F", "-t", "ext4", "-d", str(root), str(img), size], check=True,
                       env=dict(os.environ, E2FSPROGS_FAKE_TIME="1669166000"), capture_output=True)
        os.chmod(img, 0o444)
        return img

    return build


@pytest.fixture(scope="session")
def qemu_img() -> str:
    """``qemu-img`` (Debian qemu-utils), to convert a test image to VHDX, VDI, VMDK, QCOW2 and VHD and to make
    differencing disks."""
    return _tool("qemu-img", "qemu-utils")


@pytest.fixture(scope="session")
def mkfs_xfs() -> str:
    """``mkfs.xfs`` (Debian xfsprogs), to build XFS test images from a protofile without root or mounting."""
    return _tool("mkfs.xfs", "xfsprogs", needs=("xfs_db",))


@pytest.fixture(scope="session")
def fls() -> str:
    """``fls`` (Debian sleuthkit, with ``icat`` beside it): the body file a file-system timeline must equal."""
    return _tool("fls", "sleuthkit", path="/usr/bin", needs=("icat",))


@pytest.fixture(scope="session")
def ntfs_image():
    """Build an NTFS image with ``mkntfs`` and fill it through an ntfs-3g FUSE mount (Debian ntfs-3g; needs
    /dev/fuse and root): ``ntfs_image(img, fill, size="16M")`` runs ``fill(mountpoint)`` then unmounts."""
    import shutil
    import subprocess

    mkntfs = _tool("mkntfs", "ntfs-3g", needs=())
    ntfs3g = _tool("ntfs-3g", "ntfs-3g", path="/usr/bin:/bin")
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        reason = "an ntfs-3g FUSE mount needs /dev/fuse and root"
        if REQUIRE:
            pytest.fail(reason + "; FORENSICS_REQUIRE_EVIDENCE is set, so this is a failure", pytrace=False)
        pytest.skip(reason)

    def build(img: Path, fill, size: str = "16M") -> Path:
        subprocess.run(["truncate", "-s", size, str(img)], check=True)
        subprocess.run([mkntfs, "-q", "-F", "-f", str(img)], check=True, capture_output=True)
        mnt = img.with_name(img.name + ".mnt")
        mnt.mkdir()
        subprocess.run([ntfs3g, "-o", "streams_interface=windows", str(img), str(mnt)], check=True)
        try:
            fill(mnt)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
            shutil.rmtree(mnt, ignore_errors=True)
        os.chmod(img, 0o444)
        return img

    return build


@pytest.fixture(scope="session")
def journal_remote() -> str:
    """systemd-journal-remote (Debian package systemd-journal-remote): writes real journal files from the
    journal export format, for tests."""
    return _tool("systemd-journal-remote", "systemd-journal-remote", path="/lib/systemd:/usr/lib/systemd")


CHROMIUM = Path(os.environ.get("FORENSICS_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Headless Chromium (Debian package ``chromium``), for rendering the HTML report."""
    if not CHROMIUM.exists():
        reason = (f"headless Chromium not found at {CHROMIUM} (Debian: apt-get install chromium; or set "
                  "FORENSICS_CHROMIUM)")
        if REQUIRE:
            pytest.fail(reason + "; FORENSICS_REQUIRE_EVIDENCE is set, so this is a failure", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM
