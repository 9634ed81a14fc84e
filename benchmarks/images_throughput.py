"""File-system timelines of disk images, side by side in one run: The Sleuth Kit (``fls -r -m / | mactime``),
dissect.target's own walk, plaso (``log2timeline --parsers filestat``, on the smallest image only) and ours end
to end (``forensics collect``: image hashing, timeline, Parquet, custody), with 1 and 2 workers.  Run by hand:

    .venv/bin/python benchmarks/images_throughput.py [--work DIR] [--million] [--plaso] [--ntfs]

Images are generated in ``--work`` (default benchmarks/work/images, git-ignored), kept between runs:

* ``ext4-100k``: ``mke2fs -d`` of 200 folders of 500 files (100,000 files), 30 of them then deleted with
  ``debugfs -w -R "rm ..."`` (deleted names listed by fls and by us);
* ``ext4-flat50k``: one folder of 50,000 files (what made the old walk quadratic);
* ``ext4-1m`` (``--million``): 1,000 folders of 1,000 files;
* ``ntfs-100k`` (``--ntfs``, needs /dev/fuse and root): ``mkntfs`` on a file, the 100,000 files copied in
  through an ntfs-3g FUSE mount.

Each step runs as its own process tree: wall time, CPU time, peak RSS and peak PSS (each the sum over the tree,
sampled every 0.1 s; PSS counts a page shared by several processes -- the libraries every worker maps --
once); the load average before each step is printed (the VM is shared).  Figures go to stdout as a Markdown
table; copy them into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT), E2FSPROGS_FAKE_TIME="1669166000")


def _tree(root: Path, dirs: int, per: int) -> None:
    if root.exists():
        return
    tmp = root.with_name(root.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for d in range(dirs):
        p = tmp / f"d{d:04d}"
        p.mkdir(parents=True)
        for i in range(per):
            (p / f"f{i:06d}.txt").write_bytes(b"x" * (i % 7))
    tmp.rename(root)


def _ext4(work: Path, name: str, dirs: int, per: int, size: str, inodes: int, delete: int = 0) -> Path:
    img = work / f"{name}.img"
    if img.exists():
        return img
    tree = work / f"tree-{dirs}x{per}"
    _tree(tree, dirs, per)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-N", str(inodes), "-d", str(tree), str(img), size], check=True, env=ENV)
    for i in range(delete):  # files deleted after the fact: their names stay in the directory blocks
        subprocess.run(["debugfs", "-w", "-R", f"rm /d{i:04d}/f{i:06d}.txt", str(img)], check=True, capture_output=True)
    return img


def _ntfs(work: Path, dirs: int, per: int) -> Path | None:
    img = work / "ntfs-100k.img"
    if img.exists():
        return img
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        print("no /dev/fuse or not root: the NTFS image is left out", file=sys.stderr)
        return None
    tree = work / f"tree-{dirs}x{per}"
    _tree(tree, dirs, per)
    part = img.with_suffix(".part")
    subprocess.run(["truncate", "-s", "900M", str(part)], check=True)
    subprocess.run(["mkntfs", "-q", "-F", "-f", str(part)], check=True, capture_output=True)
    mnt = Path(tempfile.mkdtemp())
    subprocess.run(["ntfs-3g", str(part), str(mnt)], check=True)
    try:
        subprocess.run(["cp", "-r", f"{tree}/.", str(mnt)], check=True)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()
    part.rename(img)
    return img


def _measure(what: str, cmd: list[str] | str, **kw) -> dict:
    import resource

    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, shell=isinstance(cmd, str), **kw)
    peak = peak_pss = 0
    while proc.poll() is None:
        try:
            procs = [p for p in [proc] + proc.children(recursive=True) if p.is_running()]
            peak = max(peak, sum(p.memory_info().rss for p in procs))
            # PSS: each shared page (the libraries every worker maps) counted once over the tree, not once per process
            peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.monotonic() - t0
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{what} failed:\n{err.decode(errors='replace')[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the tree's CPU: waited-for descendants included
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    r = {"what": what, "wall": wall, "cpu": cpu, "rss": peak / 2**20, "pss": peak_pss / 2**20, "load": load,
         "out": out.decode(errors="replace"), "err": err.decode(errors="replace")}
    print(f"{what}: {wall:.1f} s wall, {r['rss']:.0f} MiB peak RSS ({r['pss']:.0f} MiB PSS), load {load:.1f}",
          file=sys.stderr)
    return r


_DISSECT_WALK = """
import sys, stat
from dissect.target import Target
t = Target.open(sys.argv[1])
n = 0
for fs in t.filesystems:
    stack = [fs.get("/")]
    while stack:
        d = stack.pop()
        for e in d.scandir():
            if e.name in (".", ".."):
                continue
            st = e.stat(follow_symlinks=False)  # (dissect >= 3.2x: scandir gives DirEntry objects)
            n += 1
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.get())
print(n)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "images")
    ap.add_argument("--million", action="store_true", help="also the 1,000,000-file ext4 image")
    ap.add_argument("--plaso", action="store_true", help="also plaso filestat on the 100,000-file image (slow)")
    ap.add_argument("--ntfs", action="store_true", help="also the 100,000-file NTFS image (ntfs-3g FUSE mount)")
    ap.add_argument("--no-dissect", action="store_true", help="leave out dissect's walk")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    images = [("ext4-100k", _ext4(work, "ext4-100k", 200, 500, "700M", 120_000, delete=30), 100_000),
              ("ext4-flat50k", _ext4(work, "ext4-flat50k", 1, 50_000, "400M", 60_000), 50_000)]
    if args.ntfs and (img := _ntfs(work, 200, 500)) is not None:
        images.append(("ntfs-100k", img, 100_000))
    if args.million:
        images.append(("ext4-1m", _ext4(work, "ext4-1m", 1000, 1000, "6G", 1_100_000), 1_000_000))
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}", file=sys.stderr)
    tsk = subprocess.run(["fls", "-V"], capture_output=True, text=True).stdout.strip()
    rows, stages = [], []
    for name, img, files in images:
        _warm(img)
        body = work / f"{name}.body"
        r = _measure(f"{name}: fls -r -m / | mactime", f"fls -r -m / {img} > {body} && mactime -b {body} -d -y > /dev/null")
        rows.append((name, files, f"fls -r -m / + mactime -d ({tsk}, C)", r, sum(1 for _ in open(body))))
        if not args.no_dissect and files <= 100_000:  # dissect's walk of a million files takes tens of minutes
            r = _measure(f"{name}: dissect walk", [PY, "-c", _DISSECT_WALK, str(img)])
            rows.append((name, files, "dissect.target walk + lstat (no rows)", r, int(r["out"].split()[-1])))
        for workers in (1, 2):
            case = work / f"case-{name}-{workers}"
            shutil.rmtree(case, ignore_errors=True)
            r = _measure(f"{name}: forensics collect -w {workers}",
                         [PY, "-m", "forensics", "-v", "collect", str(img), "--case", str(case), "--workers", str(workers)])
            n = _rows(case)
            rows.append((name, files, f"ours: `forensics collect --workers {workers}` (hash, timeline, Parquet, custody)", r, n))
            stages.append((name, workers, _phases(r["err"]), r["wall"]))
            shutil.rmtree(case, ignore_errors=True)
        if args.plaso and name == "ext4-100k":
            store = work / "plaso.plaso"
            store.unlink(missing_ok=True)
            r = _measure(f"{name}: plaso filestat", [str(BIN / "log2timeline"), "--parsers", "filestat", "--status_view",
                                                      "none", "--unattended", "--storage_file", str(store), str(img)], cwd=work)
            rows.append((name, files, "plaso log2timeline --parsers filestat", r, None))
    print("| image | files | tool | wall s | CPU s | peak RSS MiB | peak PSS MiB | rows / lines | load |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, files, tool, r, n in rows:
        print(f"| {name} | {files:,} | {tool} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss']:.0f} | {r['pss']:.0f} | "
              f"{'' if n is None else f'{n:,}'} | {r['load']:.1f} |")
    print("\nOurs, stage by stage (wall s, from `forensics -v collect`'s \"collect phases\"; start-up = the rest: "
          "Python, imports, resolving the evidence, planning):\n")
    print("| image | workers | start-up | hash before | read (timeline, Parquet) | hash after | commit | total |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, workers, ph, wall in stages:
        rest = wall - sum(ph.values())
        print(f"| {name} | {workers} | {rest:.1f} | {ph.get('hash_before', 0):.1f} | {ph.get('read', 0):.1f} | "
              f"{ph.get('hash_after', 0):.1f} | {ph.get('commit', 0):.1f} | {wall:.1f} |")


def _warm(img: Path) -> None:
    """Read the image once, so that every tool finds it in the page cache (else the first one to read it all --
    our hashing -- pays the disk: 17.7 s against 8.4 s for the 6 GB image's hashing)."""
    with open(img, "rb", buffering=0) as fh:
        buf = bytearray(8 << 20)
        while fh.readinto(buf):
            pass


def _phases(stderr: str) -> dict[str, float]:
    """The stages' wall seconds the collect logged (``collect phases (s): {...}``)."""
    import ast

    line = next((x for x in stderr.splitlines() if "collect phases (s):" in x), None)
    return ast.literal_eval(line.split("collect phases (s):", 1)[1].strip()) if line else {}


def _rows(case: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in (case / "timeline").glob("*.parquet"))


if __name__ == "__main__":
    main()
