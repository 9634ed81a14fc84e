"""EVTX → Parquet throughput, side by side with the parsers it is built on.  Run by hand:

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/evtx_throughput.py [--size-mb 1024] [--workers N] [--work DIR]

It replicates the EVTX files of the shared corpus into a work folder until they weigh at
least ``--size-mb`` (so every figure below is measured on the same bytes), then in one run:

1. raw iteration with the Rust ``evtx`` parser (``records_json()``), one process;
2. python-evtx on a sample of the records (it is slow);
3. end to end: ``forensics collect`` into a fresh case (hashing, parsing, Parquet, dedupe,
   custody), as a subprocess, with its peak RSS (largest process: the collector or a worker).

Figures go to stdout as a Markdown table; copy them into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import glob
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
EVIDENCE = Path(os.environ.get("FORENSICS_EVIDENCE", ROOT.parent / "shared" / "evidence"))


def replicate(work: Path, size_mb: int) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(str(EVIDENCE / "**" / "*.evtx"), recursive=True))
    if not files:
        sys.exit(f"no EVTX files under {EVIDENCE}")
    out, total, i = [], 0, 0
    while total < size_mb << 20:
        d = work / f"copy{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            rel = f.relative_to(EVIDENCE).as_posix().replace("/", "__")
            dst = d / rel
            if not dst.exists():
                shutil.copyfile(f, dst)
            out.append(dst)
            total += dst.stat().st_size
        i += 1
    return out


def raw_evtx(files: list[Path]) -> tuple[int, float]:
    import evtx

    n = 0
    t = time.perf_counter()
    for f in files:
        it = evtx.PyEvtxParser(str(f)).records_json()
        while True:
            try:
                next(it)
                n += 1
            except StopIteration:
                break
            except Exception:
                continue
    return n, time.perf_counter() - t


def python_evtx(files: list[Path], limit: int) -> tuple[int, float]:
    from Evtx.Evtx import Evtx

    n = 0
    t = time.perf_counter()
    for f in files:
        try:
            with Evtx(str(f)) as log:
                for rec in log.records():
                    rec.xml()
                    n += 1
                    if n >= limit:
                        return n, time.perf_counter() - t
        except Exception:
            continue
    return n, time.perf_counter() - t


def end_to_end(data: Path, case: Path, workers: int | None) -> tuple[str, float, float]:
    cmd = [sys.executable, "-m", "forensics", "-v", "collect", str(data), "--case", str(case)]
    if workers:
        cmd += ["--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode:
        sys.exit(r.stderr)
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    summary = [line for line in r.stdout.splitlines() if "records read" in line][0]
    phases = [line for line in r.stderr.splitlines() if "collect phases" in line]
    return summary + ("\n  " + phases[0].split("INFO ")[-1] if phases else ""), elapsed, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--sample", type=int, default=3000, help="records for python-evtx")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="forensics-bench-"))
    data = work / "evtx"
    files = replicate(data, args.size_mb)
    size = sum(f.stat().st_size for f in files)

    n_raw, t_raw = raw_evtx(files)
    n_py, t_py = python_evtx(files, args.sample)
    case = work / "case"
    shutil.rmtree(case, ignore_errors=True)
    summary, t_e2e, peak = end_to_end(data, case, args.workers)
    n_e2e = int(summary.split(" records read")[0].split()[-1])

    raw_rate, e2e_rate = n_raw / t_raw, n_e2e / t_e2e
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"{platform.platform()}")
    print(f"input: {len(files)} files, {size / 2**20:.0f} MiB")
    print(f"forensics: {summary}\n")
    print("| what | records | seconds | records/s | vs raw evtx | peak RSS |")
    print("|---|---|---|---|---|---|")
    print(f"| raw `evtx` records_json(), 1 process | {n_raw} | {t_raw:.1f} | {raw_rate:,.0f} | 1.00x | |")
    print(f"| python-evtx, sample | {n_py} | {t_py:.1f} | {n_py / t_py:,.0f} | {n_py / t_py / raw_rate:.4f}x | |")
    print(f"| forensics collect end to end ({args.workers or os.cpu_count()} workers) | {n_e2e} | {t_e2e:.1f} | "
          f"{e2e_rate:,.0f} | {e2e_rate / raw_rate:.2f}x | {peak:.0f} MiB |")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
