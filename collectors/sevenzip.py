"""7z archives (triage collections are often shipped as 7z), read member by member with py7zr.

dissect.target opens a ``.7z`` but finds no files in it, so :class:`collectors.target.TargetCollector`
walks 7z archives with :func:`members` instead: every member, in archive order, as a private temporary
copy that exists only while the caller handles it (the next member is decompressed after the caller
moved on), so the temporary space is one member, whatever the archive's size.  A solid archive is
decompressed once, sequentially (py7zr's extraction with a writer per member, run in a helper thread
that waits for the caller between members).

Member record (:class:`Member`): ``index`` (position in the archive), ``name`` (as stored, ``/``
separators), ``size``, the times 7z stores (``mtime_ns`` last write, ``ctime_ns`` creation,
``atime_ns`` last access: 100 ns FILETIMEs, None when absent), ``is_dir``, and for files ``path`` (the
private copy) and ``sha256``.

What cannot be read is reported, never dropped (:class:`Problem`, ``kind``):

* ``unsafe_name``: a name that climbs out of the archive (``..``, absolute, drive letter): not
  extracted (py7zr refuses such names);
* ``undecompressable``: a member whose data fails to decompress or fails its CRC; members after it in
  the same solid block cannot be reached either (each is reported); members of other blocks are read;
* ``encrypted``: an archive whose data needs a password: nothing is read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from collectors.base import read_magic
from timeline.custody import open_evidence
from timeline.errors import UnknownFormat

__all__ = ["MAGIC", "Member", "Problem", "is_7z", "check", "members"]

log = logging.getLogger(__name__)

MAGIC = b"7z\xbc\xaf\x27\x1c"
_FILETIME_EPOCH = 116444736000000000  # 1970-01-01 in 100 ns since 1601


@dataclass
class Member:
    index: int
    name: str
    size: int
    mtime_ns: int | None
    ctime_ns: int | None
    atime_ns: int | None
    is_dir: bool
    path: str | None = None
    sha256: str | None = None


@dataclass
class Problem:
    name: str
    kind: str
    message: str


def is_7z(path: str) -> bool:
    return read_magic(path, 6) == MAGIC


def _open(path: str):
    import py7zr  # LGPL-2.1-or-later; imported only where 7z archives are read

    fh = os.fdopen(open_evidence(path), "rb")
    try:
        # a file object (not a name): py7zr then decompresses sequentially, in this process
        return py7zr.SevenZipFile(fh, mode="r"), fh
    except Exception as exc:
        fh.close()
        raise UnknownFormat(f"{path}: not a readable 7z archive: {type(exc).__name__}: {exc}") from exc


def check(path: str) -> None:
    """Raise :class:`UnknownFormat` unless ``path`` is a 7z archive whose member list py7zr reads."""
    z, fh = _open(path)
    try:
        list(z.files)
    finally:
        z.close()
        fh.close()


def _ns(filetime: Any) -> int | None:
    if filetime is None:
        return None
    return (int(filetime) - _FILETIME_EPOCH) * 100


def _unsafe(name: str) -> bool:
    """A member name that climbs out of the archive (the names py7zr refuses to extract)."""
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    return (not parts or ".." in parts or name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)))


class _Stop(Exception):
    """The caller stopped reading: the extraction thread ends."""


def members(path: str, tmp: str, problems: list[Problem]) -> Iterator[Member]:
    """Every member of the 7z archive ``path`` in archive order; files extracted one at a time under ``tmp``
    (each copy removed when the caller asks for the next member).  What cannot be read goes to ``problems``."""
    from py7zr.io import Py7zIO, WriterFactory

    z, fh = _open(path)
    try:
        files = list(z.files)
        if z.needs_password():
            problems.append(Problem("", "encrypted", "the archive's data is encrypted (needs a password): not read"))
            return
        info = {f.filename: (i, f) for i, f in enumerate(files)}
        wanted: list[str] = []
        for i, f in enumerate(files):
            p = f._file_info  # the stored properties: lastwritetime, creationtime, lastaccesstime...
            name = f.filename
            if _unsafe(name):
                problems.append(Problem(name, "unsafe_name", "member name climbs out of the archive: not extracted"))
                continue
            if f.is_directory:
                yield Member(i, name, 0, _ns(p.get("lastwritetime")), _ns(p.get("creationtime")),
                             _ns(p.get("lastaccesstime")), True)
            elif f.is_symlink or f.is_junction or f.is_socket:
                problems.append(Problem(name, "unsafe_name", "member is a link or socket: not extracted"))
            else:
                wanted.append(name)
        folder_of = {f.filename: id(f.folder) for f in files if not f.emptystream}
        done: set[str] = set()
        while wanted:
            failed = yield from _extract(z, path, tmp, wanted, info, done, problems, Py7zIO, WriterFactory)
            left = [n for n in wanted if n not in done]
            if failed is None or not left:
                break
            # the failed member's solid block cannot be read past it: report its other members, read the rest
            block = folder_of.get(failed)
            lost = [n for n in left if n != failed and block is not None and folder_of.get(n) == block]
            for n in lost:
                problems.append(Problem(n, "undecompressable", f"not decompressed: in the same solid block as {failed}, "
                                                               "which failed"))
            wanted = [n for n in left if n != failed and n not in lost]
            z.close()
            fh.close()
            z, fh = _open(path)
    finally:
        z.close()
        fh.close()


def _extract(z, path: str, tmp: str, wanted: list[str], info: dict, done: set, problems: list,
             Py7zIO, WriterFactory) -> Iterator[Member]:
    """One sequential extraction pass over ``wanted``; returns the name of the member that failed, or None."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    resume = threading.Event()
    stop = threading.Event()

    class Writer(Py7zIO):
        def __init__(self, name: str, dest: str):
            self.name, self.dest = name, dest
            self.out = open(dest, "wb")
            self.hash = hashlib.sha256()
            self.n = 0

        def write(self, s):
            self.hash.update(s)
            self.n += len(s)
            return self.out.write(s)

        def read(self, size=None):
            return b""

        def seek(self, offset, whence=0):
            return self.n

        def flush(self):
            self.out.flush()

        def size(self):
            return self.n

        def close(self):
            if not self.out.closed:
                self.out.close()

    state: dict[str, Any] = {"current": None, "count": 0}

    def hand_over() -> None:
        """The member written before is complete and its CRC checked (py7zr moved on): the caller's turn."""
        w = state["current"]
        state["current"] = None
        if w is None:
            return
        w.close()
        handoff.put(("member", w))
        resume.wait()
        resume.clear()
        if stop.is_set():
            raise _Stop

    class Factory(WriterFactory):
        def create(self, filename: str):
            hand_over()
            state["count"] += 1
            name = filename if filename in info else _match(filename, info)
            dest = os.path.join(tmp, f"7z-{state['count']:06d}")
            w = Writer(name, dest)
            state["current"] = w
            return w

    def run() -> None:
        try:
            z.extract(targets=wanted, factory=Factory())
            hand_over()
            handoff.put(("end", None))
        except _Stop:
            handoff.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, with the member it hit
            w = state["current"]
            if w is not None:
                w.close()
            handoff.put(("error", (w.name if w is not None else _crc_name(exc), exc)))

    thread = threading.Thread(target=run, name="forensics-7z", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = handoff.get()
            if kind == "end":
                return None
            if kind == "error":
                name, exc = item
                problems.append(Problem(name or "", "undecompressable",
                                        f"cannot decompress: {type(exc).__name__}: {exc}"))
                if w := state["current"]:
                    _remove(w.dest)
                return name
            w = item
            i, f = info.get(w.name, (-1, None))
            p = f._file_info if f is not None else {}
            done.add(w.name)
            try:
                yield Member(i, w.name, w.n, _ns(p.get("lastwritetime")), _ns(p.get("creationtime")),
                             _ns(p.get("lastaccesstime")), False, w.dest, w.hash.hexdigest())
            finally:
                _remove(w.dest)
                resume.set()
    finally:
        if thread.is_alive():
            stop.set()
            resume.set()
            thread.join()
            if (w := state["current"]) is not None:
                w.close()
                _remove(w.dest)


def _match(filename: str, info: dict) -> str:
    """The stored name py7zr wrote ``filename`` for (it strips a leading '/' and './', suffixes duplicates)."""
    for name in info:
        if name.lstrip("/").removeprefix("./") == filename:
            return name
    return filename


def _crc_name(exc: BaseException) -> str | None:
    args = getattr(exc, "args", ())
    return args[2] if len(args) >= 3 and isinstance(args[2], str) else None


def _remove(path: str) -> None:
    try:
        os.chmod(path, 0o600)
        os.unlink(path)
    except FileNotFoundError:
        pass
