"""Queries on a large generated case (run by hand):

    .venv/bin/python benchmarks/query_scale.py [--rows 10000000] [--hosts 25] [--work DIR]

Generates a case of ``--rows`` timeline rows spread over ``--hosts`` hosts and 30 days
(written through the case store in 1 M-row parts, so it is a real case: sorted Parquet,
custody log), then times the investigation API on it: a one-hour window for one host, a
search over every message, ``len()``, ``hosts()``, and ``story()``, with the peak RSS of
this process.  Figures go to benchmarks/RESULTS.md.

The rows are synthetic (the generated-evidence sample case is issue #7): a mix of logons,
failed logons, service installs, process executions with a few shadow-copy deletions, and
background service-state noise, each with a one-line message and a small attrs document.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import forensics  # noqa: E402
from timeline.schema import SCHEMA  # noqa: E402
from timeline.store import CaseStore, write_parquet  # noqa: E402

START = np.datetime64("2022-11-01T00:00:00", "ns").astype(np.int64)
SPAN = 30 * 86400 * 10**9
KINDS = [  # (event id, channel, share, message prefix)
    (7036, "System", 0.70, "7036 service Windows Update entered the running state"),
    (4624, "Security", 0.15, "4624 logon type 3 (network) by CORP\\svc_backup from 10.0.0.9"),
    (4625, "Security", 0.04, "4625 failed logon type 3 (network) by CORP\\admin from 203.0.113.7"),
    (4688, "Security", 0.10, "4688 process C:\\Windows\\System32\\cmd.exe started by CORP\\admin"),
    (7045, "System", 0.01, "7045 service PSEXESVC installed: %SystemRoot%\\PSEXESVC.exe"),
]


def part(rng: np.random.Generator, n: int, offset: int, hosts: list[str]) -> pa.Table:
    ts = np.sort(rng.integers(START, START + SPAN, n))
    kind = rng.choice(len(KINDS), n, p=[k[2] for k in KINDS])
    host_idx = rng.integers(0, len(hosts), n)
    host = pa.array(np.array(hosts, dtype=object)[host_idx], pa.string())
    eid = pa.array(np.array([k[0] for k in KINDS], dtype=np.int32)[kind])
    channel = pa.array(np.array([k[1] for k in KINDS], dtype=object)[kind], pa.string())
    base_msg = pa.array(np.array([k[3] for k in KINDS], dtype=object)[kind], pa.string())
    seq = pa.array(np.arange(offset, offset + n, dtype=np.int64))
    cmd = pc.if_else(pc.equal(eid, 4688),
                     pc.if_else(pc.equal(pc.bit_wise_and(seq, 65535), 7), "vssadmin delete shadows /all /quiet",
                                "cmd.exe /c dir"), pa.scalar(None, pa.string()))
    message = pc.binary_join_element_wise(base_msg, " #", pc.cast(seq, pa.string()), pc.coalesce(pc.binary_join_element_wise(": ", cmd, ""), ""), "")
    hexes = pc.utf8_lpad(pc.cast(seq, pa.string()), 32, "0")  # unique 32-character event hashes
    n_null = pa.nulls(n, pa.string())
    cols = {
        "timestamp": pa.array(ts, pa.timestamp("ns", tz="UTC")), "timestamp_desc": pa.repeat("Event Logged", n),
        "host": host, "source": pa.repeat("EVTX", n), "artifact": pc.binary_join_element_wise("evtx:", channel, ""),
        "event_id": eid, "channel": channel, "provider": pa.repeat("generated", n),
        "user": pc.if_else(pc.is_in(eid, pa.array([4624, 4625, 4688], pa.int32())), "CORP\\admin", n_null),
        "target_user": n_null, "logon_type": pc.if_else(pc.is_in(eid, pa.array([4624, 4625], pa.int32())), 3, pa.nulls(n, pa.int32())),
        "src_ip": pc.if_else(pc.equal(eid, 4625), "203.0.113.7", n_null), "src_host": n_null, "dst_ip": n_null,
        "dst_port": pa.nulls(n, pa.int32()), "process": n_null, "parent_process": n_null, "command_line": cmd,
        "path": pc.if_else(pc.equal(eid, 7045), "%SystemRoot%\\PSEXESVC.exe", n_null),
        "service_name": pc.if_else(pc.equal(eid, 7045), "PSEXESVC", n_null), "message": message,
        "attrs": pa.repeat('{"Event":{"System":{"Provider":"generated"}}}', n),
        "tags": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string())),
        "tz_source": pa.repeat("source_utc", n), "evidence_id": pa.repeat("generated", n),
        "evidence_path": pc.binary_join_element_wise("Windows/System32/winevt/Logs/", channel, ".evtx", ""),
        "record_ref": pc.binary_join_element_wise("record=", pc.cast(seq, pa.string()), ""),
        "parser": pa.repeat("generated", n), "event_hash": hexes,
    }
    return pa.Table.from_arrays([pa.array(cols[f.name], f.type) if not isinstance(cols[f.name], (pa.Array, pa.ChunkedArray))
                                 else cols[f.name].cast(f.type) for f in SCHEMA], schema=SCHEMA)


def generate(case_dir: Path, rows: int, hosts: int, seed: int = 7) -> None:
    """A fresh case at ``case_dir`` holding ``rows`` generated rows over ``hosts`` hosts (zone Asia/Kolkata)."""
    shutil.rmtree(case_dir, ignore_errors=True)
    store = CaseStore.create(case_dir, tz="Asia/Kolkata")
    rng = np.random.default_rng(seed)
    names = [f"HOSP-SRV-{i:02d}" for i in range(hosts)]
    t = time.perf_counter()
    staging = store.staging_dir("generated")
    parts = []
    for i, off in enumerate(range(0, rows, 1_000_000)):
        p = staging / f"tl-{i:04d}.parquet"
        write_parquet(part(rng, min(1_000_000, rows - off), off, names), p)
        parts.append(p)
    store.commit("generated", parts, [])
    print(f"generated {rows} rows over {hosts} hosts in {time.perf_counter() - t:.1f} s "
          f"({sum(f.stat().st_size for f in store.files()) / 2**20:.0f} MiB of Parquet)")


def timed(label: str, fn):
    t = time.perf_counter()
    out = fn()
    print(f"| {label} | {time.perf_counter() - t:.2f} s | {out} |")
    return out


def queries(case_dir: Path) -> None:
    tl = forensics.open(case_dir)
    print("| query | time | result |")
    print("|---|---|---|")
    timed("len(timeline)", lambda: len(tl))
    timed("hosts()", lambda: len(tl.hosts()))
    timed("one host, one hour (around 2022-11-23 07:00 IST, to_pandas)",
          lambda: len(tl.where(host="HOSP-SRV-03").around("2022-11-23 07:00", before="30min", after="30min").to_pandas()))
    timed("search('vssadmin') over every message and attrs", lambda: len(tl.search("vssadmin")))
    timed("search('203.0.113.7') count", lambda: len(tl.search("203.0.113.7")))
    timed("story()", lambda: len(tl.story()))
    from export_scale import peak_rss_mib  # VmHWM: ru_maxrss would include the generator's peak (inherited)

    print(f"\npeak RSS of the query process: {peak_rss_mib():.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--hosts", type=int, default=25)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--query-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.query_only:
        queries(args.query_only)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="forensics-query-"))
    case_dir = work / "case"
    generate(case_dir, args.rows, args.hosts)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    sys.stdout.flush()
    # the queries in a fresh process: its peak memory is the investigation's, not the generator's
    import subprocess

    subprocess.run([sys.executable, __file__, "--query-only", str(case_dir)], check=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
