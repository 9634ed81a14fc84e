"""/var/log (syslog text) → timeline throughput, ours against dissect.target and plaso.  Run by hand:

    .venv/bin/python benchmarks/varlog_throughput.py [--size-mb 1024] [--work DIR] [--plaso-mb 30]

Generates (seeded, so every run reads the same bytes) a Linux OS tree ``root/`` with ``etc/hostname``,
``etc/timezone`` (Europe/Berlin: DST changes inside the logs), ``etc/os-release`` and a ``var/log`` of
year-less BSD lines: ``syslog``, ``auth.log`` (sshd accepted / failed / invalid user / disconnects,
sudo, su, CRON and pam_unix session lines), ``kern.log``, each with a rotated ``.1`` and ``.2.gz``
(``.gz`` header time set, file times set to each file's last line), about ``--size-mb`` in all
(uncompressed).  Then measures on it:

1. our parse alone (``SyslogCollector.collect``, one process, Arrow tables, no Parquet) on the
   plain ``syslog`` and ``auth.log`` files, with the column-wise bulk step and with the row-by-row
   code that was the only path before it (``bulk = False``): CPU µs per line;
2. ``forensics collect`` of the whole tree end to end, one worker (hashing, parse, Parquet, custody);
3. dissect.target's own plugins on the same tree (``Target.open(root)``, ``messages`` + ``authlog``:
   dissect has no kern.log plugin), every record iterated;
4. plaso (``log2timeline --parsers text/syslog,text/syslog_traditional --single_process``, then ``psort -o null``) on a sample
   tree of the same lines (``--plaso-mb``: plaso is slow).

Each measured step runs as its own subprocess: wall time, CPU time (user + system of it and its
children) and peak RSS; the load average before each step is printed (the VM is shared).
Figures go to stdout as a Markdown table; copy them into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
HOST = "web01"
USERS = ["root", "admin", "ubuntu", "oracle", "test", "git", "deploy", "postgres", "alice", "bob"]
UNITS = ["Session 12 of user root", "Daily apt upgrade and clean activities", "Cleanup of Temporary Directories",
         "Rotate log files", "Message of the Day", "snapd.service - Snap Daemon", "Refresh fwupd metadata and update motd"]


def _auth_line(rnd: random.Random, ips: list[str]) -> str:
    r = rnd.random()
    ip, user, pid, port = rnd.choice(ips), rnd.choice(USERS), rnd.randint(1000, 65000), rnd.randint(1024, 65535)
    if r < 0.30:
        return f"sshd[{pid}]: Failed password for {user} from {ip} port {port} ssh2"
    if r < 0.45:
        return f"sshd[{pid}]: Invalid user {user}{rnd.randint(0, 99)} from {ip} port {port}"
    if r < 0.55:
        return f"sshd[{pid}]: Accepted publickey for {user} from {ip} port {port} ssh2: RSA SHA256:{rnd.getrandbits(128):032x}"
    if r < 0.65:
        return f"sshd[{pid}]: Disconnected from invalid user {user} {ip} port {port} [preauth]"
    if r < 0.72:
        return f"sshd[{pid}]: pam_unix(sshd:session): session opened for user {user}(uid=0) by (uid=0)"
    if r < 0.80:
        return (f"sudo:   {user} : TTY=pts/{rnd.randint(0, 9)} ; PWD=/home/{user} ; USER=root ; "
                f"COMMAND=/usr/bin/systemctl restart nginx{rnd.randint(0, 9)}")
    if r < 0.83:
        return f"su[{pid}]: pam_unix(su:session): session opened for user root(uid=0) by {user}(uid=1000)"
    if r < 0.93:
        return f"CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
    return f"sshd[{pid}]: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"


def _syslog_line(rnd: random.Random, ips: list[str]) -> str:
    r = rnd.random()
    pid = rnd.randint(300, 65000)
    if r < 0.25:
        return f"systemd[1]: Started {rnd.choice(UNITS)}."
    if r < 0.35:
        return f"systemd[1]: Stopping {rnd.choice(UNITS)}..."
    if r < 0.50:
        return f"CRON[{pid}]: (root) CMD (cd / && run-parts --report /etc/cron.hourly{rnd.randint(0, 9)})"
    if r < 0.65:
        return f"kernel: [{rnd.uniform(0, 900000):.6f}] [UFW BLOCK] IN=eth0 OUT= SRC={rnd.choice(ips)} DST=10.0.0.5 PROTO=TCP DPT={rnd.randint(1, 65535)}"
    if r < 0.80:
        return f"dhclient[{pid}]: DHCPREQUEST for 10.0.0.5 on eth0 to 10.0.0.1 port 67 (xid=0x{rnd.getrandbits(32):x})"
    if r < 0.90:
        return f'rsyslogd: [origin software="rsyslogd" swVersion="8.2112.0" x-pid="{pid}"] rsyslogd was HUPed'
    return f"nginx[{pid}]: 2023/06/01 worker process {pid} exited on signal {rnd.randint(1, 15)}"


def _kern_line(rnd: random.Random, ips: list[str]) -> str:
    t = rnd.uniform(0, 900000)
    r = rnd.random()
    if r < 0.6:
        return f"kernel: [{t:.6f}] [UFW BLOCK] IN=eth0 OUT= MAC=00:16:3e:{rnd.getrandbits(24):06x} SRC={rnd.choice(ips)} DST=10.0.0.5 LEN=60 PROTO=TCP SPT={rnd.randint(1024, 65535)} DPT=22"
    if r < 0.8:
        return f"kernel: [{t:.6f}] EXT4-fs (sda1): mounted filesystem with ordered data mode. Opts: (null)"
    return f"kernel: [{t:.6f}] audit: type=1400 audit({t:.3f}:{rnd.randint(1, 999)}): apparmor=\"DENIED\" operation=\"open\""


def _write_log(path: Path, make, rnd: random.Random, ips: list[str], size: int, start: float, step: float) -> float:
    """Lines from ``start`` (seconds, local time of 2023) until ``size`` bytes; returns the last line's time."""
    import datetime as dt

    t = start
    base = dt.datetime(2023, 1, 1)
    out, written = [], 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < size:
            t += rnd.expovariate(1 / step)
            d = base + dt.timedelta(seconds=t)
            line = f"{MONTHS[d.month - 1]} {d.day:2d} {d:%H:%M:%S} {HOST} {make(rnd, ips)}\n"
            out.append(line)
            written += len(line)
            if len(out) >= 10000:
                fh.write("".join(out))
                out = []
        fh.write("".join(out))
    return t


def generate(root: Path, size_mb: int) -> None:
    import datetime as dt

    rnd = random.Random(42)
    ips = [f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}" for _ in range(5000)]
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "hostname").write_text(HOST + "\n")
    (root / "etc" / "timezone").write_text("Europe/Berlin\n")
    (root / "etc" / "os-release").write_text('NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nPRETTY_NAME="Ubuntu 22.04.3 LTS"\n')
    log = root / "var" / "log"
    log.mkdir(parents=True, exist_ok=True)
    total = size_mb << 20
    # each log: .2.gz oldest, then .1, then the current file; a year of lines from January, so that the
    # spring and autumn DST changes of Europe/Berlin fall inside them
    from zoneinfo import ZoneInfo

    for name, make, share in (("auth.log", _auth_line, 0.45), ("syslog", _syslog_line, 0.40), ("kern.log", _kern_line, 0.15)):
        size = int(total * share / 3)
        lines_per_year = size * 3 / 130
        step = 365 * 86400 / lines_per_year
        t = 0.0
        for suffix in (".2", ".1", ""):
            path = log / (name + suffix)
            t = _write_log(path, make, rnd, ips, size, t, step)
            end = (dt.datetime(2023, 1, 1) + dt.timedelta(seconds=t + 1)).replace(tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
            if suffix == ".2":
                gz = path.with_name(path.name + ".gz")
                with open(path, "rb") as src, gzip.GzipFile(gz, "wb", compresslevel=1, mtime=int(end)) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                path.unlink()
                path = gz
            os.utime(path, (end, end))


def _tree_bytes(root: Path) -> tuple[int, int]:
    """(uncompressed bytes, lines) of the tree's logs."""
    size = lines = 0
    for p in sorted((root / "var" / "log").iterdir()):
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as fh:
            while chunk := fh.read(1 << 24):
                size += len(chunk)
                lines += chunk.count(b"\n")
    return size, lines


def sample(root: Path, dest: Path, mb: int) -> None:
    """A smaller tree with the first ``mb`` MiB of each plain log's lines in the same shares (for plaso)."""
    if dest.exists():
        return
    shutil.copytree(root / "etc", dest / "etc")
    (dest / "var" / "log").mkdir(parents=True)
    plain = [p for p in (root / "var" / "log").iterdir() if p.suffix != ".gz" and not p.name.endswith(".1")]
    whole = sum(p.stat().st_size for p in plain)
    for p in plain:
        want = int((mb << 20) * p.stat().st_size / whole)
        with open(p, "rb") as fh:
            data = fh.read(want)
        q = dest / "var" / "log" / p.name
        q.write_bytes(data[: data.rfind(b"\n") + 1])
        st = p.stat()
        os.utime(q, (st.st_atime, st.st_mtime))


def measure(what: str, cmd: list[str], **kw) -> dict:
    """Run ``cmd`` under GNU time: wall, CPU (user + system of it and its children) and peak RSS of the
    step; its last stdout line, when JSON, adds figures (a "wall"/"cpu" there is the step's own, measured
    inside the process without the interpreter's start)."""
    load = os.getloadavg()[0]
    proc = subprocess.run(["/usr/bin/time", "-f", "@@time %e %U %S %M", *cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")
    wall, user, sys_, rss = proc.stderr.strip().splitlines()[-1].split()[1:]
    out = proc.stdout.strip().splitlines()
    info = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
    r = {"what": what, "wall": float(wall), "cpu": float(user) + float(sys_), "rss": int(rss) / 1024, "load": load, **info}
    print(f"{what}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, {r['rss']:.0f} MiB, load {load:.1f}, {info}", file=sys.stderr)
    return r


_PARSE = """
import json, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from collectors import Artifact, SyslogCollector
if {old!r}:  # the collector as it was at that commit (git show), in place of today's
    import importlib.util, subprocess, tempfile
    src = subprocess.run(["git", "-C", {root!r}, "show", {old!r} + ":collectors/syslog.py"], capture_output=True,
                         text=True, check=True).stdout
    path = tempfile.mkdtemp() + "/syslog_old.py"
    open(path, "w").write(src)
    spec = importlib.util.spec_from_file_location("collectors.syslog_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    SyslogCollector = mod.SyslogCollector
import pyarrow as pa
pa.array([0], type=pa.timestamp("ns", tz="UTC"))
rows = lines = 0
for name in {files!r}:
    lines += sum(1 for _ in open(name, "rb"))
t0, c0 = time.perf_counter(), time.process_time()
for name in {files!r}:
    p = Path(name)
    st = p.stat()
    c = SyslogCollector()
    c.bulk = {bulk!r}  # (no effect on the old code)
    art = Artifact("0" * 16, "/var/log/" + p.name, str(p), "0" * 64, st.st_size, tz="Europe/Berlin",
                   tz_source="evidence_config", mtime_ns=st.st_mtime_ns)
    rows += sum(t.num_rows for t in c.collect(art, batch_rows=100_000)) + sum(t.num_rows for t in c.finish())
# the parse's own time (not the interpreter's start nor the line count)
print(json.dumps({{"rows": rows, "lines": lines, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}}))
"""

_DISSECT = """
import json, sys
from dissect.target import Target
t = Target.open({root!r})
n = {{}}
for fn in ("messages", "authlog"):
    n[fn] = sum(1 for _ in getattr(t, fn)())
print(json.dumps({{"rows": sum(n.values()), **n, "os": t.os, "timezone": str(t.timezone)}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--work", default=None)
    ap.add_argument("--plaso-mb", type=int, default=30)
    ap.add_argument("--before", default="0e95b64", help="commit whose collectors/syslog.py is 'before'")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: before,parse,collect,dissect,plaso")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.work or tempfile.mkdtemp(prefix="varlog-bench-"))
    root = work / "root"
    if not (root / "var" / "log" / "syslog").exists():
        t0 = time.perf_counter()
        generate(root, args.size_mb)
        print(f"generated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    size, nlines = _tree_bytes(root)
    on_disk = sum(p.stat().st_size for p in (root / "var" / "log").iterdir())
    print(f"tree: {size / 2**20:,.0f} MiB of text ({on_disk / 2**20:,.0f} MiB on disk), {nlines:,} lines", file=sys.stderr)
    py = sys.executable
    results = []
    plain = [str(root / "var" / "log" / n) for n in ("syslog", "auth.log")]
    if "parse" not in skip:
        results.append(measure("our parse alone, bulk step (syslog + auth.log)",
                               [py, "-c", _PARSE.format(root=str(ROOT), files=plain, bulk=True, old="")]))
    if "before" not in skip:
        results.append(measure("our parse alone, today's row-by-row path (`bulk = False`)",
                               [py, "-c", _PARSE.format(root=str(ROOT), files=plain, bulk=False, old="")]))
        results.append(measure(f"our parse alone, the collector before the bulk step (commit {args.before})",
                               [py, "-c", _PARSE.format(root=str(ROOT), files=plain, bulk=False, old=args.before)]))
    if "dissect" not in skip:
        results.append(measure("dissect.target messages + authlog, whole tree",
                               [py, "-c", _DISSECT.format(root=str(root))]))
    if "plaso" not in skip:
        small = work / f"sample{args.plaso_mb}"
        sample(root, small, args.plaso_mb)
        s_size, s_lines = _tree_bytes(small)
        storage = work / "plaso.plaso"
        storage.unlink(missing_ok=True)
        bindir = Path(py).parent
        r = measure(f"plaso log2timeline --parsers text/syslog,text/syslog_traditional, {s_size / 2**20:.0f} MiB sample",
                    [str(bindir / "log2timeline"), "--status_view", "none", "--unattended", "--single_process",
                     "--parsers", "text/syslog,text/syslog_traditional", "-z", "Europe/Berlin", "--storage_file", str(storage), str(small)],
                    cwd=work)  # (plaso writes its log files into the working folder)
        r["lines"] = s_lines
        r2 = measure("plaso psort -o null", [str(bindir / "psort"), "--status_view", "none", "--unattended",
                                             "-o", "null", str(storage)], cwd=work)
        results += [r, r2]
        # ours on the same sample, for a like-for-like line
        case = work / "case-sample"
        shutil.rmtree(case, ignore_errors=True)
        r3 = measure(f"ours: forensics collect of the same {s_size / 2**20:.0f} MiB sample",
                     [str(bindir / "forensics"), "-q", "collect", str(small), "--case", str(case), "--workers", "1"])
        r3["lines"] = s_lines
        results.append(r3)
    if "collect" not in skip:
        case = work / "case"
        shutil.rmtree(case, ignore_errors=True)
        r = measure("ours: forensics collect, whole tree, 1 worker",
                    [str(Path(py).parent / "forensics"), "-q", "collect", str(root), "--case", str(case), "--workers", "1"])
        import forensics

        info = forensics.Case(case).info()
        r["rows"], r["lines"] = info["rows"], nlines
        results.append(r)

    print(f"\nInput: {size / 2**20:,.0f} MiB of year-less BSD syslog text ({on_disk / 2**20:,.0f} MiB on disk), "
          f"{nlines:,} lines; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| what | lines in | rows out | wall s | lines/s (wall) | CPU s | CPU µs/line | peak RSS | load |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in results:
        n = r.get("lines") or r.get("rows") or 0
        rows = r.get("rows", "")
        print(f"| {r['what']} | {n:,} | {rows if rows == '' else f'{rows:,}'} | {r['wall']:.1f} | "
              f"{n / r['wall']:,.0f} | {r['cpu']:.1f} | {r['cpu'] / n * 1e6 if n else 0:.1f} | {r['rss']:.0f} MiB | {r['load']:.1f} |")


if __name__ == "__main__":
    main()
