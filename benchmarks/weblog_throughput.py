"""Web access log → timeline throughput.  Run by hand:

    .venv/bin/python benchmarks/weblog_throughput.py [--lines 1000000] [--work DIR]

Generates a Combined-format access log of ``--lines`` lines (seeded, so every run reads the same
bytes: 2,000 client addresses, a mix of paths, queries, statuses and user agents, a few lines per
second) and measures, on it:

1. the parse alone: :class:`collectors.WebCollector` reading the file into Arrow tables (one
   process, no hashing, no Parquet);
2. end to end: ``forensics collect`` of the file into a fresh case (hashing before and after,
   parsing, sorted Parquet, custody), as a subprocess, with its peak RSS.

Figures go to stdout as a Markdown table; copy them into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHS = ["/", "/index.php", "/wp-login.php", "/wp-admin/admin-ajax.php", "/api/v1/users", "/static/app.js",
         "/images/logo.png", "/uploads/shell.jsp", "/cgi-bin/.%2e/.%2e/bin/sh", "/.env", "/login", "/search"]
QUERIES = ["", "", "", "?id=1", "?cmd=id", "?q=test&page=2", "?id=1%27%20or%201=1--", "?ip=10.0.0.1&port=22"]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36",
          "curl/7.68.0", "sqlmap/1.6#stable (https://sqlmap.org)", "python-requests/2.28.1", "Go-http-client/1.1",
          "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def generate(path: Path, n: int) -> None:
    import datetime as dt

    rnd = random.Random(42)
    ips = [f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}" for _ in range(2000)]
    t = dt.datetime(2022, 11, 1, 0, 0, 0)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            if rnd.random() < 0.3:
                t += dt.timedelta(seconds=1)
            ts = f"{t.day:02d}/{MONTHS[t.month - 1]}/{t.year}:{t.hour:02d}:{t.minute:02d}:{t.second:02d} +0530"
            method = "POST" if rnd.random() < 0.15 else "GET"
            status = rnd.choice((200, 200, 200, 301, 302, 304, 403, 404, 404, 500))
            user = "admin" if rnd.random() < 0.02 else "-"
            fh.write(f'{rnd.choice(ips)} - {user} [{ts}] "{method} {rnd.choice(PATHS)}{rnd.choice(QUERIES)} HTTP/1.1" '
                     f'{status} {rnd.randint(0, 50000)} "-" "{rnd.choice(AGENTS)}"\n')


def parse_only(path: Path) -> tuple[int, float, float]:
    from collectors import Artifact, WebCollector

    c = WebCollector()
    art = Artifact("0" * 16, path.name, str(path), "0" * 64, path.stat().st_size)
    import pyarrow as pa

    pa.array([0], type=pa.timestamp("ns", tz="UTC"))  # Arrow's one-time set-up, not the parser's
    t0, c0 = time.perf_counter(), time.process_time()
    rows = sum(t.num_rows for t in c.collect(art, batch_rows=50_000)) + sum(t.num_rows for t in c.finish())
    return rows, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="weblog-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "evidence" / "nginx" / "access.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if not log.exists():
        t0 = time.perf_counter()
        generate(log, args.lines)
        print(f"generated {args.lines:,} lines, {log.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    size = log.stat().st_size

    rows, secs, cpu = parse_only(log)
    results = [("`WebCollector.collect` alone, 1 process (parse + Arrow tables)", rows, secs, cpu, None)]

    case = work / "case"
    if case.exists():
        import shutil

        shutil.rmtree(case)
    exe = str(Path(sys.executable).with_name("forensics"))
    t0 = time.perf_counter()
    proc = subprocess.run([exe, "-q", "collect", str(log.parent.parent), "--case", str(case), "--workers", "1"],
                          capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss, cpu = ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime
    import forensics

    n = forensics.Case(case).info()["rows"]
    results.append(("`forensics collect` end to end, 1 worker", n, secs, cpu, rss))

    print(f"\nInput: {args.lines:,} Combined lines, {size / 2**20:.0f} MiB; {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}\n")
    print("| what | lines | wall s | lines/s (wall) | CPU s | lines/CPU-s | peak RSS |\n|---|---|---|---|---|---|---|")
    for what, n, s, c, r in results:
        print(f"| {what} | {n:,} | {s:.1f} | {n / s:,.0f} | {c:.1f} | {n / c:,.0f} | {'' if r is None else f'{r:.0f} MiB'} |")


if __name__ == "__main__":
    main()
