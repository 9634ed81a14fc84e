"""The case store: a directory of Parquet files plus the custody log that commits them.

Layout of a case directory::

    case.json          case metadata (id, creation time, schema version, zone)
    custody.jsonl      append-only, hash-chained custody log (timeline.custody)
    timeline/*.parquet the super-timeline: one row per distinct event, each file sorted by
                       timestamp in row groups of 64 Ki rows with min/max statistics, so a
                       time-window read touches only the row groups it needs
    sightings/*.parquet every record read: event_hash + provenance (evidence, path, record);
                       an event found in two places (a live log and its shadow copy) is one
                       timeline row and two sightings
    problems/*.parquet errors (records lost, with the reason) and warnings (damage noticed)
    detections/*.parquet tags that detections (Sigma rules) give to timeline rows, by event_hash;
                       readers add them to the rows' ``tags``
    staging/<run>/     parts being written; never read as part of the case
    staging/<run>.lock held (fcntl) by the process writing that run, released at its end or death
    .lock              commit lock (fcntl)
    .collect.lock      held (fcntl) by the one collection running in the case (a second one waits)

Commit protocol (crash safe): a run writes all its parts under ``staging/<run>``
(its writers may already leave out events the case holds: :func:`add_committed`,
:func:`first_sightings`); under the lock it removes rows already in the case, hashes the final files and
appends one ``commit`` entry to the custody log listing them (the commit point);
then it renames the files into place.  On the next open, a staged run with a
commit entry is rolled forward, one without is discarded and the discard is
recorded in the custody log; a run whose lock is still held belongs to a live
collector and is left alone.  Readers only ever see whole files.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from timeline.custody import CustodyLog
from timeline.errors import CaseError, CaseLocked, CaseWriteError
from timeline.schema import SCHEMA_VERSION

__all__ = [
    "CaseStore",
    "SIGHTINGS_SCHEMA",
    "PROBLEMS_SCHEMA",
    "write_parquet",
    "file_sha256",
    "first_sightings",
    "HashIndex",
    "add_committed",
    "new_run_id",
    "TIMELINE_DIR",
    "SIGHTINGS_DIR",
    "PROBLEMS_DIR",
    "DETECTIONS_DIR",
    "DETECTIONS_SCHEMA",
    "writing",
]

log = logging.getLogger(__name__)

TIMELINE_DIR, SIGHTINGS_DIR, PROBLEMS_DIR, STAGING_DIR = "timeline", "sightings", "problems", "staging"
DETECTIONS_DIR = "detections"
DATA_DIRS = (TIMELINE_DIR, SIGHTINGS_DIR, PROBLEMS_DIR, DETECTIONS_DIR)
_KIND_BY_PREFIX = {"sightings-": SIGHTINGS_DIR, "problems-": PROBLEMS_DIR, "detections-": DETECTIONS_DIR}
ROW_GROUP = 65536

SIGHTINGS_SCHEMA = pa.schema(
    [
        pa.field("event_hash", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("evidence_id", pa.string(), nullable=False),
        pa.field("evidence_path", pa.string(), nullable=False),
        pa.field("record_ref", pa.string(), nullable=False),
        pa.field("parser", pa.string(), nullable=False),
    ]
)

DETECTIONS_SCHEMA = pa.schema(
    [
        pa.field("event_hash", pa.string(), nullable=False),
        pa.field("tags", pa.list_(pa.string()), nullable=False),  # sigma:<rule id>, then the rule's ATT&CK tags
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=True),
        pa.field("level", pa.string(), nullable=True),
    ]
)

PROBLEMS_SCHEMA = pa.schema(
    [
        pa.field("severity", pa.string(), nullable=False),  # "error": a record lost; "warning": damage noticed
        pa.field("evidence_id", pa.string(), nullable=False),
        pa.field("evidence_path", pa.string(), nullable=False),
        pa.field("record_ref", pa.string(), nullable=True),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("parser", pa.string(), nullable=True),
    ]
)


def new_run_id() -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{now}-{uuid.uuid4().hex[:8]}"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def writing(what: str | os.PathLike) -> Iterator[None]:
    """Turn an OS error while writing the case (a full disk, a read-only file system, no permission) into one
    clear :class:`CaseWriteError` naming ``what`` (no traceback, exit code 12)."""
    try:
        yield
    except OSError as exc:
        raise CaseWriteError(f"cannot write {what}: {exc.strerror or exc}; nothing was committed") from exc


def write_parquet(table: pa.Table, path: str | os.PathLike, sort: bool = True) -> int:
    """Write one part: sorted by timestamp, 64 Ki-row groups with statistics, zstd, fsynced."""
    if sort and table.num_rows > 1:
        table = table.sort_by([("timestamp", "ascending")])
    tmp = f"{path}.tmp"
    try:
        with writing(path):
            pq.write_table(
                table, tmp, row_group_size=ROW_GROUP, compression="zstd", write_statistics=True,
                use_dictionary=["host", "source", "artifact", "channel", "provider", "timestamp_desc", "tz_source",
                                "evidence_id", "evidence_path", "parser", "severity", "kind"],
            )
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a part cut short (a full disk) leaves nothing behind
    return table.num_rows


def _final_name(run_id: str, staged: Path) -> str:
    return f"{run_id}-{staged.name}"


def _hash_array(files: list[Path]) -> np.ndarray:
    """The event_hash column of ``files`` as a numpy array of 32-byte strings (no Python objects)."""
    parts = []
    for f in files:
        col = pq.read_table(f, columns=["event_hash"]).column(0)
        for chunk in col.chunks:
            parts.append(_fixed32(chunk))
    if not parts:
        return np.empty(0, dtype="S32")
    return np.concatenate(parts)


def _fixed32(chunk: pa.Array) -> np.ndarray:
    if chunk.null_count:
        raise CaseError("event_hash column holds nulls")
    chunk = chunk.cast(pa.string())
    n = len(chunk)
    if n == 0:
        return np.empty(0, dtype="S32")
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=n + 1, offset=chunk.offset * 4)
    if offsets[-1] - offsets[0] != 32 * n:
        raise CaseError("event_hash values must be 32 hex characters")
    data = chunk.buffers()[2]
    return np.frombuffer(data, dtype="S32", count=n, offset=int(offsets[0])).copy()


_NIBBLE = np.zeros(256, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _NIBBLE[ord(chr(_c).upper())] = _i


def _key64(h: np.ndarray, step: int = 1 << 20) -> np.ndarray:
    """The first 64 bits of 32-character hex hashes as integers: sorted search on them is fast, on strings not.
    (A million hashes at a time: the temporaries stay small however many there are.)"""
    out = np.empty(len(h), dtype=np.uint64)
    raw = h.view(np.uint8).reshape(-1, 32)
    for i in range(0, len(h), step):
        m = _NIBBLE[raw[i:i + step, :16]]
        out[i:i + step] = np.ascontiguousarray((m[:, 0::2] << 4) | m[:, 1::2]).view(">u8").ravel()
    return out


def _first_of_each_key(k: np.ndarray, hashes_of) -> np.ndarray:
    """Index of the first occurrence of each distinct hash, from their 64-bit keys ``k``; ``hashes_of(rows)``
    gives the full hashes of the rows (sorted indices) it must compare: those whose key repeats."""
    order = np.argsort(k, kind="stable")  # equal keys keep their row order: a group's first is its earliest row
    ks = k[order]
    start = np.ones(len(k), dtype=bool)
    start[1:] = ks[1:] != ks[:-1]
    del ks
    same_key = np.flatnonzero(~start)
    if len(same_key):
        a, b = order[same_key], order[same_key - 1]
        rows = np.union1d(a, b)
        h = hashes_of(rows)
        if (h[np.searchsorted(rows, a)] != h[np.searchsorted(rows, b)]).any():  # keys collide: by full hash
            return np.sort(np.unique(hashes_of(np.arange(len(k))), return_index=True)[1])
    return np.sort(order[start])


class HashIndex:
    """A set of event hashes (32 hex characters) for deduplication; membership of a whole column at once.

    One sorted run per :meth:`add`, keyed by the hashes' first 64 bits (sorted search on integers is fast, on
    strings not) and compared in full; a table of those keys' top bits (8 to 16 slots per hash) lets most
    hashes that are not in the set skip the runs.  ``files``: the timeline files already added (see
    :func:`add_committed`)."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._len = 0
        self._shift = 64
        self._slots = np.zeros(1, dtype=bool)
        self.files: set[str] = set()

    def __len__(self) -> int:
        return self._len


    def add(self, h: np.ndarray, k: np.ndarray | None = None) -> None:
        """Add hashes not in the set yet (``k``: their keys, when already computed)."""
        if not len(h):
            return
        k = _key64(h) if k is None else k
        order = np.argsort(k)
        self._runs.append((k[order], h[order]))
        self._len += len(h)
        bits = max(16, int(self._len * 8).bit_length())
        if 64 - bits != self._shift:  # grown: a bigger table, marked again from every run
            self._shift = 64 - bits
            self._slots = np.zeros(1 << bits, dtype=bool)
            for keys, _ in self._runs:
                self._slots[keys >> np.uint64(self._shift)] = True
        else:
            self._slots[k >> np.uint64(self._shift)] = True

    def contains(self, h: np.ndarray, k: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(h.shape, dtype=bool)
        if not len(h) or not self._runs:
            return out
        k = _key64(h) if k is None else k
        maybe = np.flatnonzero(self._slots[k >> np.uint64(self._shift)])
        maybe = maybe[np.argsort(k[maybe])]  # sorted needles: each search starts where the last one ended
        for keys, full in self._runs:
            if not len(maybe):
                break
            n = len(keys)
            km = k[maybe]
            lo = np.searchsorted(keys, km)
            at = np.minimum(lo, n - 1)
            hit = np.flatnonzero(keys[at] == km)
            if not len(hit):
                continue
            found = np.zeros(len(maybe), dtype=bool)
            eq = full[at[hit]] == h[maybe[hit]]
            found[hit[eq]] = True
            for j in hit[~eq].tolist():  # the same first 64 bits as another hash: look at each such entry
                i, pos = maybe[j], int(lo[j])
                while pos < n and keys[pos] == k[i]:
                    if full[pos] == h[i]:
                        found[j] = True
                        break
                    pos += 1
            out[maybe[found]] = True
            maybe = maybe[~found]
        return out


def add_committed(root: str | os.PathLike, index: HashIndex, limit: int | None = None) -> HashIndex:
    """Add the event hashes of the case's timeline files not yet in ``index`` (only their event_hash
    column is read), until it holds ``limit`` hashes.  Readers only ever see whole files, so this may
    run while others commit."""
    for f in sorted((Path(root) / TIMELINE_DIR).glob("*.parquet")):
        if limit is not None and len(index) >= limit:
            break
        if f.name not in index.files:
            index.add(_hash_array([f]))
            index.files.add(f.name)
    return index


def first_sightings(event_hash: pa.Array | pa.ChunkedArray, seen: HashIndex, known: HashIndex | None = None) -> np.ndarray:
    """Which rows are the first of their event: neither in ``seen`` (nor in ``known``) nor earlier in
    ``event_hash``.  The column's hashes are then added to ``seen``."""
    chunks = event_hash.chunks if isinstance(event_hash, pa.ChunkedArray) else [event_hash]
    h = np.concatenate([_fixed32(c) for c in chunks]) if chunks else np.empty(0, "S32")
    keep = np.zeros(h.shape, dtype=bool)
    if not len(h):
        return keep
    k = _key64(h)
    first = _first_of_each_key(k, h.__getitem__)
    fh, fk = h[first], k[first]
    fresh = ~seen.contains(fh, fk)
    seen.add(fh[fresh], fk[fresh])
    if known is not None:
        fresh &= ~known.contains(fh, fk)
    keep[first[fresh]] = True
    return keep


class CaseStore:
    """A case directory.  Create with :meth:`create` (or ``open(..., create=True)``)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        meta = self.root / "case.json"
        if not meta.exists():
            raise CaseError(f"{self.root} is not a case directory (no case.json); collect into it first")
        try:
            self.meta = json.loads(meta.read_text())
        except ValueError as exc:
            raise CaseError(f"{meta} is not valid JSON: {exc}") from exc
        self.custody = CustodyLog(self.root / "custody.jsonl")
        self._runs: dict[str, int] = {}  # run id -> descriptor holding that run's staging lock
        if self.custody.torn():
            self._repair_custody()

    def _repair_custody(self) -> None:
        """A torn last line (a crash during an append) is set aside now when the case can be written;
        otherwise readers skip it and the next append sets it aside."""
        try:
            with _flock(self.root / ".lock", timeout=0):
                self.custody.repair()
        except (CaseLocked, CaseWriteError) as exc:
            log.warning("custody log ends in an incomplete line, set aside at the next write (%s)", exc)

    def case_json_sha256(self) -> str:
        """SHA-256 of case.json as it is now (the custody log records it whenever it is written)."""
        return file_sha256(self.root / "case.json")

    @classmethod
    def open(cls, root: str | os.PathLike, create: bool = False, tz: str | None = None) -> "CaseStore":
        root = Path(root)
        if create and not (root / "case.json").exists():
            return cls.create(root, tz=tz)
        return cls(root)

    @classmethod
    def create(cls, root: str | os.PathLike, tz: str | None = None) -> "CaseStore":
        root = Path(root)
        if tz is not None:  # checked before anything is created: a bad zone leaves no empty case behind
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise CaseError(f"unknown time zone {tz!r} (use an IANA name such as Asia/Kolkata)") from exc
        if root.exists() and not root.is_dir():
            raise CaseError(f"{root} exists and is not a directory")
        with writing(f"the case folder {root}"):
            root.mkdir(parents=True, exist_ok=True)
            for d in (*DATA_DIRS, STAGING_DIR):
                (root / d).mkdir(exist_ok=True)
        with _flock(root / ".lock"):
            if (root / "case.json").exists():
                return cls(root)
            meta = {
                "case_id": uuid.uuid4().hex,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "schema_version": SCHEMA_VERSION,
                "tz": tz,
            }
            tmp = root / "case.json.tmp"
            with writing(root / "case.json"):
                tmp.write_text(json.dumps(meta, indent=2) + "\n")
                os.replace(tmp, root / "case.json")
            store = cls(root)
            # case.json's hash is in the chain: verify notices a changed zone or id
            store.custody.append("case_created", case_id=meta["case_id"], schema_version=SCHEMA_VERSION, tz=tz,
                                 case_json_sha256=store.case_json_sha256())
        return store

    # --- locking and recovery ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        with _flock(self.root / ".lock", timeout):
            yield

    def check_writable(self) -> None:
        """Raise CaseWriteError now when the case cannot be written (a read-only mount, no permission), before a
        long job whose result must be recorded in its custody log."""
        os.close(_open_lock(self.root / ".lock"))
        self.custody.check_writable()

    @contextlib.contextmanager
    def collecting(self, timeout: float | None = None) -> Iterator[None]:
        """Held for a whole collection: a second collection into the same case waits for the first (or raises
        CaseLocked after ``timeout`` seconds), then finds what the first committed and skips it, so no record
        is read, counted or sighted twice."""
        path = self.root / ".collect.lock"
        fd = _open_lock(path)
        try:
            try:
                _acquire(fd, path, 0)
            except CaseLocked:
                if timeout == 0:
                    raise CaseLocked(f"{self.root}: another collection into this case is running") from None
                log.warning("%s: another collection into this case is running; waiting for it to finish", self.root)
                _acquire(fd, path, timeout)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def recover(self) -> list[str]:
        """Roll forward committed runs whose files were not all moved; discard uncommitted ones.  Under the lock."""
        staging = self.root / STAGING_DIR
        if not staging.exists():
            return []
        notes = []
        commits = {e.get("run"): e for e in self.custody.entries() if e.get("action") == "commit"}
        for run_dir in sorted(p for p in staging.iterdir() if p.is_dir()):
            if run_dir.name in self._runs:
                continue
            live = _try_lock(staging / f"{run_dir.name}.lock")
            if live is None:
                continue  # another collector is still writing this run
            try:
                entry = commits.get(run_dir.name)
                if entry is not None:
                    moved = 0
                    for f in entry.get("files", []):
                        src = run_dir / Path(f["path"]).name.removeprefix(f"{run_dir.name}-")
                        if src.exists():
                            with writing(self.root / f["path"]):
                                os.replace(src, self.root / f["path"])
                            moved += 1
                    note = f"run {run_dir.name}: committed before an interruption; {moved} file(s) moved into place"
                else:
                    n = sum(1 for _ in run_dir.iterdir())
                    note = f"run {run_dir.name}: interrupted before its commit; {n} staged file(s) discarded"
                self.custody.append("recovered", note=note)  # recorded before anything is deleted
                notes.append(note)
                shutil.rmtree(run_dir, ignore_errors=True)
                with contextlib.suppress(OSError):
                    (staging / f"{run_dir.name}.lock").unlink(missing_ok=True)
            finally:
                os.close(live)
        return notes

    # --- what is committed ---------------------------------------------------------------------

    def commits(self) -> list[dict[str, Any]]:
        return [e for e in self.custody.entries() if e.get("action") == "commit"]

    def files(self, kind: str = TIMELINE_DIR) -> list[Path]:
        d = self.root / kind
        return sorted(d.glob("*.parquet")) if d.exists() else []

    def collected_artifacts(self) -> set[tuple[str, str, str, str]]:
        """(evidence_id, evidence_path, sha256, engine) of every artifact already committed."""
        done = set()
        for e in self.commits():
            for a in e.get("artifacts", []):
                done.add((a["evidence_id"], a["evidence_path"], a["sha256"], a.get("engine", "")))
        return done

    # --- writing ---------------------------------------------------------------------------------

    def staging_dir(self, run_id: str) -> Path:
        """The run's staging folder; the run holds a lock on it until it commits or aborts."""
        d = self.root / STAGING_DIR / run_id
        if run_id not in self._runs:
            fd = _try_lock(self.root / STAGING_DIR / f"{run_id}.lock")
            if fd is None:
                raise CaseLocked(f"run {run_id} is already being written by another process")
            self._runs[run_id] = fd
        with writing(d):
            d.mkdir(parents=True, exist_ok=True)
        return d

    def _end_run(self, run_id: str) -> None:
        shutil.rmtree(self.root / STAGING_DIR / run_id, ignore_errors=True)
        fd = self._runs.pop(run_id, None)
        with contextlib.suppress(OSError):
            (self.root / STAGING_DIR / f"{run_id}.lock").unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)

    def commit(self, run_id: str, timeline_parts: list[Path], other_parts: list[Path], dropped_in_workers: int = 0,
               **entry: Any) -> dict[str, Any]:
        """Deduplicate the staged timeline parts against the case, then commit the run (see module doc).

        ``dropped_in_workers``: repeats the writers already left out of their parts (counted as duplicates).
        """
        with self.lock():
            try:
                with writing(f"the case {self.root}"):
                    final, duplicates = self._final_parts(timeline_parts, other_parts, dropped_in_workers)
                    # final names carry the run id: parts of concurrent runs never collide
                    files = [
                        {"path": f"{kind}/{_final_name(run_id, p)}", "sha256": file_sha256(p), "rows": rows,
                         "bytes": p.stat().st_size}
                        for p, kind, rows in final
                    ]
                entry = self.custody.append(
                    "commit", run=run_id, files=files, rows_written=sum(r for _, k, r in final if k == TIMELINE_DIR),
                    duplicates_dropped=duplicates, **entry,
                )
            except CaseWriteError:  # nothing committed: the staged run goes (it would only fill the disk)
                self._end_run(run_id)
                raise
            with writing(f"the case {self.root} (committed; the next collection moves the files into place)"):
                for p, kind, _ in final:  # after the commit point: a crash here is rolled forward by recover()
                    os.replace(p, self.root / kind / _final_name(run_id, p))
            for kind in DATA_DIRS:
                _fsync_dir(self.root / kind)
            self._end_run(run_id)
        return entry

    def _final_parts(self, timeline_parts: list[Path], other_parts: list[Path],
                     dropped_in_workers: int) -> tuple[list[tuple[Path, str, int]], int]:
        """The run's parts without the events the case (or the run itself) already holds, rewritten where needed:
        ([(part, kind, rows)], duplicates).  Under the lock."""
        known = self._known_index()
        final: list[tuple[Path, str, int]] = []
        duplicates = dropped_in_workers
        # All the run's hashes at once (only the event_hash column is read): one sort finds the first
        # occurrence of every event across the run's parts, in part order.
        # Only the 64-bit keys of the run's hashes are held (8 bytes a row); the full hashes are read again,
        # part by part, where a key repeats (a duplicate, or two events whose keys collide) and to check the
        # first occurrences against the case.
        sizes = [pq.read_metadata(part).num_rows for part in timeline_parts]
        bounds = np.cumsum([0] + sizes)
        keys = np.empty(int(bounds[-1]), dtype=np.uint64)
        for part, at in zip(timeline_parts, bounds):
            for c in pq.read_table(part, columns=["event_hash"]).column(0).chunks:
                keys[at:at + len(c)] = _key64(_fixed32(c))
                at += len(c)

        def hashes_of(rows: np.ndarray) -> np.ndarray:  # full hashes of the run's rows ``rows`` (sorted)
            out = np.empty(len(rows), dtype="S32")
            where = np.searchsorted(bounds, rows, side="right") - 1
            for j in np.unique(where):
                sel = np.flatnonzero(where == j)
                col = pq.read_table(timeline_parts[j], columns=["event_hash"]).column(0)
                h = np.concatenate([_fixed32(c) for c in col.chunks])
                out[sel] = h[rows[sel] - bounds[j]]
            return out

        keep_all = np.zeros(keys.shape, dtype=bool)
        if len(keys):
            first = _first_of_each_key(keys, hashes_of)
            if len(known):
                for i in range(0, len(first), 1 << 20):
                    f = first[i:i + (1 << 20)]
                    keep_all[f[~known.contains(hashes_of(f), keys[f])]] = True
            else:
                keep_all[first] = True
        per_part = [keys[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        start = 0
        for part, hashes in zip(timeline_parts, per_part):
            keep = keep_all[start:start + len(hashes)]
            start += len(hashes)
            kept = int(keep.sum())
            duplicates += len(hashes) - kept
            if kept == 0:
                part.unlink()
                continue
            if kept < len(hashes):  # the whole part is read only when it must be rewritten
                write_parquet(pq.read_table(part).filter(pa.array(keep)), part, sort=False)  # still sorted
            final.append((part, TIMELINE_DIR, kept))
        for part in other_parts:
            kind = next((k for p, k in _KIND_BY_PREFIX.items() if part.name.startswith(p)), None)
            if kind is None:
                raise CaseError(f"staged file {part.name} is of no known kind")
            final.append((part, kind, pq.read_metadata(part).num_rows))
        return final, duplicates

    def _known_index(self) -> HashIndex:
        """Event hashes of every committed timeline file, read once per file per process (a collection
        commits unit by unit; only files new since the last commit are read)."""
        index = self.__dict__.get("_hash_index")
        if index is None or not index.files <= {f.name for f in self.files(TIMELINE_DIR)}:
            index = self.__dict__["_hash_index"] = HashIndex()
        return add_committed(self.root, index)

    def abort(self, run_id: str, reason: str, **entry: Any) -> None:
        with self.lock():
            self._end_run(run_id)
            self.custody.append("aborted", run=run_id, reason=reason, **entry)


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CaseWriteError(f"cannot write the case {path.parent}: {exc.strerror or exc} (its lock file {path.name} "
                             "cannot be opened for writing; a read-only case can be read, not written)") from exc


def _try_lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` (created if needed), or None when another process holds it."""
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _acquire(fd: int, path: Path, timeout: float | None = None) -> None:
    """Lock ``fd`` exclusively: wait for it, or raise CaseLocked after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or deadline is None:
                raise
            if time.monotonic() >= deadline:
                raise CaseLocked(f"{path.parent}: another process holds the case lock") from exc
            time.sleep(0.05)


@contextlib.contextmanager
def _flock(path: Path, timeout: float | None = None) -> Iterator[None]:
    fd = _open_lock(path)
    try:
        _acquire(fd, path, timeout)
        yield
    finally:
        os.close(fd)  # closing releases the lock
