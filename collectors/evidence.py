"""Evidence access, apart from parsing: what an evidence item (a file, a folder, a disk image, the live host) holds,
and its integrity.

:func:`resolve_item` turns a path the analyst gives into an :class:`Item`: the files that make it up, each with the
collector of the registry that reads it ("" for a file read through another: an image's further segment, a file of a
triage folder), and the files no collector reads (with the reason).  A folder is walked by ``lstat`` only
(:func:`walk_folder`): links are never followed, fifos and devices never opened.

Integrity: :func:`hash_before` hashes every file (SHA-256 and MD5, read-only, streamed) before anything parses it and
names the item by the manifest of those hashes (its ``evidence_id``); :func:`hash_after` re-hashes (SHA-256) after it
was read and lists the files that changed; :func:`evidence_entry` is the custody log's record of both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat as _stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from collectors import REGISTRY, LinkCollector, collector_for
from collectors.base import name_bytes, shown_name
from collectors.hosts import folder_host
from collectors.links import link_hashes
from collectors.target import LIVE, TargetCollector, image_segments, link_leaves
from timeline.custody import FileHashes, hash_file
from timeline.errors import EvidenceNotFound, EvidenceUnreadable, UnknownFormat
from timeline.schema import HOST_FOLDER, HOST_GIVEN

__all__ = ["Item", "Entry", "resolve", "resolve_item", "check_only", "walk_folder", "whole_folder", "hash_before",
           "hash_after", "evidence_entry", "recorded_path", "is_triage_folder", "image_files"]

log = logging.getLogger(__name__)


@dataclass
class Item:
    """An evidence item as resolved (:func:`resolve_item`): its files, and once hashed (:func:`hash_before`) their
    hashes and the item's ``evidence_id``."""

    path: Path  # as given, absolute
    files: list[tuple[str, Path, str]]  # (path inside the evidence, real path, collector name)
    unrecognised: list[str]
    hashes: dict[str, FileHashes] = field(default_factory=dict)
    evidence_id: str = ""
    links: set[Path] = field(default_factory=set)  # files that are symbolic links: hashed as the target they store
    host: str | None = None  # the analyst's --host for this item

    def host_of(self, rel: str) -> tuple[str | None, str | None]:
        """The host of the artifact at ``rel`` before it is read, and its source (collectors.hosts): the analyst's,
        else a folder named like a host (the item's own folder included; never a folder above the item)."""
        if self.host:
            return self.host, HOST_GIVEN
        if rel == LIVE:
            return None, None
        folder = folder_host(self.path.name if self.path.is_dir() else None, rel)
        return (folder, HOST_FOLDER) if folder else (None, None)

    def hash(self, real: Path, md5: bool = True, parallel: bool = True) -> FileHashes:
        """The identity of one of its files (a link's: the target it stores; the link is never followed)."""
        return link_hashes(real, md5=md5) if real in self.links else hash_file(real, md5=md5, parallel=parallel)


def resolve(path: str | os.PathLike, only: Iterable[str] | None = None) -> list[tuple[str, Path, str]]:
    """What collecting ``path`` would read: (path inside the evidence, real file, collector; "" for a
    further image segment).  Raises the error collection would raise, without touching any case."""
    return resolve_item(Path(path), check_only(only)).files


def check_only(only: Iterable[str] | None) -> frozenset[str] | None:
    """The collector names of ``--only`` (None: every collector); an unknown name raises :class:`UnknownFormat`."""
    if only is None:
        return None
    names = frozenset(only)
    unknown = names - {c.name for c in REGISTRY}
    if unknown:
        raise UnknownFormat(f"unknown collector(s) {sorted(unknown)}; known: {', '.join(c.name for c in REGISTRY)}")
    return names


def _tried(only: frozenset[str] | None) -> str:
    """The formats an unrecognised file was offered to (for the error message)."""
    return ", ".join(c.name for c in REGISTRY if (only is None or c.name in only) and c is not LinkCollector)


def resolve_item(path: Path, only: frozenset[str] | None = None) -> Item:
    """The evidence item at ``path`` ("local": the live host), not yet hashed: a file a collector of the registry
    reads (a disk image with its further segments), a triage folder read as one target (every file in it listed,
    to be hashed), or a folder whose files are each read by the collector that recognises them.  Raises
    :class:`EvidenceNotFound`, :class:`EvidenceUnreadable` or :class:`UnknownFormat` (nothing recognised)."""
    if str(path) == "local":
        # the live host, read-only: its root opened as an OS tree, only its log and autostart locations read
        if only is not None and TargetCollector.name not in only:
            raise UnknownFormat("the live host is read by the target collector, which --only leaves out")
        return Item(Path("/"), [(LIVE, Path("/"), TargetCollector.name)], [])
    path = Path(os.path.abspath(path))
    if not path.exists():
        raise EvidenceNotFound(f"evidence not found: {shown_name(str(path))}")
    # the path the analyst names may be a link (to a disk, a mount): the evidence is where it leads, and links
    # inside it are then never followed
    path = Path(os.path.realpath(path))
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise EvidenceUnreadable(f"cannot read evidence {shown_name(str(path))}: permission denied")
        cls = collector_for(str(path), only)
        if cls is None:
            raise UnknownFormat(f"{shown_name(str(path))}: unknown format (no collector recognises it; tried: {_tried(only)})")
        if cls is TargetCollector:
            cls.check_compatible(str(path))  # a bogus image fails here, before the case is touched
            return Item(path, image_files(path, path.parent), [])
        return Item(path, [(shown_name(path.name), path, cls.name)], [])
    if not path.is_dir():
        raise UnknownFormat(f"{shown_name(str(path))}: not a regular file or folder")
    entries = list(walk_folder(path))
    if (only is None or TargetCollector.name in only) and is_triage_folder(path):
        # an OS tree or a KAPE / Velociraptor / UAC collection: read as one target (host, zone, OS artifacts);
        # every file in it is hashed before and after (a link: the target it stores, never followed)
        files = [(e.rel, e.real, "") for e in entries if e.kind in ("file", "link")]
        item = Item(path, [(shown_name(path.name) + "/", path, TargetCollector.name)] + files,
                     [f"{e.rel} ({e.what})" for e in entries if e.kind not in ("file", "link")])
        item.links = {e.real for e in entries if e.kind == "link"}
        return item
    files, unrecognised, links = [], [], set()
    found: list[tuple[str, Path, type]] = []
    for e in entries:
        if e.kind == "link":
            # listed by the link collector, never followed (its target, when inside, is read under its own name)
            if only is None or LinkCollector.name in only:
                found.append((e.rel, e.real, LinkCollector))
                links.add(e.real)
            else:
                unrecognised.append(f"{e.rel} ({e.what}, not followed)")
        elif e.kind != "file":
            unrecognised.append(f"{e.rel} ({e.what})")
        elif not os.access(e.real, os.R_OK):
            unrecognised.append(f"{e.rel} (unreadable)")
        elif (cls := collector_for(str(e.real), only)) is None:
            unrecognised.append(e.rel)
        else:
            found.append((e.rel, e.real, cls))
    # a file another image reads through (a further segment, a VMDK extent, a differencing disk's parent) is
    # part of that image's evidence, not an image of its own, whatever the order of the names
    images = {real: image_files(real, path) for _, real, cls in found if cls is TargetCollector}
    parts = {r for image in images.values() for _, r, c in image if not c}
    root = str(path)
    for rel, real, cls in found:
        if real in parts:
            continue
        if cls is TargetCollector:
            out = [r for _, r, _ in images[real] if r.is_symlink() and link_leaves(r, root)]
            if out:  # dissect would read it through a link out of the evidence
                unrecognised.append(f"{rel} (reads through {shown_name(str(out[0]))}, a link leading out of the "
                                    "evidence: not read)")
                continue
            try:
                cls.check_compatible(str(real))
            except (UnknownFormat, EvidenceNotFound) as exc:  # an image of the folder that cannot be read
                unrecognised.append(f"{rel} ({shown_name(str(exc))})")
                continue
            files += images[real]
        else:
            files.append((rel, real, cls.name))
    if not files:
        raise UnknownFormat(f"{shown_name(str(path))}: no recognised artifact in this folder (tried: {_tried(only)}; "
                            f"{len(unrecognised)} file(s) not recognised)")
    item = Item(path, files, unrecognised)
    item.links = links & {real for _, real, _ in files}
    return item


@dataclass(frozen=True)
class Entry:
    """One entry of a folder given as evidence."""

    rel: str  # path inside the folder, posix, as shown (see collectors.base.shown_name), unique in the folder
    real: Path  # where it is (the name as stored)
    kind: str  # "file", "link" (symbolic), "other" (a fifo, socket, device, unreadable folder...: never opened)
    what: str = ""  # for a link, its target; for another entry, what it is


_KINDS = ((_stat.S_ISFIFO, "fifo"), (_stat.S_ISSOCK, "socket"), (_stat.S_ISCHR, "character device"),
          (_stat.S_ISBLK, "block device"))


def walk_folder(root: Path) -> Iterator[Entry]:
    """Every entry under ``root``, by ``lstat`` only: iteratively (any depth), names sorted, a folder's files before
    its sub-folders.  Symbolic links are listed and never followed, to a file or into a folder; a fifo, socket
    or device is listed and never opened; a sub-folder that cannot be listed is listed (the root: an error).
    Names that are not UTF-8 are shown with \\xNN (:func:`collectors.base.shown_name`); a shown name that
    another already took gets " [name bytes <hex>]" (only a name stored with a literal backslash can)."""
    stack: list[tuple[Path, str]] = [(root, "")]
    used: set[str] = set()
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                names = sorted((e.name, e) for e in it)
        except OSError as exc:
            if not prefix:
                raise EvidenceUnreadable(f"cannot read evidence folder {shown_name(str(folder))}: {exc.strerror}") from exc
            yield Entry(shown_name(prefix[:-1]), folder, "other", f"folder not readable: {exc.strerror}")
            continue
        subdirs = []
        for name, e in names:
            rel = shown_name(prefix + name)
            if rel in used:
                rel = f"{rel} [name bytes {name_bytes(prefix + name) or (prefix + name).encode().hex()}]"
            used.add(rel)
            real = Path(e.path)
            try:
                st = e.stat(follow_symlinks=False)
            except OSError as exc:
                yield Entry(rel, real, "other", f"not readable: {exc.strerror}")
                continue
            if _stat.S_ISDIR(st.st_mode):
                subdirs.append((real, prefix + name + "/"))
            elif _stat.S_ISREG(st.st_mode):
                yield Entry(rel, real, "file")
            elif _stat.S_ISLNK(st.st_mode):
                yield Entry(rel, real, "link", f"symbolic link to {shown_name(os.readlink(real))}")
            else:
                yield Entry(rel, real, "other", next((w for test, w in _KINDS if test(st.st_mode)), "not a regular file"))
        stack.extend(reversed(subdirs))


def whole_folder(rel: str) -> bool:
    """The entry of a folder read as one target (a triage folder ``name/``, the live host ``local:/``): its
    identity is the manifest of its files, it is not hashed as a file."""
    return rel.endswith("/")


def hash_before(items: list[Item]) -> None:
    """Hash every file of ``items`` (SHA-256 and MD5) before anything reads it, into ``it.hashes``, and name each
    item by the manifest of its files' hashes (``it.evidence_id``).  A triage folder read as a whole is identified
    by the manifest of its files; the live host by its name and the time it is read (it changes while it is read:
    each collection is its own evidence item).  Files are hashed in threads (:func:`_hash_all`)."""
    jobs = [(it, rel, real) for it in items for rel, real, _ in it.files if not whole_folder(rel)]
    for (it, rel, _), h in zip(jobs, _hash_all(jobs, md5=True)):
        it.hashes[rel] = h
    for it in items:
        for rel, real, _ in it.files:
            if rel == LIVE:
                it.hashes[rel] = FileHashes(0, hashlib.sha256(
                    f"live host {socket.gethostname()} read at {time.time_ns()}".encode()).hexdigest())
            elif whole_folder(rel):
                inside = sorted((r, it.hashes[r]) for r, p, _ in it.files if not whole_folder(r))
                it.hashes[rel] = FileHashes(sum(h.size for _, h in inside), hashlib.sha256(
                    "\n".join(f"{r}\t{h.sha256}" for r, h in inside).encode()).hexdigest())
        manifest = "\n".join(f"{rel}\t{it.hashes[rel].sha256}" for rel, _, _ in sorted(it.files))
        it.evidence_id = hashlib.sha256(manifest.encode()).hexdigest()[:16]


def _hash_all(jobs: list[tuple[Item, str, Path]], md5: bool) -> list[FileHashes]:
    """The hashes of the files ``jobs`` (item, path inside, real path), in order.  Threads (hashlib releases the
    GIL): one file per thread when there are enough files, else MD5 and SHA-256 of each file in two threads."""
    hash_threads = max(1, min(4, os.cpu_count() or 1))
    split = len(jobs) < hash_threads
    if len(jobs) == 1:
        return [jobs[0][0].hash(jobs[0][2], md5=md5, parallel=split)]
    with ThreadPoolExecutor(max_workers=hash_threads) as pool:
        return list(pool.map(lambda j: j[0].hash(j[2], md5=md5, parallel=split), jobs))


def hash_after(files: list[tuple[Item, str, Path]]) -> tuple[list[FileHashes], list[str]]:
    """SHA-256 of each of ``files`` (item, path inside, real path) after it was read, and a line for each whose hash
    differs from its item's hash before."""
    after = _hash_all(files, md5=False)
    changed = [f"{real}: sha256 before {it.hashes[rel].sha256}, after {h.sha256}"
               for (it, rel, real), h in zip(files, after) if h.sha256 != it.hashes[rel].sha256]
    return after, changed


def evidence_entry(items: list[Item], files: list[tuple[Item, str, Path]], after: list[FileHashes]) -> list[dict[str, Any]]:
    """The custody entry's evidence list for the given files (hashes before, SHA-256 after)."""
    out = []
    for it in items:
        mine = [{"path": rel, **recorded_path(real), **it.hashes[rel].as_dict(), "sha256_after": h.sha256,
                 **({"link": True} if real in it.links else {})}
                for (fit, rel, real), h in zip(files, after) if fit is it]
        if mine or not files:
            ev = recorded_path(it.path)
            out.append({"evidence_id": it.evidence_id, "path": ev["real_path"], **({"path_bytes": ev["real_path_bytes"]}
                        if "real_path_bytes" in ev else {}), "files": mine, "unrecognised": it.unrecognised})
    return out


def recorded_path(real: Path) -> dict[str, str]:
    """A path of this machine as the custody log records it: ``real_path`` as shown (valid UTF-8), and
    ``real_path_bytes`` (hex of the path as stored) when it is not UTF-8, from which verify opens it."""
    raw = name_bytes(str(real))
    return {"real_path": shown_name(str(real)), **({"real_path_bytes": raw} if raw is not None else {})}


def is_triage_folder(path: Path) -> bool:
    """dissect recognises the folder as an OS tree or a triage collection (not a mere folder of logs)."""
    try:
        from dissect.target.loader import find_loader

        return find_loader(path) is not None
    except Exception:
        return False


def image_files(first: Path, root: Path) -> list[tuple[str, Path, str]]:
    """An image's files: the first segment (read by the target collector), then the others (hashed only)."""
    out = []
    for i, seg in enumerate(image_segments(first)):
        try:
            rel = seg.relative_to(root).as_posix()
        except ValueError:
            rel = seg.name
        out.append((shown_name(rel), seg, TargetCollector.name if i == 0 else ""))
    return out
