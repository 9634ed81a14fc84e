"""Chain of custody: read-only evidence hashing and an append-only, hash-chained log.

Each line of ``custody.jsonl`` is one JSON object.  Its ``hash`` is the SHA-256
of the line's canonical JSON without the ``hash`` key, and its ``prev`` is the
previous line's ``hash`` (64 zeros for the first), so changing, removing or
reordering any entry breaks the chain from that entry on.  :func:`verify_chain`
checks it; the head hash (the last entry's ``hash``) can be written in a report
or a notebook so that even a rewrite of the whole log is detectable.
"""

from __future__ import annotations

import base64
import datetime as _dt
import errno
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

from timeline.errors import CaseWriteError, EvidenceNotFound, EvidenceUnreadable, IntegrityError

__all__ = ["FileHashes", "hash_file", "open_evidence", "EvidencePath", "CustodyLog", "verify_chain", "GENESIS", "actor"]

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


class EvidencePath(type(Path())):  # type: ignore[misc]  # the concrete PosixPath/WindowsPath
    """A path whose :meth:`open` goes through :func:`open_evidence`: for readers that take a path and open
    it themselves (dissect.target's loaders and containers, zipfile, tarfile).  Paths derived from it
    (``parent``, ``/``, ``with_suffix``: an image's further segments) are EvidencePaths too.  Opening one for
    writing is refused."""

    def open(self, mode: str = "r", buffering: int = -1, encoding: str | None = None, errors: str | None = None,
             newline: str | None = None):
        if set(mode) - set("rbt"):
            raise PermissionError(errno.EROFS, f"evidence is never opened for writing (mode {mode!r})", str(self))
        fh = open(open_evidence(self), mode, buffering, encoding, errors, newline)
        raw = getattr(fh, "buffer", fh)
        getattr(raw, "raw", raw).name = os.fspath(self)  # as a file opened by name (zipfile reads fh.name)
        return fh


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
    """The append-only custody log of one case.  Appends must happen under the case lock.

    An append is whole or absent: the line is written in full and fsynced, or the file is cut back to
    where it was and :class:`CaseWriteError` says why (a full disk, a read-only case).  A line left without
    its newline by a crash (a torn tail) is not an entry: readers skip it, and the next append (or
    :meth:`repair`) first moves its bytes into a ``repaired`` entry, so nothing is silently dropped.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):
                    return  # a torn tail (or an append in progress): not an entry, see torn()
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

    def torn(self) -> bytes:
        """The bytes after the last complete line (empty when the log ends with a whole entry)."""
        try:
            with open(self.path, "rb") as fh:
                return _torn_tail(fh)[1]
        except FileNotFoundError:
            return b""

    def check_writable(self) -> None:
        """Raise CaseWriteError when the log cannot be opened for appending (nothing is written)."""
        os.close(self._open())

    def repair(self) -> dict[str, Any] | None:
        """Set a torn tail aside in a ``repaired`` entry (under the case lock); None when there is none."""
        fd = self._open()
        try:
            return self._repair(fd)
        finally:
            os.close(fd)

    def append(self, action: str, **fields: Any) -> dict[str, Any]:
        fd = self._open()
        try:
            self._repair(fd)
            entry = self._entry(action, fields)
            self._write(fd, os.fstat(fd).st_size, _canonical(entry) + b"\n")
        finally:
            os.close(fd)
        log.debug("custody %s #%d", action, entry["seq"])
        return entry

    def _entry(self, action: str, fields: dict[str, Any]) -> dict[str, Any]:
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
        return entry

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CaseWriteError(f"cannot write the custody log {self.path}: {exc.strerror or exc}") from exc

    def _repair(self, fd: int) -> dict[str, Any] | None:
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as fh:
            start, torn = _torn_tail(fh)
        if not torn:
            return None
        entry = self._entry("repaired", {
            "torn": {"offset": start, "bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest(),
                     "base64": base64.b64encode(torn).decode("ascii")},
            "note": f"the custody log ended in an incomplete line of {len(torn)} byte(s) at offset {start} (an append "
                    "cut short by a crash or a full disk); it is not part of the chain; its bytes are kept here"})
        self._write(fd, start, _canonical(entry) + b"\n", restore=torn)
        log.warning("custody log %s: an incomplete last line (%d bytes) was set aside in entry #%d",
                    self.path, len(torn), entry["seq"])
        return entry

    def _write(self, fd: int, at: int, data: bytes, restore: bytes = b"") -> None:
        """Write ``data`` at the end (``at``, after cutting the file there) in full and fsync it; on any
        failure cut the file back to ``at`` (and put ``restore`` back) and raise CaseWriteError."""
        try:
            if os.fstat(fd).st_size != at:
                os.ftruncate(fd, at)
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, at)
                if restore:
                    _write_all(fd, restore)
                os.fsync(fd)
            except OSError:  # left torn: the next append sets the tail aside
                log.debug("custody log %s: could not cut back a failed append", self.path)
            raise CaseWriteError(f"cannot append to the custody log {self.path}: {exc.strerror or exc}; nothing was "
                                 "recorded (free some space or make the case writable, then run the command again)") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - write(2) returns an error rather than 0 on a regular file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def _torn_tail(fh: Any) -> tuple[int, bytes]:
    """(offset, bytes) of what follows the last newline of a binary file."""
    size = pos = fh.seek(0, os.SEEK_END)
    start = 0
    while pos > 0:
        step = min(pos, 1 << 16)
        fh.seek(pos - step)
        i = fh.read(step).rfind(b"\n")
        if i >= 0:
            start = pos - step + i + 1
            break
        pos -= step
    fh.seek(start)
    return start, fh.read(size - start)


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
