"""EVTX → Parquet throughput, side by side with the parsers it is built on.  Run by hand:

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/evtx_throughput.py [--size-mb 1024] [--workers N] [--work DIR]

It replicates the EVTX files of the shared corpus into a work folder until they weigh at
least ``--size-mb``.  Copy k has every record moved k days later (the record header's
written time and TimeCreated in the binary XML, chunk CRCs recomputed), so every copy's
events are distinct and the timeline really holds them all: nothing is deduplicated away.
Then, in one run on the same bytes:

1. raw iteration with the Rust ``evtx`` parser (``records_json()``), one process;
2. python-evtx on a sample of the records (it is slow);
3. end to end: ``forensics collect`` into a fresh case (hashing, parsing, Parquet, dedupe,
   custody), as a subprocess, with its peak RSS (largest process: the collector or a worker);
4. the floor: only the work the issue requires of every record, without any field, on all
   cores: MD5 + SHA-256 of the file before, the Rust parse, one zstd Parquet file of the time,
   the record number and the record's JSON (the lossless ``attrs``), SHA-256 after.  Beside it
   the custody hashing alone, and the CPU cost of reading the parser's JSON back (``orjson``,
   and DuckDB's JSON extraction of 27 fields), which any extraction of fields from this parser
   pays on top of the floor.  Together they say how far any implementation on these parts can
   get on this machine.

Besides wall-clock rates it reports CPU time (user + system) per record, of the raw iteration's
process and of the collector with its workers: on a shared machine the wall-clock ratio moves
with the load, the CPU cost per record much less.

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
sys.path.insert(0, str(ROOT))
EVIDENCE = Path(os.environ.get("FORENSICS_EVIDENCE", ROOT.parent / "shared" / "evidence"))


DAY = 864_000_000_000  # one day in FILETIME units (100 ns)


def shifted(data: bytes, days: int) -> bytes:
    """The EVTX file with every record ``days`` later (written time and TimeCreated)."""
    import struct
    import zlib

    from collectors.evtx_format import CHUNK_SIZE, HEADER_BLOCK, created_filetime_offset, scan
    import io

    if days == 0:
        return data
    buf = bytearray(data)
    sc = scan(io.BytesIO(data))
    for fr in sc.frames:
        struct.pack_into("<Q", buf, fr.offset + 16, fr.written + days * DAY)
        pos = created_filetime_offset(data, fr.offset, HEADER_BLOCK + fr.chunk * CHUNK_SIZE)
        if pos is not None:
            (ft,) = struct.unpack_from("<Q", data, pos)
            struct.pack_into("<Q", buf, pos, ft + days * DAY)
    for ci in range(sc.chunks_in_file + len(sc.bad_magic_chunks)):
        base = HEADER_BLOCK + ci * CHUNK_SIZE
        chunk = buf[base:base + CHUNK_SIZE]
        if len(chunk) < CHUNK_SIZE or chunk[:8] != b"ElfChnk\x00":
            continue
        (free,) = struct.unpack_from("<I", chunk, 48)
        if 512 <= free <= CHUNK_SIZE:
            struct.pack_into("<I", buf, base + 52, zlib.crc32(bytes(buf[base + 512:base + free])))
        struct.pack_into("<I", buf, base + 124, zlib.crc32(bytes(buf[base:base + 120]) + bytes(buf[base + 128:base + 512])))
    return bytes(buf)


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
                dst.write_bytes(shifted(f.read_bytes(), i))
            out.append(dst)
            total += dst.stat().st_size
        i += 1
    return out


def raw_evtx(files: list[Path]) -> tuple[int, float, float]:
    import evtx

    n = 0
    t = time.perf_counter()
    cpu = time.process_time()
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
    return n, time.perf_counter() - t, time.process_time() - cpu


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


def end_to_end(data: Path, case: Path, workers: int | None) -> tuple[str, float, float, float]:
    cmd = [sys.executable, "-m", "forensics", "-v", "collect", str(data), "--case", str(case)]
    if workers:
        cmd += ["--workers", str(workers)]
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu = ru.ru_maxrss, ru.ru_utime + ru.ru_stime
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode:
        sys.exit(r.stderr)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # the collector and its workers (user + system time)
    peak, cpu = max(before, ru.ru_maxrss) / 1024, ru.ru_utime + ru.ru_stime - cpu
    summary = [line for line in r.stdout.splitlines() if "records read" in line][0]
    phases = [line for line in r.stderr.splitlines() if "collect phases" in line]
    return summary + ("\n  " + phases[0].split("INFO ")[-1] if phases else ""), elapsed, peak, cpu


def _hash(path: Path, algos: tuple[str, ...]) -> None:
    import hashlib

    hs = [hashlib.new(a) for a in algos]
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            for h in hs:
                h.update(block)


def _floor_one(job: tuple[int, Path, Path]) -> int:
    import evtx
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    i, path, out = job
    _hash(path, ("md5", "sha256"))
    numbers, times, datas = [], [], []
    it = evtx.PyEvtxParser(str(path), number_of_threads=1).records_json()
    while True:
        try:
            r = next(it)
        except StopIteration:
            break
        except Exception:
            continue
        numbers.append(r["event_record_id"])
        times.append(r["timestamp"])
        datas.append(r["data"])
    ts = pc.strptime(pc.utf8_slice_codeunits(pa.array(times, pa.string()), 0, 19), format="%Y-%m-%dT%H:%M:%S", unit="us")
    table = pa.table({"timestamp": ts, "record": pa.array(numbers, pa.uint64()), "attrs": pa.array(datas, pa.string())})
    pq.write_table(table.sort_by("timestamp"), out / f"{i}.parquet", compression="zstd")
    _hash(path, ("sha256",))
    return len(numbers)


def floor(files: list[Path], work: Path) -> tuple[int, float, float]:
    """The required work without fields, on all cores: (records, seconds, CPU seconds)."""
    from concurrent.futures import ProcessPoolExecutor

    out = work / "floor"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime
    t = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as ex:
        n = sum(ex.map(_floor_one, [(i, f, out) for i, f in enumerate(files)], chunksize=4))
    elapsed = time.perf_counter() - t
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(out, ignore_errors=True)
    return n, elapsed, ru.ru_utime + ru.ru_stime - cpu


def hashing(files: list[Path]) -> float:
    """CPU seconds of the custody hashing alone (MD5 + SHA-256 before, SHA-256 after), one process."""
    cpu = time.process_time()
    for f in files:
        _hash(f, ("md5", "sha256"))
        _hash(f, ("sha256",))
    return time.process_time() - cpu


def json_reread(files: list[Path], limit: int = 100_000) -> tuple[int, float, float]:
    """CPU us per record of reading the parser's JSON back: orjson.loads, and DuckDB extracting 27 fields."""
    import duckdb
    import evtx
    import orjson
    import pyarrow as pa

    datas: list[str] = []
    for f in files:
        it = evtx.PyEvtxParser(str(f)).records_json()
        while len(datas) < limit:
            try:
                datas.append(next(it)["data"])
            except StopIteration:
                break
            except Exception:
                continue
        if len(datas) >= limit:
            break
    cpu = time.process_time()
    for d in datas:
        orjson.loads(d)
    t_orjson = (time.process_time() - cpu) / len(datas) * 1e6
    system = ["Provider/#attributes/Name", "EventID", "TimeCreated/#attributes/SystemTime", "EventRecordID",
              "Channel", "Computer", "Security/#attributes/UserID"]
    data = ["SubjectUserName", "SubjectDomainName", "TargetUserName", "TargetDomainName", "LogonType", "IpAddress",
            "WorkstationName", "NewProcessName", "CommandLine", "ParentProcessName", "ServiceName", "ImagePath",
            "Image", "ParentImage", "DestinationIp", "DestinationPort", "User", "ProcessName", "TaskName", "ShareName"]
    paths = [f"/Event/System/{p}" for p in system] + [f"/Event/EventData/{p}" for p in data]
    con = duckdb.connect()
    con.execute("SET threads=1")
    con.register("t", pa.table({"data": pa.array(datas, pa.string())}))
    cpu = time.process_time()
    con.sql(f"SELECT json_extract_string(data, {paths!r}) FROM t").to_arrow_table()
    t_duck = (time.process_time() - cpu) / len(datas) * 1e6
    return len(datas), t_orjson, t_duck


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--sample", type=int, default=3000, help="records for python-evtx")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    load = os.getloadavg()  # the VM may be shared: wall-clock figures move with the load, CPU time less
    work = args.work or Path(tempfile.mkdtemp(prefix="forensics-bench-"))
    data = work / "evtx"
    files = replicate(data, args.size_mb)
    size = sum(f.stat().st_size for f in files)

    n_raw, t_raw, cpu_raw = raw_evtx(files)
    n_py, t_py = python_evtx(files, args.sample)
    case = work / "case"
    shutil.rmtree(case, ignore_errors=True)
    summary, t_e2e, peak, cpu_e2e = end_to_end(data, case, args.workers)
    n_e2e = int(summary.split(" records read")[0].split()[-1])
    n_floor, t_floor, cpu_floor = floor(files, work)
    cpu_hash = hashing(files)
    n_json, us_orjson, us_duck = json_reread(files)

    raw_rate, e2e_rate = n_raw / t_raw, n_e2e / t_e2e
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"{platform.platform()}")
    print(f"input: {len(files)} files, {size / 2**20:.0f} MiB")
    print(f"forensics: {summary}\n")
    print(f"load average before the run: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min); after: "
          f"{os.getloadavg()[0]:.2f} (1 min)")
    print("| what | records | seconds | records/s | vs raw evtx | CPU s | CPU us/record | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| raw `evtx` records_json(), 1 process | {n_raw} | {t_raw:.1f} | {raw_rate:,.0f} | 1.00x | "
          f"{cpu_raw:.1f} | {cpu_raw / n_raw * 1e6:.1f} | |")
    print(f"| python-evtx, sample | {n_py} | {t_py:.1f} | {n_py / t_py:,.0f} | {n_py / t_py / raw_rate:.4f}x | | | |")
    print(f"| forensics collect end to end ({args.workers or os.cpu_count()} workers) | {n_e2e} | {t_e2e:.1f} | "
          f"{e2e_rate:,.0f} | {e2e_rate / raw_rate:.2f}x | {cpu_e2e:.1f} | {cpu_e2e / n_e2e * 1e6:.1f} | {peak:.0f} MiB |")
    print(f"| floor: hashes + Rust parse + Parquet of the record JSON, no fields ({os.cpu_count()} processes) | "
          f"{n_floor} | {t_floor:.1f} | {n_floor / t_floor:,.0f} | {n_floor / t_floor / raw_rate:.2f}x | "
          f"{cpu_floor:.1f} | {cpu_floor / n_floor * 1e6:.1f} | |")
    print(f"| custody hashing alone (MD5 + SHA-256 before, SHA-256 after), 1 process | | | | | {cpu_hash:.1f} | "
          f"{cpu_hash / n_raw * 1e6:.1f} | |")
    print(f"| reading the parser's JSON back: orjson.loads / DuckDB, 27 fields (sample) | {n_json} | | | | | "
          f"{us_orjson:.1f} / {us_duck:.1f} | |")
    budget = (os.cpu_count() or 1) / (0.5 * raw_rate) * 1e6
    print(f"\nCPU per record that 0.5x the raw rate allows on {os.cpu_count()} cores: {budget:.1f} us")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
