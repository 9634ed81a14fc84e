"""Exports of a large generated case (run by hand):

    .venv/bin/python benchmarks/export_scale.py [--rows 10000000] [--formats timesketch-jsonl,parquet] [--work DIR]

Generates the same synthetic case as ``benchmarks/query_scale.py`` (``--rows`` rows over 25 hosts
and 30 days, sorted Parquet parts committed through the case store), then runs each export of the
whole timeline in a fresh process and reports its time, output size and the peak RSS of that
process (DuckDB runs inside it, so its sort is counted). Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SUFFIX = {"timesketch-jsonl": "jsonl", "timesketch-csv": "csv", "csv": "csv", "jsonl": "jsonl", "xlsx": "xlsx",
          "parquet": "parquet"}


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux's VmHWM: ru_maxrss is inherited through fork and exec, so a child of
    the generator would report the generator's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def export_one(case_dir: Path, fmt: str, out: Path) -> None:
    import forensics

    t = time.perf_counter()
    entry = forensics.open(case_dir).export(out, fmt)
    secs = time.perf_counter() - t
    rss = peak_rss_mib()
    size = out.stat().st_size / 2**20
    print(f"| {fmt} | {entry['rows']:,} | {secs:.1f} s | {entry['rows'] / secs:,.0f} | {size:,.0f} MiB | {rss:,.0f} MiB |")
    out.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--hosts", type=int, default=25)
    ap.add_argument("--formats", default="timesketch-jsonl")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="export the case already in --work")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        export_one(Path(args.one[0]), args.one[1], Path(args.one[0]).parent / f"export.{SUFFIX[args.one[1]]}")
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="forensics-export-"))
    case_dir = work / "case"
    if not (args.reuse and (case_dir / "case.json").exists()):
        from query_scale import generate

        generate(case_dir, args.rows, args.hosts)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| format | rows | time | rows/s | output | peak RSS |")
    print("|---|---|---|---|---|---|")
    sys.stdout.flush()
    for fmt in args.formats.split(","):
        # each export in a fresh process: its peak memory is the export's, not the generator's
        subprocess.run([sys.executable, __file__, "--one", str(case_dir), fmt], check=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
