"""A case: evidence in, a verified Parquet super-timeline out.

:meth:`Case.collect` is the whole job for a set of evidence paths:

1. resolve each evidence item (a file or a folder) to the artifacts the registry recognises;
2. hash every artifact (SHA-256 and MD5, read-only, streamed) before anything parses it;
3. parse the artifacts in a process pool; each worker writes sorted Parquet parts to the run's
   staging folder (bounded memory: one batch at a time);
4. re-hash every artifact (SHA-256) and refuse to commit if any changed;
5. commit: drop events the case already holds, then one custody entry lists every file written
   with its hash, every evidence file with its hashes, the tool versions and the counts.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from collectors import REGISTRY, Artifact, by_name, collector_for
from timeline.custody import FileHashes, hash_file, verify_chain
from timeline.schema import iso_ns
from timeline.errors import EvidenceChanged, EvidenceNotFound, EvidenceUnreadable, UnknownFormat
from timeline.store import (
    DATA_DIRS,
    PROBLEMS_DIR,
    PROBLEMS_SCHEMA,
    SIGHTINGS_DIR,
    SIGHTINGS_SCHEMA,
    STAGING_DIR,
    TIMELINE_DIR,
    CaseStore,
    file_sha256,
    new_run_id,
    write_parquet,
)

__all__ = ["Case", "CollectReport", "VerifyReport"]

log = logging.getLogger(__name__)

BATCH_ROWS = 50_000  # rows per batch and part: bounds a worker's memory (~0.5 GB worst case)


def _v(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def tool_versions() -> dict[str, str]:
    return {
        "forensics": _v("forensics"),
        "python": platform.python_version(),
        "evtx": _v("evtx"),
        "dissect.eventlog": _v("dissect.eventlog"),
        "python-evtx": _v("python-evtx"),
        "pyarrow": pa.__version__,
    }


@dataclass
class _Item:
    path: Path  # as given, absolute
    files: list[tuple[str, Path, str]]  # (path inside the evidence, real path, collector name)
    unrecognised: list[str]
    hashes: dict[str, FileHashes] = field(default_factory=dict)
    evidence_id: str = ""


@dataclass
class CollectReport:
    run_id: str
    evidence: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    records_read: int
    rows_written: int
    duplicates_dropped: int
    errors: int
    warnings: int
    skipped: list[str]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{len(self.artifacts)} artifact(s) from {len(self.evidence)} evidence item(s): "
            f"{self.records_read} records read, {self.rows_written} rows written, "
            f"{self.duplicates_dropped} duplicates merged, {self.errors} records lost (errors), "
            f"{self.warnings} warnings, {len(self.skipped)} artifact(s) already collected, {self.seconds:.1f} s"
        )


@dataclass
class VerifyReport:
    problems: list[str]
    notes: list[str]
    files_checked: int
    evidence_checked: int
    custody_entries: int
    head: str
    exports_checked: int = 0  # exports and reports still present, re-hashed

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------------
# worker side (runs in a pool process; module-level so it pickles)
# ---------------------------------------------------------------------------------------------


def _collect_bin(collector: str, engine: str | None, artifacts: list[Artifact], staging: str, prefix: str,
                 batch_rows: int, threads: int) -> dict[str, Any]:
    """Read a bin of artifacts with one collector; write sorted timeline parts and their sightings."""
    cls = by_name(collector)
    c = cls(engine=engine, threads=threads)
    parts: list[str] = []
    others: list[str] = []
    failures: dict[tuple[str, str], str] = {}

    seen: set[str] = set()  # events this bin already wrote: a repeat is only a sighting
    dropped = 0

    def write(table: pa.Table) -> None:
        nonlocal dropped
        if not table.num_rows:
            return
        n = len(parts)
        sp = Path(staging) / f"sightings-{prefix}-{n:04d}.parquet"
        write_parquet(table.select(SIGHTINGS_SCHEMA.names).cast(SIGHTINGS_SCHEMA), sp)
        others.append(str(sp))
        keep = []
        for h in table.column("event_hash").to_pylist():
            keep.append(h not in seen)
            seen.add(h)
        if not all(keep):
            dropped += keep.count(False)
            table = table.filter(pa.array(keep))
        if table.num_rows:
            tl = Path(staging) / f"tl-{prefix}-{n:04d}.parquet"
            write_parquet(table, tl)
            parts.append(str(tl))

    # Rows are acyclic (strings, tuples, dicts freed by reference counting); the cycle collector
    # would only re-traverse the growing batch again and again (measured: 3x slower batches).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for art in artifacts:
            try:
                for table in c.collect(art, batch_rows=batch_rows):
                    write(table)
            except Exception as exc:  # a corrupt file skips that file, not the run
                log.warning("%s: %s", art.evidence_path, exc)
                failures[art.key] = f"{type(exc).__name__}: {exc}"
        for table in c.finish():
            write(table)
    finally:
        if gc_was_enabled:
            gc.enable()

    problems: list[dict[str, Any]] = []
    reports = []
    for art in artifacts:
        rep = c.report(art)
        base = {"evidence_id": art.evidence_id, "evidence_path": art.evidence_path, "parser": collector}
        problems += [{"severity": "error", **base, **e.as_dict()} for e in rep.errors]
        problems += [{"severity": "warning", **base, **w.as_dict()} for w in rep.warnings]
        failure = failures.get(art.key)
        if failure is not None:
            problems.append({"severity": "error", **base, "record_ref": None, "kind": "file_failed",
                             "message": failure, "count": 1})
        rows = rep.stats.get("rows", 0)
        lost = sum(e.count for e in rep.errors) + (1 if failure else 0)
        reports.append({
            "evidence_id": art.evidence_id, "evidence_path": art.evidence_path, "sha256": art.sha256,
            "collector": collector, "engine": engine or cls.engines[0], "rows": rows, "lost": lost,
            "records_read": rows + lost, "warnings": len(rep.warnings), "failed": failure, "stats": dict(rep.stats),
        })
    return {"parts": parts, "others": others, "problems": problems, "artifacts": reports, "dropped": dropped}


def _bins(tasks: list[tuple[str, str, Artifact]], workers: int, bin_bytes: int = 32 << 20) -> list[list[tuple[str, str, Artifact]]]:
    """Group artifacts (same collector and engine) into bins: few enough that small files share a batch,
    enough that every worker has work.  Largest first into the lightest bin."""
    out = []
    groups: dict[tuple[str, str], list] = {}
    for t in tasks:
        groups.setdefault((t[0], t[1]), []).append(t)
    for group in groups.values():
        total = sum(t[2].size for t in group)
        n = min(len(group), max(1, min(workers * 4, -(-total // bin_bytes))))
        bins: list[list] = [[] for _ in range(n)]
        loads = [0] * n
        for t in sorted(group, key=lambda t: -t[2].size):
            i = loads.index(min(loads))
            bins[i].append(t)
            loads[i] += t[2].size
        out += [b for b in bins if b]
    return out


# ---------------------------------------------------------------------------------------------


class Case:
    """A case directory: collect evidence into it, describe it, verify it."""

    def __init__(self, path: str | os.PathLike, create: bool = False, tz: str | None = None):
        self.path = Path(path)
        self.store = CaseStore.open(self.path, create=create, tz=tz)

    # --- collect -------------------------------------------------------------------------------

    def collect(
        self,
        evidence: Iterable[str | os.PathLike],
        engine: str | None = None,
        workers: int | None = None,
        progress: Callable[[int, int, int], None] | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> CollectReport:
        t0 = time.monotonic()
        items = [_resolve(Path(p)) for p in evidence]
        if not items:
            raise EvidenceNotFound("no evidence given")
        with self.store.lock():
            self.store.recover()

        # 1. hash before (threads: hashlib releases the GIL; one file per thread when there are enough files)
        jobs = [(it, rel, real) for it in items for rel, real, _ in it.files]
        hash_threads = max(1, min(4, os.cpu_count() or 1))
        split = len(jobs) < hash_threads  # few files: MD5 and SHA-256 of each file in two threads
        with ThreadPoolExecutor(max_workers=hash_threads) as pool:
            for (it, rel, _), h in zip(jobs, pool.map(lambda j: hash_file(j[2], parallel=split), jobs)):
                it.hashes[rel] = h
        for it in items:
            manifest = "\n".join(f"{rel}\t{it.hashes[rel].sha256}" for rel, _, _ in sorted(it.files))
            it.evidence_id = hashlib.sha256(manifest.encode()).hexdigest()[:16]

        phases = {"hash_before": time.monotonic() - t0}
        # 2. what is left to do
        done = self.store.collected_artifacts()
        tasks, skipped = [], []
        for it in items:
            for rel, real, coll in it.files:
                cls = by_name(coll)
                eng = engine if engine is not None else cls.engines[0]
                if engine is not None and engine not in cls.engines:
                    raise UnknownFormat(f"engine {engine!r} does not read {coll} artifacts ({', '.join(cls.engines)})")
                art = Artifact(it.evidence_id, rel, str(real), it.hashes[rel].sha256, it.hashes[rel].size)
                if (it.evidence_id, rel, art.sha256, eng) in done:
                    skipped.append(f"{it.evidence_id}:{rel}")
                    continue
                tasks.append((coll, eng, art))
        # 3. parse: bins of artifacts in a process pool (inline when there is one bin)
        run_id = new_run_id()
        staging = self.store.staging_dir(run_id)
        n_workers = max(1, workers or os.cpu_count() or 1)
        bins = _bins(tasks, n_workers)
        n_workers = min(n_workers, max(1, len(bins)))
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        args = [(b[0][0], b[0][1], [t[2] for t in b], str(staging), f"{i:05d}", batch_rows, threads)
                for i, b in enumerate(bins)]
        results = []
        files_done = rows_so_far = 0
        total_files = len(tasks)
        try:
            if n_workers == 1:
                for a in args:
                    results.append(_collect_bin(*a))
                    files_done += len(a[2])
                    rows_so_far += sum(r["rows"] for r in results[-1]["artifacts"])
                    if progress:
                        progress(files_done, total_files, rows_so_far)
            else:
                with ProcessPoolExecutor(max_workers=n_workers, mp_context=get_context("spawn")) as pool:
                    futures = {pool.submit(_collect_bin, *a): len(a[2]) for a in args}
                    for fut in as_completed(futures):
                        results.append(fut.result())
                        files_done += futures[fut]
                        rows_so_far += sum(r["rows"] for r in results[-1]["artifacts"])
                        if progress:
                            progress(files_done, total_files, rows_so_far)
        except BaseException as exc:
            self.store.abort(run_id, f"collection interrupted: {type(exc).__name__}: {exc}")
            raise
        results.sort(key=lambda r: r["parts"][0] if r["parts"] else "~")

        phases["parse"] = time.monotonic() - t0 - sum(phases.values())
        # 4. hash after: the evidence must not have changed while we read it
        changed = []
        with ThreadPoolExecutor(max_workers=hash_threads) as pool:
            after = list(pool.map(lambda j: hash_file(j[2], md5=False), jobs))
        for (it, rel, real), h in zip(jobs, after):
            if h.sha256 != it.hashes[rel].sha256:
                changed.append(f"{real}: sha256 before {it.hashes[rel].sha256}, after {h.sha256}")
        evidence_entry = [
            {
                "evidence_id": it.evidence_id,
                "path": str(it.path),
                "files": [
                    {"path": rel, "real_path": str(real), **it.hashes[rel].as_dict(), "sha256_after": h.sha256}
                    for (jit, rel, real), h in zip(jobs, after) if jit is it
                ],
                "unrecognised": it.unrecognised,
            }
            for it in items
        ]
        if changed:
            self.store.abort(run_id, "evidence changed during collection", evidence=evidence_entry, changed=changed)
            raise EvidenceChanged("evidence changed while it was being read; nothing committed:\n  " + "\n  ".join(changed))

        phases["hash_after"] = time.monotonic() - t0 - sum(phases.values())
        # 5. commit
        problems = [p for r in results for p in r["problems"]]
        others = [Path(p) for r in results for p in r["others"]]
        if problems:
            pp = staging / f"problems-{run_id}.parquet"
            write_parquet(pa.Table.from_pylist(problems, schema=PROBLEMS_SCHEMA), pp, sort=False)
            others.append(pp)
        artifacts = sorted((a for r in results for a in r["artifacts"]), key=lambda a: (a["evidence_id"], a["evidence_path"]))
        errors = sum(p["count"] for p in problems if p["severity"] == "error")
        warnings = sum(p["count"] for p in problems if p["severity"] == "warning")
        records_read = sum(a["records_read"] for a in artifacts)
        entry = self.store.commit(
            run_id,
            [Path(p) for r in results for p in r["parts"]],
            others,
            tool=tool_versions(),
            engine=engine,
            evidence=evidence_entry,
            artifacts=artifacts,
            skipped=skipped,
            records_read=records_read,
            errors=errors,
            warnings=warnings,
            dropped_in_workers=sum(r["dropped"] for r in results),
        )
        phases["commit"] = time.monotonic() - t0 - sum(phases.values())
        log.info("collect phases (s): %s", {k: round(v, 2) for k, v in phases.items()})
        return CollectReport(
            phases=phases,
            run_id=run_id, evidence=evidence_entry, artifacts=artifacts, records_read=records_read,
            rows_written=entry["rows_written"], duplicates_dropped=entry["duplicates_dropped"], errors=errors,
            warnings=warnings, skipped=skipped, seconds=time.monotonic() - t0,
        )

    # --- read ------------------------------------------------------------------------------------

    @staticmethod
    def _read(files: list[Path], columns: list[str] | None = None) -> pa.Table:
        import pyarrow.dataset as ds  # imports pandas: only when reading, never in collection workers

        return ds.dataset([str(f) for f in files], format="parquet").to_table(columns=columns)

    def timeline(self, columns: list[str] | None = None) -> pa.Table:
        """The whole timeline as one Arrow table, sorted by time (small cases; see issue 5 for lazy reads)."""
        files = self.store.files(TIMELINE_DIR)
        if not files:
            from timeline.schema import empty_table

            t = empty_table()
            return t.select(columns) if columns else t
        t = self._read(files, columns)
        return t.sort_by("timestamp") if "timestamp" in t.column_names else t

    def sightings(self) -> pa.Table:
        files = self.store.files(SIGHTINGS_DIR)
        return self._read(files) if files else SIGHTINGS_SCHEMA.empty_table()

    def problems(self) -> pa.Table:
        files = self.store.files(PROBLEMS_DIR)
        return self._read(files) if files else PROBLEMS_SCHEMA.empty_table()

    def info(self) -> dict[str, Any]:
        t = self.timeline(["timestamp", "host", "artifact"])
        sightings = self.sightings()
        problems = self.problems()
        commits = self.store.commits()
        evidence: dict[str, dict[str, Any]] = {}
        for c in commits:
            for e in c.get("evidence", []):
                evidence.setdefault(e["evidence_id"], {"evidence_id": e["evidence_id"], "path": e["path"],
                                                       "files": len(e["files"]),
                                                       "bytes": sum(f["size"] for f in e["files"])})

        def counts(table: pa.Table, col: str) -> dict[str, int]:
            if not table.num_rows:
                return {}
            g = table.group_by(col).aggregate([([], "count_all")]).sort_by([("count_all", "descending"), (col, "ascending")])
            return {str(k): int(v) for k, v in zip(g.column(col).to_pylist(), g.column("count_all").to_pylist())}

        ts = t.column("timestamp")
        mm = pc.min_max(ts) if t.num_rows else None
        by_kind: dict[str, int] = {}
        for sev, kind, cnt in zip(problems.column("severity").to_pylist(), problems.column("kind").to_pylist(),
                                  problems.column("count").to_pylist()):
            by_kind[f"{sev}:{kind}"] = by_kind.get(f"{sev}:{kind}", 0) + cnt
        sev = problems.column("severity").to_pylist()
        cnt = problems.column("count").to_pylist()
        return {
            "case": str(self.path),
            "case_id": self.store.meta.get("case_id"),
            "tz": self.store.meta.get("tz"),
            "evidence": list(evidence.values()),
            "collections": len(commits),
            "rows": t.num_rows,
            "records_read": sum(c.get("records_read", 0) for c in commits),
            "sightings": sightings.num_rows,
            "first": iso_ns(mm["min"].value) if mm else None,
            "last": iso_ns(mm["max"].value) if mm else None,
            "hosts": counts(t, "host"),
            "artifacts": counts(t, "artifact"),
            "errors": sum(c for s, c in zip(sev, cnt) if s == "error"),
            "warnings": sum(c for s, c in zip(sev, cnt) if s == "warning"),
            "problems_by_kind": by_kind,
            "custody_head": self.store.custody.head()[1],
        }

    # --- verify ---------------------------------------------------------------------------------

    def verify(self, check_evidence: bool = True) -> VerifyReport:
        store = self.store
        problems = verify_chain(store.custody)
        notes: list[str] = []
        listed: dict[str, str] = {}
        evidence_files: dict[str, str] = {}
        entries = 0
        outputs: dict[str, tuple[str, int]] = {}  # exports and reports: path -> (sha256, custody seq); the last wins
        for e in store.custody.entries():
            entries += 1
            if e.get("action") in ("export", "report") and isinstance(e.get("output"), dict):
                outputs[e["output"]["path"]] = (e["output"]["sha256"], e.get("seq"))
            if e.get("action") == "commit":
                for f in e.get("files", []):
                    listed[f["path"]] = f["sha256"]
                for ev in e.get("evidence", []):
                    for f in ev.get("files", []):
                        evidence_files[f["real_path"]] = f["sha256"]
        present = {f"{kind}/{p.name}" for kind in DATA_DIRS for p in store.files(kind)}
        for rel in sorted(present - listed.keys()):
            problems.append(f"{rel}: file is not recorded in the custody log")
        checked = 0
        for rel, sha in sorted(listed.items()):
            p = store.root / rel
            if not p.exists():
                if rel in present:
                    continue
                run, _, staged_name = p.name.partition("-tl-") if "-tl-" in p.name else (None, None, None)
                staged = run is not None and (store.root / STAGING_DIR / run / f"tl-{staged_name}").exists()
                problems.append(f"{rel}: recorded in the custody log but missing" + (" (still staged: run `forensics collect` to recover)" if staged else ""))
                continue
            checked += 1
            if file_sha256(p) != sha:
                problems.append(f"{rel}: SHA-256 differs from the custody log (file was altered)")
        # Files handed out (exports, reports) live wherever the analyst put them: one still present must
        # match its hash; one moved or deleted is noted, not a failure (the case itself is intact).
        out_checked = 0
        for rel, (sha, seq) in sorted(outputs.items()):
            p = store.root / rel  # an absolute path stays absolute
            if not p.is_file():
                notes.append(f"export not present, not re-checked: {rel} (custody entry #{seq})")
                continue
            out_checked += 1
            if file_sha256(p) != sha:
                problems.append(f"export {rel}: SHA-256 differs from custody entry #{seq} (file was altered or overwritten)")
        ev_checked = 0
        if check_evidence:
            for real, sha in sorted(evidence_files.items()):
                if not os.path.exists(real):
                    notes.append(f"evidence not reachable, not re-hashed: {real}")
                    continue
                ev_checked += 1
                try:
                    h = hash_file(real, md5=False)
                except (EvidenceUnreadable, EvidenceNotFound) as exc:
                    notes.append(f"evidence not readable, not re-hashed: {real} ({exc})")
                    continue
                if h.sha256 != sha:
                    problems.append(f"evidence {real}: SHA-256 {h.sha256} differs from the custody log's {sha}")
        return VerifyReport(problems, notes, checked, ev_checked, entries, store.custody.head()[1], out_checked)


# ---------------------------------------------------------------------------------------------


def _resolve(path: Path) -> _Item:
    path = Path(os.path.abspath(path))
    if not path.exists():
        raise EvidenceNotFound(f"evidence not found: {path}")
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise EvidenceUnreadable(f"cannot read evidence {path}: permission denied")
        cls = collector_for(str(path))
        if cls is None:
            tried = ", ".join(c.name for c in REGISTRY)
            raise UnknownFormat(f"{path}: unknown format (no collector recognises it; tried: {tried})")
        return _Item(path, [(path.name, path, cls.name)], [])
    if path.is_dir():
        files, unrecognised = [], []
        for dirpath, dirnames, filenames in os.walk(path, onerror=_raise):
            dirnames.sort()
            for name in sorted(filenames):
                real = Path(dirpath) / name
                rel = real.relative_to(path).as_posix()
                if not real.is_file():
                    continue
                if not os.access(real, os.R_OK):
                    unrecognised.append(f"{rel} (unreadable)")
                    continue
                cls = collector_for(str(real))
                if cls is None:
                    unrecognised.append(rel)
                else:
                    files.append((rel, real, cls.name))
        if not files:
            tried = ", ".join(c.name for c in REGISTRY)
            raise UnknownFormat(f"{path}: no recognised artifact in this folder (tried: {tried}; {len(unrecognised)} file(s) not recognised)")
        return _Item(path, files, unrecognised)
    raise UnknownFormat(f"{path}: not a regular file or folder")


def _raise(exc: OSError) -> None:
    raise EvidenceUnreadable(f"cannot read evidence folder {exc.filename}: {exc.strerror}") from exc
