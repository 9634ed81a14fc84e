"""Collection throughput with 1 and 2 local workers and through a 2-worker Dask cluster on loopback,
with the peak RSS of every process (collector and workers).  Run by hand:

    .venv/bin/pip install -e '.[bench,dask]'
    .venv/bin/python benchmarks/scale_out.py [--size-mb 5120] [--work DIR] [--runs local1,local2,dask2]

The evidence is the shared corpus's EVTX replicated to ``--size-mb`` with every copy moved in time
(see evtx_throughput.py), so no event is deduplicated away.  Figures go to stdout as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class PeakRSS:
    """Samples the RSS of this process and all its descendants every 0.2 s; keeps each pid's peak."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for p in [self._me] + self._me.children(recursive=True):
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[1:3])[:60]
                except psutil.Error:
                    continue
                if rss > self.peaks.get(p.pid, ("", 0))[1]:
                    self.peaks[p.pid] = (name, rss)
            time.sleep(0.2)

    def __enter__(self) -> "PeakRSS":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def run(kind: str, evidence: list[Path], work: Path) -> dict:
    from forensics import Case

    case_dir = work / f"case-{kind}"
    shutil.rmtree(case_dir, ignore_errors=True)
    case = Case(case_dir, create=True)
    with PeakRSS() as rss:
        t0 = time.monotonic()
        if kind.startswith("dask"):
            import distributed

            n = int(kind[4:])
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                          dashboard_address=None) as cluster, distributed.Client(cluster) as client:
                t0 = time.monotonic()  # cluster start-up not counted
                rep = case.collect(evidence, client=client)
        else:
            rep = case.collect(evidence, workers=int(kind[5:]))
        secs = time.monotonic() - t0
    me = os.getpid()
    workers = sorted((rss for pid, (name, rss) in rss.peaks.items() if pid != me), reverse=True)
    return {"kind": kind, "records": rep.records_read, "rows": rep.rows_written, "seconds": secs,
            "rate": rep.records_read / secs, "collector_mib": rss.peaks[me][1] / 2**20,
            "worker_mib": (workers[0] / 2**20) if workers else None, "units": len(case.store.commits())}


def main() -> None:
    from evtx_throughput import replicate

    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=5120)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--runs", default="local1,local2,dask2")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="forensics-scale-"))
    t0 = time.monotonic()
    files = replicate(work / "evidence", a.size_mb)
    size = sum(f.stat().st_size for f in files)
    print(f"evidence: {len(files)} EVTX files, {size / 2**30:.2f} GiB (replicated in {time.monotonic() - t0:.0f} s)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| run | records | rows | seconds | records/s | collector peak RSS MiB | largest worker peak RSS MiB | units |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in a.runs.split(","):
        r = run(kind, [work / "evidence"], work)
        w = f"{r['worker_mib']:.0f}" if r["worker_mib"] is not None else "(inline)"
        print(f"| {kind} | {r['records']:,} | {r['rows']:,} | {r['seconds']:.0f} | {r['rate']:,.0f} | "
              f"{r['collector_mib']:.0f} | {w} | {r['units']} |", flush=True)
        shutil.rmtree(work / f"case-{kind}", ignore_errors=True)


if __name__ == "__main__":
    main()
