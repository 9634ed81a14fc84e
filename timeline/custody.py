"""Chain of custody: read-only evidence hashing and an append-only, hash-chained log.

Each line of ``custody.jsonl`` is one JSON object.  Its ``hash`` is the SHA-256
of the line's canonical JSON without the ``hash`` key, and its ``prev`` is the
previous line's ``hash`` (64 zeros for the first), so changing, removing or
reordering any entry breaks the chain from that entry on.  :func:`verify_chain`
checks it; the head hash (the last entry's ``hash``) can be written in a report
or a notebook so that even a rewrite of the whole log is detectable.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from timeline.errors import EvidenceNotFound, EvidenceUnreadable, IntegrityError

__all__ = ["FileHashes", "hash_file", "open_evidence", "CustodyLog", "verify_chain", "GENESIS", "actor"]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_BLOCK = 1 << 20


@dataclass(frozen=True)
class FileHashes:
    size: int
    sha256: str
    md5: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {"size": self.size, "sha256": self.sha256}
        if self.md5 is not None:
            d["md5"] = self.md5
        return d


def open_evidence(path: str | os.PathLike) -> int:
    """Open evidence for reading only (never for writing), without touching its access time when allowed."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:
            if not noatime:
                raise
            return os.open(path, flags)  # O_NOATIME needs ownership; fall back to a plain read-only open
    except FileNotFoundError as exc:
        raise EvidenceNotFound(f"evidence not found: {path}") from exc
    except OSError as exc:
        raise EvidenceUnreadable(f"cannot read evidence {path}: {exc.strerror or exc}") from exc


def hash_file(path: str | os.PathLike, md5: bool = True, parallel: bool = True) -> FileHashes:
    """Stream a file through SHA-256 (and MD5) in one read.

    ``parallel``: MD5 of each block runs in a helper thread while SHA-256 does (hashlib releases
    the GIL), for one big file.  When many files are hashed by a pool of threads, pass False:
    both digests then run in the calling thread, which is faster than a thread per block.
    Blocks are read into two reused buffers (no fresh memory per block).
    """
    fd = open_evidence(path)
    sha = hashlib.sha256()
    md = hashlib.md5() if md5 else None
    size = 0
    bufs = [bytearray(_BLOCK), bytearray(_BLOCK)] if md is not None and parallel else [bytearray(_BLOCK)]
    try:
        with os.fdopen(fd, "rb", buffering=0) as fh:
            prev: threading.Thread | None = None
            i = 0
            while True:
                buf = bufs[i % len(bufs)]
                i += 1
                n = fh.readinto(buf)
                if not n:
                    break
                size += n
                block = memoryview(buf)[:n]
                if md is not None:
                    if parallel:
                        # MD5 of this block runs while SHA-256 does; the next block goes to the other buffer.
                        if prev is not None:
                            prev.join()
                        prev = threading.Thread(target=md.update, args=(block,))
                        prev.start()
                    else:
                        md.update(block)
                sha.update(block)
            if prev is not None:
                prev.join()
    except OSError as exc:
        raise EvidenceUnreadable(f"cannot read evidence {path}: {exc.strerror or exc}") from exc
    return FileHashes(size, sha.hexdigest(), md.hexdigest() if md is not None else None)


def actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no login name in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


class CustodyLog:
    """The append-only custody log of one case.  Appends must happen under the case lock."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise IntegrityError(f"custody log line {lineno} is not valid JSON: {exc}") from exc

    def head(self) -> tuple[int, str]:
        """(number of entries, hash of the last one)."""
        seq, last = 0, GENESIS
        for entry in self.entries():
            seq, last = entry.get("seq", seq), entry.get("hash", last)
        return seq, last

    def append(self, action: str, **fields: Any) -> dict[str, Any]:
        seq, prev = self.head()
        entry = {
            "seq": seq + 1,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
            "actor": actor(),
            "action": action,
            **fields,
            "prev": prev,
        }
        entry["hash"] = _entry_hash(entry)
        line = _canonical(entry) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        log.debug("custody %s #%d", action, entry["seq"])
        return entry


def verify_chain(custody: CustodyLog) -> list[str]:
    """Return a list of problems in the chain (empty when intact)."""
    problems: list[str] = []
    prev, expected_seq = GENESIS, 1
    try:
        for entry in custody.entries():
            seq = entry.get("seq")
            if seq != expected_seq:
                problems.append(f"custody entry #{seq}: expected sequence number {expected_seq}")
            if entry.get("prev") != prev:
                problems.append(f"custody entry #{seq}: does not chain to the previous entry (prev hash mismatch)")
            if entry.get("hash") != _entry_hash(entry):
                problems.append(f"custody entry #{seq}: content does not match its hash (entry was altered)")
            prev = entry.get("hash", "")
            expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
    except IntegrityError as exc:
        problems.append(str(exc))
    return problems
