"""Loose web logs with a host: the cost of deciding hosts (``collectors.hosts.stamp_hosts``) and of
``web_attacks`` over a large case.  Run by hand:

    .venv/bin/python benchmarks/web_hosts.py [--lines 1000000] [--work DIR]

Generates the seeded Combined-format access log of ``benchmarks/weblog_throughput.py`` (``--lines`` lines)
under ``WORK/evidence/web01/`` and measures:

1. ``stamp_hosts`` alone on the collector's tables (rows per second);
2. ``Case.collect`` of the folder (the host comes from the folder's name), wall and CPU seconds;
3. ``web_attacks`` over the case (a Timeline: DuckDB narrows to the web rows), wall seconds, peak RSS.

Figures go to stdout; copy them into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    from weblog_throughput import generate

    import forensics
    from collectors import WebCollector
    from collectors.base import Artifact
    from collectors.hosts import stamp_hosts

    work = Path(args.work or tempfile.mkdtemp(prefix="web-hosts-"))
    log = work / "evidence" / "web01" / "access.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if not log.exists():
        generate(log, args.lines)
    print(f"input: {args.lines:,} lines, {log.stat().st_size / 2**20:.0f} MiB")

    c = WebCollector()
    art = Artifact("e", "web01/access.log", str(log), "0" * 64, log.stat().st_size, host="web01", host_source="folder")
    tables = list(c.collect(art, batch_rows=50_000)) + list(c.finish())
    t0 = time.process_time()
    rows = sum(stamp_hosts(t, lambda *_: ("web01", "folder")).num_rows for t in tables)
    cpu = time.process_time() - t0
    print(f"stamp_hosts: {rows:,} rows in {cpu:.2f} CPU s ({rows / cpu:,.0f} rows/CPU-s)")

    case_dir = work / "case"
    t0, c0 = time.monotonic(), time.process_time()
    forensics.Case(case_dir, create=True).collect([work / "evidence"], workers=1)
    print(f"collect: {time.monotonic() - t0:.1f} s wall, {time.process_time() - c0:.1f} CPU s (this process)")
    tl = forensics.open(case_dir)
    print("hosts:", tl.hosts(), "sources:", set(tl.sql("SELECT DISTINCT json_extract_string(attrs, '$.host_source') AS s "
                                                           "FROM timeline")["s"]))
    t0 = time.monotonic()
    wa = tl.web_attacks()
    print(f"web_attacks: {time.monotonic() - t0:.1f} s wall, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(json.dumps(wa.groupby("finding").size().to_dict()))


if __name__ == "__main__":
    main()
