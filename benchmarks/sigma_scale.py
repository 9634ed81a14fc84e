"""Sigma rules over EVTX cases of 30,000 to millions of rows: time and peak memory.  Run by hand:

    .venv/bin/pip install -e '.[bench,sigma,dask]'
    # the shared corpus: every EVTX of ../shared/evidence and the 96 SigmaHQ regression samples (~28,500 rows)
    .venv/bin/python benchmarks/sigma_scale.py corpus --work /tmp/sb
    # the corpus's EVTX replicated (copy k moved k days later, so nothing is deduplicated; see evtx_throughput.py)
    .venv/bin/python benchmarks/sigma_scale.py replicated --size-mb 780 --work /tmp/sb      # ~1,000,000 rows
    # all rules of ../shared/sigma/rules/windows over a case, in this process
    .venv/bin/python benchmarks/sigma_scale.py run /tmp/sb/case-corpus [--engine duckdb|dask] [--before]
        [--rules DIR] [--workers 2] [--partition-rows N]

``run`` prints one Markdown row: rows, rules loaded/converted/matched, matches, wall and CPU seconds, the
peak RSS of the process and of its children (dask workers), and the load average.  ``--before`` runs the
engine as it was before this benchmark existed (``forensics/sigma.py`` of commit ``BEFORE``, read from git):
one JSON-extracting DuckDB query per rule over the whole timeline held in memory.  ``--engine dask`` runs
``sigma.run`` on ``forensics.open(case, engine="dask")`` through a local dask.distributed cluster of
``--workers`` processes.  Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared"
BEFORE = "1795d7a"  # the last commit with the per-rule engine


def _collect(evidence: list[Path], case: Path) -> None:
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "forensics", "collect", *map(str, evidence), "--case", str(case), "--only", "evtx"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(out.stdout.strip() or out.stderr.strip().splitlines()[-1])
    print(f"case {case} collected in {time.monotonic() - t0:.0f} s")


def _engine(before: bool):
    if not before:
        from forensics import sigma

        return sigma
    src = subprocess.run(["git", "show", f"{BEFORE}:forensics/sigma.py"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"forensics_sigma_{BEFORE}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("forensics.sigma_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def run(case: str, rules: list[Path], engine: str, before: bool, workers: int, partition_rows: int | None) -> None:
    import forensics
    from scale_out import PeakRSS

    sigma = _engine(before)
    tl = forensics.open(case)
    rows = len(tl)
    with PeakRSS() as rss:
        t0, c0 = time.monotonic(), time.process_time()
        if engine == "dask":
            import distributed

            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                          dashboard_address=None) as cluster, distributed.Client(cluster):
                ddf = forensics.open(case, engine="dask")
                if partition_rows:
                    ddf = ddf.repartition(npartitions=max(1, rows // partition_rows))
                nparts = ddf.npartitions
                t0, c0 = time.monotonic(), time.process_time()  # cluster start-up not counted
                res = sigma.run(ddf, rules)
        else:
            nparts = None
            res = sigma.run(tl, rules)
        secs, cpu = time.monotonic() - t0, time.process_time() - c0
    me = os.getpid()
    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = sorted((r for pid, (_, r) in rss.peaks.items() if pid != me), reverse=True)
    m = res.matches
    top = collections.Counter(m["title"]).most_common(3) if len(m) else []
    label = ("before" if before else "after") + f" ({engine}{f', {nparts} partitions' if nparts else ''})"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| engine | rows | rules loaded / converted / matched | matches | not convertible | failed to evaluate | "
          "wall s | CPU s (this process) | peak RSS MiB (process) | largest child MiB | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    child = f"{children[0] / 2**20:.0f}" if children else "-"
    print(f"| {label} | {rows:,} | {res.rules_loaded:,} / {res.rules_converted:,} / {res.rules_matched} | {len(m):,} | "
          f"{len(res.conversion_errors)} | {len(res.evaluation_errors)} | {secs:.1f} | {cpu:.1f} | {mine:.0f} | {child} | "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} |")
    print("most frequent:", top)
    dx = "Suspicious Double Extension File Execution"
    print(f"{dx}: {int((m['title'] == dx).sum()) if len(m) else 0} matches")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--work", type=Path, required=True)
    r = sub.add_parser("replicated")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--size-mb", type=int, default=780)
    x = sub.add_parser("run")
    x.add_argument("case")
    x.add_argument("--rules", type=Path, action="append")
    x.add_argument("--engine", choices=("duckdb", "dask"), default="duckdb")
    x.add_argument("--before", action="store_true")
    x.add_argument("--workers", type=int, default=2)
    x.add_argument("--partition-rows", type=int, default=None)
    a = ap.parse_args()
    if a.cmd == "corpus":
        _collect([SHARED / "evidence", SHARED / "sigma" / "regression_data"], a.work / "case-corpus")
    elif a.cmd == "replicated":
        from evtx_throughput import replicate

        t0 = time.monotonic()
        files = replicate(a.work / "evidence", a.size_mb)
        size = sum(f.stat().st_size for f in files)
        print(f"evidence: {len(files)} EVTX files, {size / 2**20:.0f} MiB (replicated in {time.monotonic() - t0:.0f} s)")
        _collect([a.work / "evidence"], a.work / f"case-{a.size_mb}mb")
    else:
        run(a.case, a.rules or [SHARED / "sigma" / "rules" / "windows"], a.engine, a.before, a.workers, a.partition_rows)


if __name__ == "__main__":
    main()
