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
import logging
import os
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from collectors import Artifact, by_name
from collectors.base import shown_name
from collectors.evidence import (Item, check_only, evidence_entry, hash_after, hash_before, resolve_item,
                                 whole_folder)
from collectors.hosts import check_given_host, stamp_hosts
from collectors.links import link_hashes
from collectors.target import GATHERED_DIR, TargetCollector
from timeline.custody import hash_file, verify_chain
from timeline.schema import HOST_GIVEN, TZ_ANALYST, cap_messages, flag_times, iso_ns
from timeline.errors import CaseWriteError, EvidenceChanged, EvidenceNotFound, EvidenceUnreadable, UnknownFormat
from timeline.store import (
    DATA_DIRS,
    PROBLEMS_DIR,
    PROBLEMS_SCHEMA,
    SIGHTINGS_DIR,
    SIGHTINGS_SCHEMA,
    STAGING_DIR,
    TIMELINE_DIR,
    CaseStore,
    HashIndex,
    add_committed,
    file_sha256,
    first_sightings,
    new_run_id,
    write_parquet,
)

__all__ = ["Case", "CollectReport", "VerifyReport"]

log = logging.getLogger(__name__)

BATCH_ROWS = 50_000  # rows per batch and part: bounds a worker's memory (~0.5 GB worst case)
# A worker leaves out events of the case it knows (at most this many hashes, ~50 bytes each): beyond, the commit does it
COMMITTED_HASHES_MAX = 2_000_000
# A disk image this large is split into one unit per worker when there are fewer images than workers (below it, the
# fixed cost of a worker -- dissect opening the image, about 3 s of CPU -- outweighs its share: benchmarks/RESULTS.md)
SPLIT_BYTES = 1 << 30
# ... and repeats within its unit, remembering at most this many hashes (~55 bytes each); a unit of more rows (one
# huge artifact) starts a new set when it is full, and the commit drops the repeats the worker let through
SEEN_HASHES_MAX = 3_000_000


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
    # wall seconds of each stage: hash_before, read (the units; the last ones overlap the first ones' hash_after and
    # commit, which the main process does as units come in), hash_after, commit
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def implausible_times(self) -> int:
        """Rows read whose time is implausible (epoch, before 1990, future: ``timeline.schema.time_flags``): kept,
        flagged in ``attrs.time_flag``, and counted among the warnings (kind ``implausible_time``)."""
        return sum(sum((a.get("stats") or {}).get("time_flags", {}).values()) for a in self.artifacts)

    @property
    def unread(self) -> list[str]:
        """Files of the evidence that no collector reads (a capture, an ETL trace, an unknown log; a fifo, a link
        not followed...: the reason in brackets), each as ``evidence path: file``; also in the custody entry."""
        return [f"{e['path']}: {u}" for e in self.evidence for u in e.get("unrecognised", [])]

    def summary(self) -> str:
        return (
            f"{len(self.artifacts)} artifact(s) from {len(self.evidence)} evidence item(s): "
            f"{self.records_read} records read, {self.rows_written} rows written, "
            f"{self.duplicates_dropped} duplicates merged, {self.errors} records lost (errors), "
            f"{self.warnings} warnings"
            + (f" ({self.implausible_times} implausible times, flagged)" if self.implausible_times else "")
            + f", {len(self.skipped)} artifact(s) already collected, {self.seconds:.1f} s"
            + (f"; {self.unread_note([u for e in self.evidence for u in e.get('unrecognised', [])])}" if self.unread else "")
        )

    @staticmethod
    def unread_note(names: list[str], shown: int = 10) -> str:
        """"N file(s) no collector reads: a, b... (+k more...)" for a summary line."""
        more = f" (+{len(names) - shown} more; `forensics info --json` lists them)" if len(names) > shown else ""
        return f"{len(names)} file(s) no collector reads: " + ", ".join(names[:shown]) + more


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
                 batch_rows: int, threads: int, gather: bool = False, part: tuple[int, int] | None = None) -> dict[str, Any]:
    """Read a bin of artifacts with one collector; write sorted timeline parts and their sightings (and, with
    ``gather``, the raw artifacts an image collector copies out, under ``staging/gathered``).  ``part`` (k, n):
    the bin is one disk image of which this unit reads share k of n (see :func:`_bins`)."""
    t_start = time.monotonic()
    cls = by_name(collector)
    c = cls(engine=engine, threads=threads)
    if gather and hasattr(c, "gather_dir"):
        c.gather_dir = Path(staging) / GATHERED_DIR
    if part is not None:
        from collectors.filesystem import Part

        c.part = Part(*part)
    parts: list[str] = []
    others: list[str] = []
    failures: dict[tuple[str, str], str] = {}

    now_ns = time.time_ns()  # implausible times (timeline.schema.flag_times) are judged against the collection's time
    # rows with an implausible time, per artifact: {(evidence_id, evidence_path): {flag: [rows, first record_ref]}}
    flagged: dict[tuple[str, str], dict[str, list]] = {}
    seen = HashIndex()  # events this bin already wrote: a repeat is only a sighting
    # events the case already holds (committed by earlier units and collections; read as they appear): left
    # out here already, so that the commit (which checks again) seldom has to rewrite a part
    committed = HashIndex()
    case_root = Path(staging).parent.parent
    dropped = 0

    by_key = {a.key: a for a in artifacts}
    by_id = {a.evidence_id: a for a in artifacts}

    def fallback(evidence_id: str, evidence_path: str) -> tuple[str | None, str | None]:
        """The host a row falls back on (collectors.hosts): what its artifact's reading stated (an image's OS),
        else what was decided before reading (the analyst's, a folder's)."""
        art = by_key.get((evidence_id, evidence_path)) or by_id.get(evidence_id)
        if art is None:
            return None, None
        facts = c.reports[art.key].facts if art.key in c.reports else {}
        if "host_source" in facts:
            return facts["host"], facts["host_source"]
        return art.host, art.host_source

    def write(table: pa.Table) -> None:
        nonlocal dropped, seen
        if not table.num_rows:
            return
        table = stamp_hosts(table, fallback)
        n = len(others)  # one sightings file per table written, whether or not timeline rows remain
        table = cap_messages(table)  # (collectors cut them already: RowBuilder; a guard for any other table)
        table, flags = flag_times(table, now_ns)  # kept, flagged in attrs.time_flag, counted as a warning
        if flags is not None:
            sel = pc.is_valid(flags)
            f = table.select(["evidence_id", "evidence_path", "record_ref"]).filter(sel).append_column("flag", flags.filter(sel))
            for eid, path, ref, flag in zip(*(f.column(i).to_pylist() for i in range(4))):
                slot = flagged.setdefault((eid, path), {}).setdefault(flag, [0, ref])
                slot[0] += 1
        # sorted by time (stable: of the same event, the first read stays first); every row is a sighting,
        # the first of each event not yet in the bin or the case a timeline row: one copy of each row kept
        table = table.combine_chunks()
        order = pc.sort_indices(table.column("timestamp"))
        sp = Path(staging) / f"sightings-{prefix}-{n:04d}.parquet"
        write_parquet(table.select(SIGHTINGS_SCHEMA.names).take(order).cast(SIGHTINGS_SCHEMA), sp, sort=False)
        others.append(str(sp))
        try:
            add_committed(case_root, committed, limit=COMMITTED_HASHES_MAX)
        except (OSError, pa.ArrowException) as exc:  # only an optimisation: the commit deduplicates anyway
            log.debug("committed hashes not read: %s", exc)
        if len(seen) > SEEN_HASHES_MAX:  # bounded memory: later repeats of older events are left to the commit
            seen = HashIndex()
        keep = first_sightings(table.column("event_hash"), seen, committed)
        order = order.to_numpy()
        if not keep.all():
            dropped += int((~keep).sum())
            order = order[keep[order]]
        if len(order):
            tl = Path(staging) / f"tl-{prefix}-{n:04d}.parquet"
            write_parquet(table.take(order), tl, sort=False)
            parts.append(str(tl))

    # Rows are acyclic (strings, tuples, dicts freed by reference counting); the cycle collector
    # would only re-traverse the growing batch again and again (measured: 3x slower batches).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    # Arrow's default allocator (mimalloc) hands freed batches back to the OS and takes fresh memory for the
    # next, so the kernel zeroes (huge) pages again and again: measured 20 % of a worker's time.  The C
    # allocator keeps reusing the same memory.  Buffers remember their pool: switching back is safe.
    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        for art in artifacts:
            try:
                for table in c.collect(art, batch_rows=batch_rows):
                    write(table)
            except CaseWriteError:  # the case cannot be written (a full disk): the run stops, nothing is committed
                raise
            except Exception as exc:  # a corrupt file skips that file, not the run
                log.warning("%s: %s", art.evidence_path, exc)
                failures[art.key] = shown_name(f"{type(exc).__name__}: {exc}")
        for table in c.finish():
            write(table)
    finally:
        pa.set_memory_pool(pool)
        if gc_was_enabled:
            gc.enable()

    problems: list[dict[str, Any]] = []
    reports = []
    inner: dict[tuple[str, str], Artifact] = getattr(c, "inner", {})
    for art in list(artifacts) + [a for k, a in inner.items() if k not in {x.key for x in artifacts}]:
        rep = c.report(art)
        coll = rep.collector or collector
        base = {"evidence_id": art.evidence_id, "evidence_path": art.evidence_path, "parser": coll}
        # text a parser took from a file name may hold bytes that are not UTF-8: shown as \xNN (Parquet holds UTF-8)
        problems += [{"severity": "error", **base, **_shown(e.as_dict())} for e in rep.errors]
        problems += [{"severity": "warning", **base, **_shown(w.as_dict())} for w in rep.warnings]
        time_flags = flagged.pop(art.key, {})
        problems += [_implausible(base, flag, k, ref) for flag, (k, ref) in sorted(time_flags.items())]
        if time_flags:
            rep.stats["time_flags"] = {flag: k for flag, (k, _) in sorted(time_flags.items())}
        failure = failures.get(art.key)
        if failure is not None:
            problems.append({"severity": "error", **base, "record_ref": None, "kind": "file_failed",
                             "message": failure, "count": 1})
        rows = rep.stats.get("rows", 0)
        lost = sum(e.count for e in rep.errors) + (1 if failure else 0)
        entry = {
            "evidence_id": art.evidence_id, "evidence_path": art.evidence_path, "sha256": art.sha256,
            "collector": coll, "engine": (engine or cls.engines[0]) if coll == collector else by_name(coll).engines[0],
            "rows": rows, "lost": lost, "records_read": rows + lost,
            "warnings": len(rep.warnings) + sum(k for k, _ in time_flags.values()), "failed": failure,
            "stats": dict(rep.stats),
        }
        facts = dict(rep.facts)
        if art.host_source == HOST_GIVEN and "host" not in facts:  # the analyst's statement, in the custody entry
            facts.update(host=art.host, host_source=HOST_GIVEN)
        if facts:
            entry["facts"] = facts
        if art.key not in {x.key for x in artifacts}:
            entry["inside"] = True
        elif part is not None:
            entry["part"] = list(part)
        reports.append(entry)
    for (eid, path), by_flag in flagged.items():  # rows of an artifact no report names (none expected): still counted
        base = {"evidence_id": eid, "evidence_path": path, "parser": collector}
        problems += [_implausible(base, flag, k, ref) for flag, (k, ref) in sorted(by_flag.items())]
    log.info("unit %s%s read in %.2f s", prefix, f" (share {part[0]} of {part[1]})" if part else "",
             time.monotonic() - t_start)
    return {"parts": parts, "others": others, "problems": problems, "artifacts": reports, "dropped": dropped}


def _implausible(base: dict[str, Any], flag: str, k: int, ref: str) -> dict[str, Any]:
    """The warning of an artifact's rows whose time is implausible (timeline.schema.flag_times): kept and flagged."""
    return {"severity": "warning", **base, "record_ref": ref, "kind": "implausible_time",
            "message": f"{k} row(s) with an implausible time ({flag}; the first at {ref}): kept, flagged "
                       f'attrs.time_flag "{flag}"', "count": k}


def _shown(d: dict[str, Any]) -> dict[str, Any]:
    return {k: shown_name(v) if isinstance(v, str) else v for k, v in d.items()}
def _logging_setup() -> tuple[int, list[logging.Formatter], dict[str, int]]:
    """This process's logging (root level, the formatters of its stderr handlers, the levels set per logger), for
    the pool processes it starts."""
    import pickle

    root = logging.getLogger()
    formatters = []
    for h in root.handlers:
        if type(h) is logging.StreamHandler and h.stream is sys.stderr and h.formatter is not None:
            try:
                pickle.dumps(h.formatter)  # it travels to the pool processes; one that cannot is left out
            except Exception:
                continue
            formatters.append(h.formatter)
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
              if isinstance(lg, logging.Logger) and lg.level}
    return root.level, formatters, levels


def _worker_logging(level: int, formatters: list[logging.Formatter], levels: dict[str, int]) -> None:
    """A pool process logs as the process that started it: the same levels (the CLI's -q, dissect kept quiet) and
    formatting (the CLI's escapes evidence text), rather than Python's bare last-resort handler."""
    root = logging.getLogger()
    root.setLevel(level)
    for f in formatters:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(f)
        root.addHandler(handler)
    for name, lv in levels.items():
        logging.getLogger(name).setLevel(lv)


def _bins(tasks: list[tuple[str, str, Artifact]], workers: int, bin_bytes: int = 32 << 20) -> list[list[tuple[str, str, Artifact]]]:
    """Group artifacts (same collector and engine) into bins — the units of work, each committed on its own:
    about ``bin_bytes`` of evidence each (small files share a batch; a crash loses at most the units
    being read), and at least one per worker.  Largest first into the lightest bin.

    Artifacts of the same size go to the same bin (up to ``bin_bytes`` together): copies of one log (a live
    log and a shadow copy's, a log kept in two collections) tend to have the same size, and a worker drops
    the repeats within its bin for free, where a repeat across units makes the commit rewrite a part.
    A disk image or archive (one host each) is a unit of its own, so that several are read in parallel; an image
    of at least ``SPLIT_BYTES`` when there are fewer images than workers is split into one unit per worker, each
    reading a share of its file systems' names (a task may carry the shares still to read: ``(k, n)`` pairs).
    A unit of a split image is ``[(collector, engine, artifact, (k, n))]``."""
    out = []
    groups: dict[tuple[str, str], list] = {}
    for t in tasks:
        groups.setdefault((t[0], t[1]), []).append(t)
    for group in groups.values():
        if group[0][0] == TargetCollector.name:
            for t in group:
                if len(t) > 3:  # the shares of an image still to read
                    out += [[(*t[:3], p)] for p in t[3]]
                elif workers > 1 and len(group) < workers and t[2].size >= SPLIT_BYTES:
                    out += [[(*t, (k, workers))] for k in range(workers)]
                else:
                    out.append([t])
            continue
        same_size: dict[int, list] = {}
        for t in group:
            same_size.setdefault(t[2].size, []).append(t)
        items: list[list] = []
        for same in same_size.values():
            piece, load = [], 0
            for t in same:
                if piece and load + t[2].size > bin_bytes:
                    items.append(piece)
                    piece, load = [], 0
                piece.append(t)
                load += t[2].size
            items.append(piece)
        total = sum(t[2].size for t in group)
        n = min(len(items), max(workers, -(-total // bin_bytes)))
        bins: list[list] = [[] for _ in range(n)]
        loads = [0] * n
        for item in sorted(items, key=lambda it: -sum(t[2].size for t in it)):
            i = loads.index(min(loads))
            bins[i] += item
            loads[i] += sum(t[2].size for t in item)
        out += [b for b in bins if b]
    return out


def _shares_done(commits: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[int, set[int]]]:
    """Of every split image: (evidence_id, path, sha256, engine) -> {n: shares k committed}."""
    out: dict[tuple[str, str, str, str], dict[int, set[int]]] = {}
    for e in commits:
        for a in e.get("artifacts", []):
            if a.get("part"):
                k, n = a["part"]
                key = (a["evidence_id"], a["evidence_path"], a["sha256"], a.get("engine", ""))
                out.setdefault(key, {}).setdefault(n, set()).add(k)
    return out


def _missing_shares(shares: dict[int, set[int]] | None) -> list[tuple[int, int]]:
    """The shares of a split image still to read (none when one split of it was committed whole)."""
    if not shares or any(len(ks) == n for n, ks in shares.items()):
        return []
    n, ks = max(shares.items(), key=lambda x: len(x[1]))
    return [(k, n) for k in range(n) if k not in ks]


@dataclass
class _Plan:
    """A collection's work, decided before anything is read (:meth:`Case._plan_units`)."""

    items: list[Item]
    collection: str  # the collection's id; unit i commits as run ``{collection}-u{i:04d}``
    units: list[tuple[str, tuple]]  # (run id, arguments of _collect_bin) per unit of work
    owned: dict[tuple[str, str], list[tuple[Item, str, Path]]]  # artifact key -> the evidence files it is read from
    skipped: list[str]  # artifacts the case already holds (``evidence_id:path``)
    engine: str | None  # as the analyst asked (None: each collector's first)
    workers: int
    tool: dict[str, str]  # tool_versions(), recorded in each commit


@dataclass
class _Tally:
    """What the units of a collection committed so far, and the progress callbacks told of it."""

    per_item: dict[str, list]  # evidence_id -> [label, artifacts done, artifacts to read, rows, host]
    total_files: int  # artifacts to read (a split image counts once per share)
    progress: Callable[[int, int, int], None] | None
    on_item: Callable[[str, int, int, int, str | None], None] | None
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("records_read", "rows_written", "duplicates_dropped", "errors", "warnings"), 0))
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)  # evidence_id -> entry, files of every unit
    changed: list[str] = field(default_factory=list)  # evidence files that changed while read (units not committed)
    files_done: int = 0
    rows: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"hash_after": 0.0, "commit": 0.0})

    @classmethod
    def start(cls, plan: _Plan, progress: Callable[[int, int, int], None] | None,
              on_item: Callable[[str, int, int, int, str | None], None] | None) -> _Tally:
        """An empty tally; ``on_item`` is told of every evidence item (nothing read yet)."""
        per_item = {it.evidence_id: [str(it.path), 0, 0, 0, it.host] for it in plan.items}
        for _, args in plan.units:
            for art in args[2]:
                per_item[art.evidence_id][2] += 1
        if on_item:
            for label, done, total, rows, host in per_item.values():
                on_item(label, done, total, rows, host)
        return cls(per_item, sum(len(args[2]) for _, args in plan.units), progress, on_item)

    def committed(self, read: list[Artifact], arts: list[dict[str, Any]], counts: dict[str, int]) -> None:
        """A unit that read ``read`` committed: its artifact entries ``arts`` and ``counts`` (keys of ``totals``)."""
        self.artifacts.extend(arts)
        for k, v in counts.items():
            self.totals[k] += v
        self.files_done += len(read)
        self.rows += sum(a["rows"] for a in arts)
        if self.progress:
            self.progress(self.files_done, self.total_files, self.rows)
        for art in read:
            self.per_item[art.evidence_id][1] += 1
        for a in arts:
            st = self.per_item[a["evidence_id"]]
            st[3] += a["rows"]
            st[4] = st[4] or (a.get("facts") or {}).get("host")
        if self.on_item:
            for eid in sorted({art.evidence_id for art in read}):
                self.on_item(*self.per_item[eid])


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
        tz: str | None = None,
        only: Iterable[str] | None = None,
        client: Any = None,
        unit_bytes: int = 32 << 20,
        gather: bool = False,
        on_item: Callable[[str, int, int, int, str | None], None] | None = None,
        host: str | Mapping[str | os.PathLike, str] | None = None,
    ) -> CollectReport:
        """Collect ``evidence`` (files, folders, disk images, archives) into the case.

        ``tz`` is the analyst's zone for local times the evidence does not date itself; it wins over
        the zone an image states.  Without it, images use their own configuration and loose text
        logs the case's zone when one was given at creation, else UTC (every row says which).
        ``only`` restricts collection to the named collectors (e.g. ``["evtx"]``).
        ``client``: a ``dask.distributed.Client``; the units of work then run on its workers, which must
        see the evidence and the case directory at the same paths (a shared file system).
        ``unit_bytes``: evidence per unit of work (each unit is committed on its own: the resume granularity).
        ``gather``: also copy the raw artifacts of disk images and archives (the logs read, registry hives,
        prefetch, tasks... see :data:`collectors.target.GATHER`) into ``DIR/gathered/<evidence_id>/``, each
        hashed in the custody log with its path and times inside the evidence.  Only evidence read in this
        run is gathered (evidence the case already holds is skipped).
        ``progress(files_done, files_total, rows)`` is called after each unit of work; ``on_item(evidence,
        artifacts_done, artifacts_total, rows, host)`` once per evidence item at the start and after each unit
        that read some of it (``host`` as the evidence states it, once known): a progress line per item.
        ``host``: the host the evidence belongs to, as the analyst knows it -- one name for every item, or a
        mapping from evidence items (as given) to names; it wins over what the evidence states (each row says
        how its host was decided in ``attrs.host_source``: see :mod:`collectors.hosts`).  Evidence the case
        already holds is not read again, so a host given later does not change its rows.
        """
        t0 = time.monotonic()
        if unit_bytes < 1:
            raise ValueError(f"unit_bytes must be at least 1, not {unit_bytes}")
        if tz is not None:
            from collectors.text import zone

            zone(tz)  # unknown zone: a clear error before anything is read
        only_set = check_only(only)
        evidence = list(evidence)
        hosts = _given_hosts(evidence, host)
        items = [resolve_item(Path(p), only_set) for p in evidence]
        if not items:
            raise EvidenceNotFound("no evidence given")
        for it, h in zip(items, hosts):
            it.host = h
        with self.store.collecting():  # one collection at a time: a second one waits, then skips what this one read
            return self._collect(items, t0, engine, workers, progress, batch_rows, tz, client, unit_bytes, gather,
                                 on_item)

    def _collect(self, items: list[Item], t0: float, engine: str | None, workers: int | None,
                 progress: Callable[[int, int, int], None] | None, batch_rows: int, tz: str | None, client: Any,
                 unit_bytes: int, gather: bool,
                 on_item: Callable[[str, int, int, int, str | None], None] | None) -> CollectReport:
        """The stages of :meth:`collect` (see the module doc): hash before, plan, read and commit unit by unit."""
        with self.store.lock():
            self.store.recover()
        hash_before(items)
        phases = {"hash_before": time.monotonic() - t0}
        tasks, owned, skipped = self._plan_tasks(items, engine, tz)
        self._note_interrupted()
        plan = self._plan_units(items, tasks, owned, skipped, engine, workers, client, unit_bytes, batch_rows, gather)
        tally = _Tally.start(plan, progress, on_item)
        t_read = time.monotonic()
        self._run_units(plan, client, self._finisher(plan, tally))
        # reading the units, and (as units come in, meanwhile others are read) re-hashing their evidence and committing
        phases["read"] = time.monotonic() - t_read - tally.seconds["hash_after"] - tally.seconds["commit"]
        phases.update(tally.seconds)
        if not plan.units:  # nothing new to read: the run is still recorded (what it skipped)
            run_id = f"{plan.collection}-u0000"
            self.store.staging_dir(run_id)
            self.store.commit(run_id, [], [], tool=plan.tool, engine=engine, evidence=evidence_entry(items, [], []),
                              artifacts=[], skipped=skipped, records_read=0, errors=0, warnings=0,
                              collection=plan.collection, unit=0, units=1)
        if tally.changed:
            raise EvidenceChanged("evidence changed while it was being read; those units were not committed:\n  "
                                  + "\n  ".join(tally.changed))
        log.info("collect phases (s): %s", {k: round(v, 2) for k, v in phases.items()})
        tally.artifacts.sort(key=lambda a: (a["evidence_id"], a["evidence_path"]))
        return CollectReport(
            phases=phases, run_id=plan.collection,
            evidence=list(tally.evidence.values()) or evidence_entry(items, [], []), artifacts=tally.artifacts,
            records_read=tally.totals["records_read"], rows_written=tally.totals["rows_written"],
            duplicates_dropped=tally.totals["duplicates_dropped"], errors=tally.totals["errors"],
            warnings=tally.totals["warnings"], skipped=skipped, seconds=time.monotonic() - t0,
        )

    def _plan_tasks(self, items: list[Item], engine: str | None, tz: str | None
                    ) -> tuple[list[tuple], dict[tuple[str, str], list[tuple[Item, str, Path]]], list[str]]:
        """What is left to read: a task ``(collector, engine, artifact[, shares still to read])`` per artifact the
        case does not hold yet; the evidence files each artifact is read from, by its key (an image's segments; a
        triage folder's files); and the artifacts skipped (``evidence_id:path``).  An engine that does not read an
        artifact's format raises :class:`UnknownFormat`."""
        analyst_tz = tz or self.store.meta.get("tz")
        # An explicit tz overrides what an image states; the case's zone only fills in where it states none.
        analyst_source = TZ_ANALYST if tz else None
        done = self.store.collected_artifacts()
        shares = _shares_done(self.store.commits())
        tasks, skipped = [], []
        owned: dict[tuple[str, str], list[tuple[Item, str, Path]]] = {}
        for it in items:
            current = None
            for rel, real, coll in it.files:
                if not coll:  # a further segment of an image (or a file of a triage folder): read through its owner
                    if current is not None:
                        owned[current].append((it, rel, real))
                    continue
                current = (it.evidence_id, rel)
                owned[current] = [(it, rel, real)] if not whole_folder(rel) else []
                cls = by_name(coll)
                eng = engine if engine is not None else cls.engines[0]
                if engine is not None and engine not in cls.engines:
                    raise UnknownFormat(f"engine {engine!r} does not read {coll} artifacts ({', '.join(cls.engines)})")
                art_host, art_host_source = it.host_of(rel)
                art = Artifact(it.evidence_id, rel, str(real), it.hashes[rel].sha256, it.hashes[rel].size,
                               tz=analyst_tz, tz_source=analyst_source,
                               mtime_ns=os.lstat(real).st_mtime_ns, host=art_host, host_source=art_host_source)
                key = (it.evidence_id, rel, art.sha256, eng)
                missing = _missing_shares(shares.get(key))
                if key in done and not missing:
                    skipped.append(f"{it.evidence_id}:{rel}")
                    continue
                tasks.append((coll, eng, art, missing) if missing else (coll, eng, art))
        return tasks, owned, skipped

    def _plan_units(self, items: list[Item], tasks: list[tuple], owned: dict[tuple[str, str], list[tuple[Item, str, Path]]],
                    skipped: list[str], engine: str | None, workers: int | None, client: Any, unit_bytes: int,
                    batch_rows: int, gather: bool) -> _Plan:
        """The units of work (bins of tasks: :func:`_bins`), each with its run id and staging folder: each is committed
        on its own as soon as it is done, so that a run that dies resumes where it stopped (committed artifacts are
        skipped by the next run).  Workers: ``workers`` processes, or the dask ``client``'s workers."""
        collection = new_run_id()
        n_workers = max(1, workers or os.cpu_count() or 1)
        if client is not None:
            n_workers = max(1, len(client.scheduler_info().get("workers", {})) or n_workers)
        bins = _bins(tasks, n_workers, unit_bytes)
        n_workers = min(n_workers, max(1, len(bins)))
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        units = []
        for i, b in enumerate(bins):
            run_id = f"{collection}-u{i:04d}"
            staging = self.store.staging_dir(run_id)
            units.append((run_id, (b[0][0], b[0][1], [t[2] for t in b], str(staging), f"{i:05d}", batch_rows, threads,
                                   gather, b[0][3] if len(b[0]) > 3 else None)))
        return _Plan(items, collection, units, owned, skipped, engine, n_workers, tool_versions())

    def _run_units(self, plan: _Plan, client: Any, finish: Callable[[int, dict[str, Any]], None]) -> None:
        """Read every unit (:func:`_collect_bin`) -- on the dask ``client``, in this process (one worker) or in a pool
        of processes -- and hand each result to ``finish(unit index, result)`` as it comes.  On any exception every
        unit not yet committed is aborted in the custody log, then the exception goes on."""
        units = plan.units
        try:
            if client is not None:
                from distributed import as_completed as dask_completed

                futures = {client.submit(_collect_bin, *args, pure=False, key=f"forensics-{run_id}"): i
                           for i, (run_id, args) in enumerate(units)}
                for fut in dask_completed(futures):
                    finish(futures[fut], fut.result())
            elif plan.workers == 1:
                for i, (_, args) in enumerate(units):
                    finish(i, _collect_bin(*args))
            else:
                with ProcessPoolExecutor(max_workers=plan.workers, mp_context=get_context("spawn"),
                                         initializer=_worker_logging, initargs=_logging_setup()) as pool:
                    futures = {pool.submit(_collect_bin, *args): i for i, (_, args) in enumerate(units)}
                    for fut in as_completed(futures):
                        finish(futures[fut], fut.result())
        except BaseException as exc:
            for run_id, _ in units:
                if (self.store.root / STAGING_DIR / run_id).exists():
                    try:
                        self.store.abort(run_id, f"collection interrupted: {type(exc).__name__}: {exc}",
                                         collection=plan.collection)
                    except CaseWriteError as why:  # a full disk: its staging is gone, the abort is not recorded
                        log.warning("run %s: abort not recorded: %s", run_id, why)
            raise

    def _finisher(self, plan: _Plan, tally: _Tally) -> Callable[[int, dict[str, Any]], None]:
        """What :meth:`_run_units` hands each unit's result to: :meth:`_hash_after_and_commit` of the unit -- or,
        for the shares of a split image, of all of them once the last is read (the image is re-hashed once, after
        every share read it, not once per share)."""
        # a unit's group: the shares of one image together (args[8]: the share a unit reads), any other unit alone
        group = [("shares", *(a.key for a in args[2])) if args[8] is not None else i
                 for i, (_, args) in enumerate(plan.units)]
        size = Counter(group)
        waiting: dict[Any, dict[int, dict[str, Any]]] = {}

        def finish(i: int, result: dict[str, Any]) -> None:
            done = waiting.setdefault(group[i], {})
            done[i] = result
            if len(done) == size[group[i]]:
                self._hash_after_and_commit(plan, tally, sorted(waiting.pop(group[i]).items()))

        return finish

    def _hash_after_and_commit(self, plan: _Plan, tally: _Tally, done: list[tuple[int, dict[str, Any]]]) -> None:
        """Units ``done`` are read (index, ``result`` of :func:`_collect_bin`): re-hash their evidence files once and
        abort the units if any changed while they were read; else commit each -- gathered files first (a crash
        before the custody entry leaves them unlisted, which `verify` reports and the resumed run overwrites with
        the same bytes), then the timeline, sightings and problems -- and add it to ``tally``."""
        files = list({(id(f[0]), f[1]): f for i, _ in done for art in plan.units[i][1][2]
                      for f in plan.owned.get(art.key, [])}.values())
        t = time.monotonic()
        after, changed = hash_after(files)
        tally.seconds["hash_after"] += time.monotonic() - t
        ev = evidence_entry(plan.items, files, after)
        for e in ev:
            tally.evidence.setdefault(e["evidence_id"], {**e, "files": []})["files"] += e["files"]
        if changed:
            tally.changed.extend(changed)
            for i, _ in done:
                self.store.abort(plan.units[i][0], "evidence changed during collection", evidence=ev, changed=changed,
                                 collection=plan.collection, unit=i, units=len(plan.units))
            return
        t = time.monotonic()
        for i, result in done:
            self._commit(plan, tally, i, result, ev)
        tally.seconds["commit"] += time.monotonic() - t

    def _commit(self, plan: _Plan, tally: _Tally, i: int, result: dict[str, Any], ev: list[dict[str, Any]]) -> None:
        """Commit unit ``i`` (its evidence verified unchanged: ``ev``) and add it to ``tally``."""
        run_id, args = plan.units[i]
        _place_gathered(Path(args[3]) / GATHERED_DIR, self.store.root / GATHERED_DIR)
        problems = result["problems"]
        others = [Path(p) for p in result["others"]]
        if problems:
            pp = Path(args[3]) / f"problems-{run_id}.parquet"
            write_parquet(pa.Table.from_pylist(problems, schema=PROBLEMS_SCHEMA), pp, sort=False)
            others.append(pp)
        arts = sorted(result["artifacts"], key=lambda a: (a["evidence_id"], a["evidence_path"]))
        errors = sum(p["count"] for p in problems if p["severity"] == "error")
        warnings = sum(p["count"] for p in problems if p["severity"] == "warning")
        records = sum(a["records_read"] for a in arts)
        entry = self.store.commit(
            run_id, [Path(p) for p in result["parts"]], others, tool=plan.tool, engine=plan.engine, evidence=ev,
            artifacts=arts, skipped=plan.skipped if i == 0 else [], records_read=records, errors=errors,
            warnings=warnings, dropped_in_workers=result["dropped"], collection=plan.collection, unit=i,
            units=len(plan.units),
        )
        tally.committed(args[2], arts, {"records_read": records, "rows_written": entry["rows_written"],
                                        "duplicates_dropped": entry["duplicates_dropped"], "errors": errors,
                                        "warnings": warnings})

    def _note_interrupted(self) -> None:
        """Record in the custody log every earlier collection that committed only some of its units."""
        units: dict[str, tuple[int, set[int]]] = {}
        noted = set()
        for e in self.store.custody.entries():
            if e.get("action") == "commit" and e.get("collection"):
                n, got = units.setdefault(e["collection"], (e.get("units", 1), set()))
                got.add(e.get("unit", 0))
            elif e.get("action") == "interrupted":
                noted.add(e.get("collection"))
        for coll, (n, got) in units.items():
            if len(got) < n and coll not in noted:
                self.store.custody.append("interrupted", collection=coll, units=n, units_committed=len(got),
                                          note=f"collection {coll} stopped after {len(got)} of {n} unit(s); "
                                               "this run collects the rest")

    # --- read ------------------------------------------------------------------------------------

    @staticmethod
    def _read(files: list[Path], columns: list[str] | None = None) -> pa.Table:
        import pyarrow.dataset as ds  # imports pandas: only when reading, never in collection workers

        return ds.dataset([str(f) for f in files], format="parquet").to_table(columns=columns)

    def timeline(self, columns: list[str] | None = None, as_pandas: bool = False):
        """The whole timeline, sorted by time (small cases; ``forensics.open(case)`` reads lazily), as one Arrow
        table, or with ``as_pandas=True`` as a pandas DataFrame: the same rows and columns with the dtypes of
        ``Timeline.to_pandas()`` (``event_id`` ``Int32``, ``timestamp`` ``datetime64[ns, UTC]``) and
        ``local_time`` (the case's zone) after ``timestamp``; ``df.fx`` helpers work on it."""
        files = self.store.files(TIMELINE_DIR)
        if not files:
            from timeline.schema import empty_table

            t = empty_table()
            t = t.select(columns) if columns else t
        else:
            t = self._read(files, columns)
            t = t.sort_by("timestamp") if "timestamp" in t.column_names else t
        return self._frame(t, local_time=True) if as_pandas else t

    def sightings(self, as_pandas: bool = False):
        """Every place each event was seen (an event read from several files is one row with several sightings);
        an Arrow table, or a DataFrame with ``as_pandas=True``."""
        files = self.store.files(SIGHTINGS_DIR)
        t = self._read(files) if files else SIGHTINGS_SCHEMA.empty_table()
        return self._frame(t) if as_pandas else t

    def problems(self, as_pandas: bool = False):
        """Records lost (``severity`` error) and damage noticed (warning), with their evidence, place, kind,
        message and count: an Arrow table, or a DataFrame with ``as_pandas=True``."""
        files = self.store.files(PROBLEMS_DIR)
        t = self._read(files) if files else PROBLEMS_SCHEMA.empty_table()
        return self._frame(t) if as_pandas else t

    def _frame(self, table: pa.Table, local_time: bool = False):
        from timeline.schema import to_pandas

        df = to_pandas(table)
        if local_time and "timestamp" in df.columns:
            import forensics.hunt  # noqa: F401 - the df.fx accessor

            tz = self.store.meta.get("tz") or "UTC"
            df.insert(df.columns.get_loc("timestamp") + 1, "local_time", df["timestamp"].dt.tz_convert(tz))
        return df

    def info(self) -> dict[str, Any]:
        t = self.timeline(["timestamp", "host", "artifact"])
        sightings = self.sightings()
        problems = self.problems()
        commits = self.store.commits()
        evidence: dict[str, dict[str, Any]] = {}
        ev_files: dict[str, dict[str, int]] = {}
        unread: dict[str, dict[str, None]] = {}
        for c in commits:  # a collection commits unit by unit: an item's files are spread over its units
            for e in c.get("evidence", []):
                evidence.setdefault(e["evidence_id"], {"evidence_id": e["evidence_id"], "path": e["path"]})
                ev_files.setdefault(e["evidence_id"], {}).update({f["path"]: f["size"] for f in e["files"]})
                unread.setdefault(e["evidence_id"], {}).update(dict.fromkeys(e.get("unrecognised", [])))
        for eid, d in evidence.items():
            d["files"] = len(ev_files[eid])
            d["bytes"] = sum(ev_files[eid].values())
            d["unread"] = list(unread[eid])  # files no collector reads (the reason in brackets)
        for c in commits:  # what an image or collection stated (host, zone), its E01 check, what was gathered
            for a in c.get("artifacts", []):
                f = a.get("facts") or {}
                d = evidence.get(a["evidence_id"])
                if d is not None and f.get("host_source") == HOST_GIVEN:  # the analyst's host of a loose item
                    d.update(host=f["host"], host_source=HOST_GIVEN)
                if d is None or a.get("collector") != TargetCollector.name or not f:
                    continue
                d.update({k: f.get(k) for k in ("host", "host_source", "os", "tz", "tz_source")})
                if "ewf" in f:
                    v = f["ewf"]["verified"]
                    d["e01_media_hash"] = "verified" if v else "MISMATCH" if v is False else "none stored"
                if f.get("gathered"):
                    d["gathered"] = d.get("gathered", 0) + len(f["gathered"])
                if f.get("outside_layout"):  # a triage archive's own files (its log, command outputs): named, not read
                    d["outside_layout"] = d.get("outside_layout", 0) + len(f["outside_layout"])

        def counts(table: pa.Table, col: str) -> dict[str, int]:
            from forensics.sigma import UNKNOWN_HOST  # rows without a host are counted under the one placeholder

            if not table.num_rows:
                return {}
            g = table.group_by(col).aggregate([([], "count_all")]).sort_by([("count_all", "descending"), (col, "ascending")])
            out: dict[str, int] = {}
            for k, v in zip(g.column(col).to_pylist(), g.column("count_all").to_pylist()):
                key = UNKNOWN_HOST if k is None or k == "" else str(k)
                out[key] = out.get(key, 0) + int(v)
            return out

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
            # rows whose time is implausible (timeline.schema.time_flags): kept, flagged attrs.time_flag
            "implausible_times": by_kind.get("warning:implausible_time", 0),
            "unread_files": sum(len(d["unread"]) for d in evidence.values()),
            "custody_head": self.store.custody.head()[1],
        }

    # --- verify ---------------------------------------------------------------------------------

    def verify(self, check_evidence: bool = True, expect_head: str | None = None) -> VerifyReport:
        """Re-check the custody chain, case.json, every case file, every export still present and (with
        ``check_evidence``) the evidence.  ``expect_head``: the head hash recorded elsewhere (a report, a
        notebook); a chain whose head differs (entries appended, removed or rewritten since) fails."""
        store = self.store
        problems = verify_chain(store.custody)
        notes: list[str] = []
        torn = store.custody.torn()
        if torn:
            notes.append(f"custody log ends in an incomplete line of {len(torn)} byte(s) (an append cut short by a "
                         "crash); not part of the chain; set aside in a `repaired` entry at the next write")
        listed: dict[str, str] = {}
        evidence_files: dict[str, tuple[str, str, bool]] = {}  # path as shown -> (sha256, path to open, a link)
        entries = 0
        outputs: dict[str, tuple[str, int]] = {}  # exports and reports: path -> (sha256, custody seq); the last wins
        case_json: tuple[str, int] | None = None  # case.json's hash as last recorded: (sha256, custody seq)
        seqs: dict[str, int] = {}
        for e in store.custody.entries():
            entries += 1
            seqs[e.get("hash", "")] = e.get("seq")
            if "case_json_sha256" in e:
                case_json = (e["case_json_sha256"], e.get("seq"))
            if e.get("action") == "repaired" and isinstance(e.get("torn"), dict):
                notes.append(f"custody entry #{e.get('seq')}: an incomplete line of {e['torn'].get('bytes')} byte(s) "
                             "(an append cut short by a crash) was set aside there; it is not part of the chain")
            if e.get("action") in ("export", "report") and isinstance(e.get("output"), dict):
                outputs[e["output"]["path"]] = (e["output"]["sha256"], e.get("seq"))
            if e.get("action") == "commit":
                for f in e.get("files", []):
                    listed[f["path"]] = f["sha256"]
                for a in e.get("artifacts", []):
                    for g in (a.get("facts") or {}).get("gathered", []):
                        listed[g["stored_as"]] = g["sha256"]
                for ev in e.get("evidence", []):
                    for f in ev.get("files", []):
                        opened = os.fsdecode(bytes.fromhex(f["real_path_bytes"])) if "real_path_bytes" in f else f["real_path"]
                        evidence_files[f["real_path"]] = (f["sha256"], opened, bool(f.get("link")))
        if case_json is None:
            notes.append("case.json is not covered by the custody log (a case created before its hash was recorded)")
        elif file_sha256(store.root / "case.json") != case_json[0]:
            problems.append(f"case.json: SHA-256 differs from custody entry #{case_json[1]} (the case's zone, id or "
                            "schema version was changed)")
        head = store.custody.head()[1]
        if expect_head is not None and expect_head.strip().lower() != head:
            where = seqs.get(expect_head.strip().lower())
            problems.append(f"custody head {head} is not the expected {expect_head.strip()}: " + (
                f"that is entry #{where}; {entries - where} entr{'y' if entries - where == 1 else 'ies'} appended "
                "since" if where is not None else "no entry of the chain has that hash (entries removed or rewritten)"))
        present = {f"{kind}/{p.name}" for kind in DATA_DIRS for p in store.files(kind)}
        gathered = store.root / GATHERED_DIR
        present |= {p.relative_to(store.root).as_posix() for p in gathered.rglob("*") if p.is_file()} if gathered.exists() else set()
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
            for real, (sha, opened, link) in sorted(evidence_files.items()):
                if not os.path.lexists(opened):
                    notes.append(f"evidence not reachable, not re-hashed: {real}")
                    continue
                ev_checked += 1
                if link and not os.path.islink(opened):
                    problems.append(f"evidence {real}: was a symbolic link, is not one any more")
                    continue
                try:
                    h = link_hashes(opened, md5=False) if link else hash_file(opened, md5=False)
                except (EvidenceUnreadable, EvidenceNotFound) as exc:
                    notes.append(f"evidence not readable, not re-hashed: {real} ({exc})")
                    continue
                if h.sha256 != sha:
                    problems.append(f"evidence {real}: SHA-256 {h.sha256} differs from the custody log's {sha}")
        return VerifyReport(problems, notes, checked, ev_checked, entries, head, out_checked)


# ---------------------------------------------------------------------------------------------



def _given_hosts(evidence: list, host: str | Mapping[str | os.PathLike, str] | None) -> list[str | None]:
    """The analyst's host of each evidence item (None: not given), checked (ValueError for a name that cannot be a
    host, or a mapping naming evidence that is not collected)."""
    if host is None:
        return [None] * len(evidence)
    if isinstance(host, (str, os.PathLike)) and not isinstance(host, Mapping):
        name = check_given_host(os.fspath(host))
        return [name] * len(evidence)

    def key(p: str | os.PathLike) -> str:
        return str(p) if str(p) == "local" else os.path.realpath(os.path.abspath(p))

    wanted = {key(p): (p, check_given_host(h)) for p, h in host.items() if h is not None}
    out = [wanted.pop(key(p), (None, None))[1] for p in evidence]
    if wanted:
        raise ValueError("host given for evidence not collected: " + ", ".join(shown_name(str(p)) for p, _ in wanted.values()))
    return out


def _place_gathered(staged: Path, final: Path) -> None:
    """Move a unit's gathered files from its staging folder into the case (same relative paths)."""
    if not staged.exists():
        return
    for src in sorted(staged.rglob("*")):
        if src.is_file():
            dest = final / src.relative_to(staged)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
