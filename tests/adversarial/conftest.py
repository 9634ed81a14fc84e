"""Fixtures of the adversarial tests: real small file systems (tmpfs mounts) to fill, make read-only or mount
with ``strictatime``.  Mounting needs root (CAP_SYS_ADMIN); without it these tests skip with that reason, and the
in-process fault-injection tests beside them still run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "forensics", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def cli():
    """``cli(*ARGS)``: ``python -m forensics ARGS`` in a fresh process (this checkout first on the path), with its
    exit code and its stdout/stderr as text."""
    return _cli


@pytest.fixture
def tmpfs(tmp_path: Path):
    """``tmpfs(size="20m", options="")`` → a fresh tmpfs mounted under ``tmp_path`` (unmounted afterwards)."""
    mounted: list[Path] = []

    def mount(size: str = "20m", options: str = "") -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        opts = ",".join(x for x in (f"size={size}", options) if x)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def remount():
    """``remount(where, "ro")``: change the options of a mounted tmpfs."""
    def run(where: Path, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)

    return run


@pytest.fixture
def fill():
    """``fill(where, leave=0)``: take all the free space of the file system at ``where`` but ``leave`` bytes."""
    return _fill


def _fill(where: Path, leave: int = 0) -> Path:
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize - leave
    path = where / "fill"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if free > 0:
            os.posix_fallocate(fd, 0, free)
    finally:
        os.close(fd)
    return path
