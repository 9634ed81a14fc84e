"""File-system timelines read by the C libraries: The Sleuth Kit (ext2/3/4), libfsntfs (NTFS, and a loose
``$MFT`` of a triage collection), libfsxfs (XFS).

Record schema (one row per file name, time kind and NTFS attribute), the same as every file-system row::

    timestamp       the inode's (ext, XFS) or the attribute's (NTFS $STANDARD_INFORMATION, $FILE_NAME) time,
                    UTC, ns (NTFS keeps its 100 ns: ns = (FILETIME - 116444736000000000) * 100)
    timestamp_desc  Content Modification Time | Last Access Time | Metadata Modification Time | Creation Time
    source          FILE
    artifact        fs:ext | fs:xfs | fs:ntfs:$SI | fs:ntfs:$FN
    path            the name's path in the file system (prefixed by the drive or ``fsN:`` in an image);
                    deleted names as The Sleuth Kit's ``fls`` rebuilds them, names whose directory is gone
                    under ``/$OrphanFiles``
    message         "<macb> [$SI |$FN ]<path>[ -> <link target>] (<mode>, <size> bytes)[ (deleted)]"
    attrs           {"inode", "size", "mode", "uid", "gid", "fs", "macb", "times_from"} and, for what is not
                    an allocated name, "deleted": true ("realloc": true when the inode was reused since);
                    "name_bytes" (hex of the path as stored) for a path that is not valid UTF-8 (shown with
                    \\xNN); a symbolic link's "link_target" (never followed; "link_target_bytes" when not UTF-8)
    record_ref      "<path> inode=<inode or MFT record number>"
    event_hash      event_hash("FILE", evidence_id, path, inode, "$SI"|"$FN"|"", M|A|C|B, ns)

Every entry of the file system is read once, in order (the MFT record by record; directories once each), so
the time is linear in the number of entries; a file system can be split into ``parts`` (ranges of MFT records;
for ext and XFS, folders: each leaf folder listed by one part) read by separate workers, together giving exactly
the rows of one read.
dissect stays the reader of everything else (OS plugins, registry, the file systems named here when the C
library refuses them, FAT, archives, collection folders).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import stat as _stat
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import orjson
import pyarrow as pa

from collectors.base import Artifact, ArtifactReport, Collector, RecordError, read_magic
from collectors.evtx_format import FILETIME_EPOCH
from timeline.errors import UnknownFormat
from timeline.schema import NS_MAX, NS_MIN, SCHEMA, TZ_SOURCE_UTC, cap_messages

__all__ = ["FS_LIBRARIES", "FS_READERS", "WHOLE", "Context", "Counts", "MftCollector", "Part", "Mft", "USN_JOURNAL", "fs_tables", "read_counts",
           "filetime_ns", "sniff", "sniff_file", "volume_stream", "volume_tables"]

log = logging.getLogger(__name__)

_KINDS = (("M", "Content Modification Time"), ("A", "Last Access Time"), ("C", "Metadata Modification Time"),
          ("B", "Creation Time"))
ORPHANS = "/$OrphanFiles"  # where The Sleuth Kit lists names whose directory is gone


# --------------------------------------------------------------------------------------------------------
# recognising a file system by content
# --------------------------------------------------------------------------------------------------------

def sniff(head: bytes) -> str | None:
    """The file system whose boot sector or superblock opens ``head`` (the first 4 KiB of a volume):
    ``ext`` (ext2/3/4), ``xfs``, ``ntfs``, ``exfat``, ``fat``; None for anything else."""
    if head[3:11] == b"NTFS    ":
        return "ntfs"
    if head[3:11] == b"EXFAT   ":
        return "exfat"
    if head[:4] == b"XFSB":
        return "xfs"
    if len(head) >= 1084 and head[1080:1082] == b"\x53\xef":
        return "ext"
    if head[510:512] == b"\x55\xaa" and (head[54:59] in (b"FAT12", b"FAT16") or head[82:87] == b"FAT32"):
        return "fat"
    return None


def sniff_file(path: str) -> str | None:
    """:func:`sniff` of a file (read-only)."""
    return sniff(read_magic(path, 4096))


# --------------------------------------------------------------------------------------------------------
# a volume as the C libraries want it
# --------------------------------------------------------------------------------------------------------

class _Stream(io.RawIOBase):
    """A read-only window ``[offset, offset + size)`` of a file-like object (an image file, a dissect volume)
    with the ``get_size`` libbfio asks for; closing it closes ``fh`` when it owns it."""

    def __init__(self, fh, offset: int = 0, size: int | None = None, own: bool = False):
        super().__init__()
        self._fh, self._base, self._own = fh, offset, own
        if size is None:
            size = fh.seek(0, os.SEEK_END) - offset
        self._size, self._pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def get_size(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = offset if whence == os.SEEK_SET else self._pos + offset if whence == os.SEEK_CUR else self._size + offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        size = max(0, min(size, self._size - self._pos))
        if not size:
            return b""
        self._fh.seek(self._base + self._pos)
        data = self._fh.read(size)
        self._pos += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._own and not self.closed:
            self._fh.close()
        super().close()


def volume_stream(fh, offset: int = 0, size: int | None = None, own: bool = False) -> _Stream:
    """A file system's bytes as the C libraries read them: ``size`` bytes of ``fh`` from ``offset``."""
    return _Stream(fh, offset, size, own)


# --------------------------------------------------------------------------------------------------------
# entries: (path, inode, size, st_mode, uid, gid, label, m, a, c, b, deleted, extra) with times in ns or None
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """Which share of a file system one worker reads: part ``k`` of ``n`` (ranges of MFT records for NTFS; for ext
    and XFS the names of the folders it owns, :func:`_tsk_entries`).  The ``n`` parts together give exactly the
    rows of one whole read."""

    k: int = 0
    n: int = 1


WHOLE = Part()


@dataclass
class Counts:
    """What a read saw besides rows, for the artifact's report."""

    entries: int = 0
    deleted: int = 0
    orphans: int = 0
    no_metadata: int = 0  # deleted names whose inode is gone (no times to show)
    errors: list[RecordError] = field(default_factory=list)


def _name(raw: bytes) -> tuple[str, bool]:
    """A stored name as shown (undecodable bytes as ``\\xNN``), and whether it had to be changed for that."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), True


def _link(target: bytes | str) -> dict[str, str]:
    """A symbolic link's target as rows show it (never followed): ``link_target`` and, when it is not UTF-8,
    ``link_target_bytes`` (hex)."""
    if isinstance(target, str):
        return {"link_target": target}
    shown, bad = _name(target)
    return {"link_target": shown, "link_target_bytes": target.hex()} if bad else {"link_target": shown}


_TSK_TYPE_MODE = {1: _stat.S_IFREG, 2: _stat.S_IFDIR, 3: _stat.S_IFIFO, 4: _stat.S_IFCHR, 5: _stat.S_IFBLK,
                  6: _stat.S_IFLNK, 8: _stat.S_IFSOCK, 10: _stat.S_IFREG, 11: _stat.S_IFDIR}


def _tsk_entries(fh, part: Part, counts: Counts) -> Iterator[tuple]:
    """Every name of an ext2/3/4 file system as ``fls -r`` lists it (deleted and orphan names included), read
    with The Sleuth Kit: one directory at a time, each inode once through its name.

    Part ``k`` of ``n`` gives the names of the directories it owns: a directory with no sub-directory (link count
    2), a deleted one and TSK's ``$OrphanFiles`` belong, with all beneath them, to part ``inode % n`` and only that
    part lists them; a directory with sub-directories is listed by every part (to find them), its names given by
    part ``inode % n``.  The parts list each leaf directory once: the walk is split, not repeated.  The link count
    only decides who lists what: a wrong one (a crafted inode) moves work, never a row."""
    import pytsk3

    class Img(pytsk3.Img_Info):  # as dfVFS wraps a Python file object for The Sleuth Kit
        def __init__(self, stream):
            self._stream = stream
            super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

        def read(self, offset, size):
            self._stream.seek(offset)
            return self._stream.read(size)

        def get_size(self):
            return self._stream.get_size()

    fs = pytsk3.FS_Info(Img(fh))
    info = fs.info
    root, orphan_dir = int(info.root_inum), int(info.last_inum)  # TSK's virtual $OrphanFiles is the last inode
    k, n = part.k, part.n
    name_unalloc, meta_unalloc = int(pytsk3.TSK_FS_NAME_FLAG_UNALLOC), int(pytsk3.TSK_FS_META_FLAG_UNALLOC)
    t_dir, t_virt_dir = int(pytsk3.TSK_FS_META_TYPE_DIR), int(pytsk3.TSK_FS_META_TYPE_VIRT_DIR)
    t_link = int(pytsk3.TSK_FS_META_TYPE_LNK)
    n_dirs = (int(pytsk3.TSK_FS_NAME_TYPE_DIR), int(pytsk3.TSK_FS_NAME_TYPE_VIRT_DIR), int(pytsk3.TSK_FS_NAME_TYPE_UNDEF))
    # (directory inode, path, path as stored, directories above it, the part its whole subtree belongs to or None)
    stack: list[tuple[int, str, bytes, frozenset, int | None]] = [(root, "", b"", frozenset((root,)), None)]
    while stack:
        addr, dpath, draw, above, subtree = stack.pop()
        mine = (addr % n if subtree is None else subtree) == k  # this part gives the directory's names
        try:
            directory = fs.open_dir(inode=addr)
        except Exception as exc:  # an unreadable directory: its names are lost, counted (by the part giving them)
            if mine:
                counts.errors.append(RecordError(f"{dpath or '/'} inode={addr}", "unreadable",
                                                 f"cannot list directory: {exc}"))
            continue
        subdirs = []
        for f in directory:
            nm = f.info.name
            raw = nm.name
            if raw in (b".", b".."):
                continue
            meta = f.info.meta
            name_flags = int(nm.flags)
            deleted = bool(name_flags & name_unalloc)
            shown, bad = _name(raw)
            path = f"{dpath}/{shown}"
            raw_path = draw + b"/" + raw
            if meta is None and nm.meta_addr:  # a name whose inode TSK did not load with it (orphans): by number
                try:
                    meta = fs.open_meta(inode=nm.meta_addr).info.meta
                except Exception:
                    meta = None
            if meta is None:  # a deleted name whose inode number was wiped: nothing to date it by
                counts.no_metadata += mine
                continue
            ino = int(meta.addr)
            mtype = int(meta.type)
            if mtype in (t_dir, t_virt_dir) and int(nm.type) in n_dirs and ino not in above and (
                    not deleted or int(meta.flags) & meta_unalloc):
                owner = subtree
                if owner is None and (deleted or ino == orphan_dir or int(meta.nlink) == 2):
                    owner = ino % n  # a leaf (or deleted) directory: one part lists it and all beneath it
                if owner is None or owner == k:
                    subdirs.append((ino, path, raw_path, above | {ino}, owner))
            if ino == orphan_dir or not mine:  # (the virtual folder itself has no times)
                continue
            counts.entries += 1
            realloc = deleted and not int(meta.flags) & meta_unalloc
            orphan = dpath.startswith(ORPHANS)
            link = None
            if mtype == t_link:  # a target too long for the inode is in a data block: read it (never followed)
                link = meta.link
                if not link and not deleted and 0 < meta.size <= 4096:
                    try:
                        link = f.read_random(0, int(meta.size))
                    except Exception:
                        link = None
            extra = None
            if deleted or bad or orphan or link:
                extra = {}
                if deleted or orphan:
                    extra["deleted"] = True
                    counts.deleted += 1
                    counts.orphans += orphan
                if realloc:
                    extra["realloc"] = True
                if bad or (draw and not draw.isascii() and _name(draw)[1]):
                    extra["name_bytes"] = raw_path.hex()
                if link:
                    extra.update(_link(link))
            mode = _TSK_TYPE_MODE.get(mtype, 0) | int(meta.mode)
            yield (path, ino, int(meta.size), mode, int(meta.uid), int(meta.gid), "",
                   meta.mtime * 1_000_000_000 + meta.mtime_nano if meta.mtime or meta.mtime_nano else None,
                   meta.atime * 1_000_000_000 + meta.atime_nano if meta.atime or meta.atime_nano else None,
                   meta.ctime * 1_000_000_000 + meta.ctime_nano if meta.ctime or meta.ctime_nano else None,
                   meta.crtime * 1_000_000_000 + meta.crtime_nano if meta.crtime or meta.crtime_nano else None,
                   extra)
        stack.extend(reversed(subdirs))


def _xfs_entries(fh, part: Part, counts: Counts) -> Iterator[tuple]:
    """Every allocated name of an XFS file system, read with libfsxfs (one directory at a time); part ``k`` of
    ``n`` as for ext (:func:`_tsk_entries`): leaf directories listed by their own part only."""
    import pyfsxfs

    fs = pyfsxfs.volume()
    fs.open_file_object(fh)
    k, n = part.k, part.n
    root = fs.get_root_directory()
    stack: list[tuple[Any, str, frozenset, int | None]] = [(root, "", frozenset(), None)]
    while stack:
        d, dpath, above, subtree = stack.pop()
        mine = (d.inode_number % n if subtree is None else subtree) == k
        try:
            kids = [d.get_sub_file_entry(i) for i in range(d.get_number_of_sub_file_entries())]
        except Exception as exc:
            if mine:
                counts.errors.append(RecordError(dpath or "/", "unreadable", f"cannot list directory: {exc}"))
            continue
        subdirs = []
        for e in kids:
            try:
                path = f"{dpath}/{e.name}"
                ino = e.inode_number
                mode = e.file_mode
                if _stat.S_ISDIR(mode) and ino not in above:
                    owner = subtree if subtree is not None or e.number_of_links != 2 else ino % n
                    if owner is None or owner == k:
                        subdirs.append((e, path, above | {ino}, owner))
                if not mine:
                    continue
                counts.entries += 1
                yield (path, ino, e.size, mode, e.owner_identifier, e.group_identifier, "",
                       e.get_modification_time_as_integer() or None, e.get_access_time_as_integer() or None,
                       e.get_inode_change_time_as_integer() or None, e.get_creation_time_as_integer() or None,
                       _link(e.symbolic_link_target) if _stat.S_ISLNK(mode) and e.symbolic_link_target else None)
            except Exception as exc:
                if mine:
                    counts.errors.append(RecordError(f"{dpath}/", "unreadable", f"cannot read an entry: {exc}"))
        stack.extend(reversed(subdirs))


_FN_DOS = 2  # $FILE_NAME name space of an 8.3 short name (listed only when the file has no other name)
_NTFS_DIR, _NTFS_LINK = _stat.S_IFDIR | 0o777, _stat.S_IFLNK | 0o777
_NTFS_FILE, _NTFS_META_FILE, _NTFS_META_DIR = _stat.S_IFREG | 0o777, _stat.S_IFREG | 0o444, _stat.S_IFDIR | 0o555


def filetime_ns(v: int) -> int:
    """A FILETIME (100 ns since 1601) as ns since 1970, keeping the 100 ns digit."""
    return (v - FILETIME_EPOCH) * 100


def _open_ntfs(fh):
    """A libfsntfs reader of a volume, or of a loose ``$MFT`` (a file opening with ``FILE0``)."""
    import pyfsntfs

    fh.seek(0)
    head = fh.read(5)
    fh.seek(0)
    reader = pyfsntfs.mft_metadata_file() if head in (b"FILE0", b"BAAD0") else pyfsntfs.volume()
    reader.open_file_object(fh)
    return reader


class Mft:
    """An NTFS volume (or a loose ``$MFT``) through libfsntfs: records by number, directory paths from the
    ``$FILE_NAME`` parent references (checked against the directory's sequence number), streams."""

    def __init__(self, fh):
        self.reader = _open_ntfs(fh)
        self.total = self.reader.get_number_of_file_entries()
        # a loose $MFT: its records lie in order in the file, so one libfsntfs calls empty can be told from damage
        self._loose = fh if not hasattr(self.reader, "get_file_entry_by_path") else None
        if self._loose is not None:
            fh.seek(0x1C)
            self._record_size = int.from_bytes(fh.read(4), "little") or 1024
        self._dirs: dict[int, tuple] = {5: (None, "", True)}  # record -> (sequence, path or name tuple, allocated)

    def damaged(self, i: int) -> bool:
        """A record libfsntfs calls empty whose bytes are neither a record nor zeros (loose $MFT only)."""
        if self._loose is None:
            return False
        self._loose.seek(i * self._record_size)
        raw = self._loose.read(self._record_size)
        return raw[:4] not in (b"FILE", b"BAAD") and any(raw)

    def record(self, i: int):
        try:
            return self.reader.get_file_entry(i)
        except Exception:
            return None

    @staticmethod
    def names(e) -> list[tuple[Any, str, int, int]]:
        """(attribute, name, parent reference, name space) of each $FILE_NAME, DOS names left out where a long
        one exists."""
        out = []
        for j in range(e.get_number_of_attributes()):
            try:
                a = e.get_attribute(j)
                if a.attribute_type == 0x30:
                    out.append((a, a.get_name(), a.get_parent_file_reference(), a.get_name_space()))
            except Exception:
                continue
        long_ = [x for x in out if x[3] != _FN_DOS]
        return long_ or out

    def dir_path(self, ref: int) -> str | None:
        """Path of the directory ``ref`` (record | sequence << 48) names; None when that record no longer is it."""
        dirs = self._dirs
        chain, i, seq = [], ref & 0xFFFFFFFFFFFF, ref >> 48
        while True:
            known = dirs.get(i)
            if known is None:
                e = self.record(i)
                known = (None, None, False)
                if e is not None and not e.is_empty():
                    nm = self.names(e)
                    if nm:
                        known = (e.file_reference >> 48, nm[0], e.is_allocated())
                dirs[i] = known
            if i == 5:
                base = ""
                break
            if known[1] is None or (seq and known[0] is not None and known[0] != seq):
                return None
            if isinstance(known[1], tuple):  # a directory record read but not yet given its path
                _, name, parent, _ = known[1]
                chain.append((i, known[0], name, known[2]))
                if len(chain) > 256:
                    return None
                i, seq = parent & 0xFFFFFFFFFFFF, parent >> 48
                continue
            base = known[1]
            break
        for j, sq, name, alloc in reversed(chain):
            base = f"{base}/{name}"
            dirs[j] = (sq, base, alloc)
        return base

    def stream_chunks(self, path: str, stream: str, chunk: int = 16 << 20) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) of a named stream (``\\$Extend\\$UsnJrnl``, ``$J``), its sparse extents skipped;
        nothing when the file or stream is not there."""
        e = self.reader.get_file_entry_by_path(path) if hasattr(self.reader, "get_file_entry_by_path") else None
        ds = e.get_alternate_data_stream_by_name(stream) if e is not None else None
        if ds is None:
            return
        pos, size = 0, ds.get_size()
        for x in range(ds.get_number_of_extents()):
            _, length, flags = ds.get_extent(x)
            end = min(pos + length, size)
            if not flags & 1:  # LIBFSNTFS_EXTENT_FLAG_IS_SPARSE
                while pos < end:
                    data = ds.read_buffer_at_offset(min(chunk, end - pos), pos)
                    if not data:
                        break
                    yield pos, data
                    pos += len(data)
            pos = end
            if pos >= size:
                break


def _ntfs_entries(fh, part: Part, counts: Counts, mft: Mft | None = None) -> Iterator[tuple]:
    """Every file name of an NTFS volume (or loose ``$MFT``), read from the MFT in record order with libfsntfs:
    ``$STANDARD_INFORMATION`` and ``$FILE_NAME`` times at 100 ns; deleted records (not in use) too, under their
    directory's path while that directory still holds the record number and sequence, else under
    ``/$OrphanFiles``.  Part ``k`` of ``n`` reads a range of records (and, for paths, their directories)."""
    mft = mft or Mft(fh)
    record, names, dir_path = mft.record, mft.names, mft.dir_path
    lo, hi = mft.total * part.k // part.n, mft.total * (part.k + 1) // part.n

    for i in range(lo, hi):
        e = record(i)
        if e is None:
            counts.errors.append(RecordError(f"MFT record {i}", "unreadable", "MFT record cannot be read"))
            continue
        try:
            if e.is_empty() or e.base_record_file_reference:  # never used, or an extension of another record
                if e.is_empty() and mft.damaged(i):
                    counts.errors.append(RecordError(f"MFT record {i}", "unreadable", "not an MFT record (no FILE "
                                                     "signature) and not zeros: damaged"))
                continue
            allocated = e.is_allocated()
            if i == 5:
                continue
            si = None
            for j in range(e.get_number_of_attributes()):
                a = e.get_attribute(j)
                if a.attribute_type == 0x10:
                    si = (a.get_modification_time_as_integer(), a.get_access_time_as_integer(),
                          a.get_entry_modification_time_as_integer(), a.get_creation_time_as_integer())
                    break
            fns = names(e)
            if not fns:  # no name left (a reserved or wiped record): listed as The Sleuth Kit lists it
                if si is None or i < 16:  # records 12-15 are reserved, unnamed and not listed by fls
                    continue
                fns = [(None, f"OrphanFile-{i}", None, None)]
            is_dir = e.has_directory_entries_index()
            link = None
            if is_dir:
                mode, size = _NTFS_DIR, 0
            elif (link := e.get_symbolic_link_target() if allocated else None):
                mode, size = _NTFS_LINK, 0
            elif e.has_default_data_stream():
                mode, size = _NTFS_FILE, e.get_size()
            else:
                mode, size = _NTFS_META_FILE, 0
            uid = gid = 0 if mode != _NTFS_META_FILE else None
            first_fn = fns[0][0]
            fn_times = None if first_fn is None else (
                first_fn.get_modification_time_as_integer(), first_fn.get_access_time_as_integer(),
                first_fn.get_entry_modification_time_as_integer(), first_fn.get_creation_time_as_integer())
        except Exception as exc:
            counts.errors.append(RecordError(f"MFT record {i}", "unreadable", f"MFT record cannot be read: {exc}"))
            continue
        for _, name, parent, _ in fns:
            base = dir_path(parent) if parent is not None else None
            orphan = base is None
            path = f"{ORPHANS}/{name}" if orphan else f"{base}/{name}"
            counts.entries += 1
            extra = _link(link) if link else None
            if not allocated or orphan:
                extra = {"deleted": True, **(extra or {})}
                counts.deleted += 1
                counts.orphans += orphan
            for label, times in (("$SI", si), ("$FN", fn_times)):
                if times is None:
                    continue
                yield (path, i, size, mode, uid, gid, label, *(filetime_ns(v) if v else None for v in times), extra)


FS_READERS: dict[str, Callable[..., Iterator[tuple]]] = {"ext": _tsk_entries, "ntfs": _ntfs_entries, "xfs": _xfs_entries}
FS_LIBRARIES = {"ext": "The Sleuth Kit", "ntfs": "libfsntfs", "xfs": "libfsxfs"}  # named in reports


# --------------------------------------------------------------------------------------------------------
# rows, a batch at a time
# --------------------------------------------------------------------------------------------------------

_MODES: dict[int, str] = {}
_EMPTY_TAGS = pa.array([], pa.string())
_TS = SCHEMA.field("timestamp").type


@dataclass
class Context:
    """What every row of one file system shares."""

    evidence_id: str
    evidence_path: str
    host: str | None
    parser: str
    fstype: str  # as dissect names it: ext, ntfs, xfs
    prefix: str = ""  # drive ("c:") or "fsN:" inside an image


def fs_tables(entries: Iterator[tuple], ctx: Context, report: ArtifactReport, batch_rows: int = 50_000) -> Iterator[pa.Table]:
    """Timeline tables (about ``batch_rows`` rows each) of file-system entries.  What is the same for the rows of
    one entry (path, attrs and message around the MACB letters) is built once per entry; a row adds its time,
    kind, letters and hash; Arrow joins the strings a column at a time.  A time no clock can hold (a wiped or
    crafted inode) is kept in a ``bad_time`` warning, not as a row."""
    per_entry: tuple[list, ...] = ([], [], [], [], [], [])  # path, record_ref, artifact, attrs head, tail, message tail
    per_row: tuple[list, ...] = ([], [], [], [], [])  # entry index, timestamp, kind, macb, event hash
    e_path, e_ref, e_art, e_ahead, e_atail, e_mtail = per_entry
    r_entry, r_ts, r_kind, r_macb, r_hash = per_row
    head = f"FILE\x1f{ctx.evidence_id}\x1f".encode()
    fs_art = f"fs:{ctx.fstype}"
    prefix, fstype = ctx.prefix, ctx.fstype
    sha256, lo, hi = hashlib.sha256, NS_MIN, NS_MAX
    for path, ino, size, mode, uid, gid, label, m, a, c, b, extra in entries:
        if not (m or a or c or b):
            continue
        inner = prefix + path
        times = [m or None, a or None, c or None, b or None]
        bad = [(mac, ns) for mac, ns in zip("MACB", times) if ns is not None and not lo <= ns <= hi]
        if bad:
            report.warn("bad_time", f"{inner}: {label or 'inode'} time(s) out of range {bad}", inner)
            times = [None if ns is not None and not lo <= ns <= hi else ns for ns in times]
            if times == [None] * 4:
                continue
        mode_s = _MODES.get(mode)
        if mode_s is None:
            mode_s = _MODES[mode] = _stat.filemode(mode)
        doc = {"inode": ino, "size": size, "mode": mode_s, "uid": uid, "gid": gid, "fs": fstype, "macb": "\x00",
               "times_from": label or "inode"}
        if extra:
            doc.update(extra)
        a_head, a_tail = orjson.dumps(doc).decode().split("\\u0000")
        i = len(e_path)
        e_path.append(inner)
        e_ref.append(f"{inner} inode={ino}")
        e_art.append(f"{fs_art}:{label}" if label else fs_art)
        e_ahead.append(a_head)
        e_atail.append(a_tail)
        link = f" -> {extra['link_target']}" if extra and "link_target" in extra else ""
        e_mtail.append(f" {label + ' ' if label else ''}{inner}{link} ({mode_s}, {size} bytes)"
                       + (" (deleted)" if extra and extra.get("deleted") else ""))
        h0 = sha256(head + f"{inner}\x1f{ino}\x1f{label}\x1f".encode("utf-8", "surrogatepass"))
        v0, v1, v2, v3 = times
        for kind, ns in enumerate(times):
            if ns is None:
                continue
            h = h0.copy()
            h.update(f"{_MACB[kind]}\x1f{ns}".encode())
            r_entry.append(i)
            r_ts.append(ns)
            r_kind.append(kind)
            r_macb.append(_LETTERS[(v0 == ns, v1 == ns, v2 == ns, v3 == ns)])
            r_hash.append(h.hexdigest()[:32])
        if len(r_ts) >= batch_rows:
            yield _table(per_entry, per_row, ctx)
    if r_ts:
        yield _table(per_entry, per_row, ctx)


_MACB = "MACB"
# which of the entry's four times equal a row's time -> its MACB letters ("MA..": modified and accessed then)
_LETTERS = {k: "".join(x if y else "." for x, y in zip(_MACB, k)) for k in itertools.product((False, True), repeat=4)}
_DESCS = pa.array([d for _, d in _KINDS], pa.string())


def _table(per_entry: tuple[list, ...], per_row: tuple[list, ...], ctx: Context) -> pa.Table:
    import pyarrow.compute as pc

    e_path, e_ref, e_art, e_ahead, e_atail, e_mtail = (pa.array(v, pa.string()) for v in per_entry)
    idx = pa.array(per_row[0], pa.int32())
    macb = pa.array(per_row[3], pa.string())
    n = len(idx)

    def const(v, typ=pa.string()):
        return pa.repeat(pa.scalar(v, typ), n)

    arrays = {
        "timestamp": pa.array(per_row[1], pa.int64()).cast(_TS),
        "timestamp_desc": _DESCS.take(pa.array(per_row[2], pa.int8())),
        "host": const(ctx.host), "source": const("FILE"), "artifact": e_art.take(idx), "path": e_path.take(idx),
        "message": pc.binary_join_element_wise(macb, e_mtail.take(idx), ""),
        "attrs": pc.binary_join_element_wise(e_ahead.take(idx), macb, e_atail.take(idx), ""),
        "tags": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), _EMPTY_TAGS),
        "tz_source": const(TZ_SOURCE_UTC), "evidence_id": const(ctx.evidence_id),
        "evidence_path": const(ctx.evidence_path), "record_ref": e_ref.take(idx),
        "parser": const(ctx.parser), "event_hash": pa.array(per_row[4], pa.string()),
    }
    for v in per_entry + per_row:
        v.clear()
    return cap_messages(pa.Table.from_arrays([arrays[f.name] if f.name in arrays else pa.nulls(n, f.type)
                                              for f in SCHEMA], schema=SCHEMA))


USN_JOURNAL = ("\\$Extend\\$UsnJrnl", "$J")  # where NTFS keeps its change journal: file and stream


def volume_tables(stream, fstype: str, part: Part, ctx: Context, report: ArtifactReport, batch_rows: int = 50_000,
                  offered: Callable[[Iterator[tuple]], Iterator[tuple]] | None = None) -> Iterator[pa.Table]:
    """The timeline of one file system read by its C library: its names (``offered`` sees each entry on its
    way) and, for NTFS, its change journal (``$Extend/$UsnJrnl:$J``, read by part 0 only)."""
    from collectors.usnjrnl import usn_tables

    counts = Counts()
    mft = Mft(stream) if fstype == "ntfs" else None
    entries = _ntfs_entries(stream, part, counts, mft) if mft else FS_READERS[fstype](stream, part, counts)
    yield from fs_tables(offered(entries) if offered else entries, ctx, report, batch_rows)
    read_counts(report, counts, ctx.prefix)
    if mft is not None and part.k == 0:
        yield from usn_tables(mft.stream_chunks(*USN_JOURNAL), ctx.evidence_id, ctx.evidence_path, ctx.host,
                              ctx.parser, report, batch_rows, ctx.prefix, mft.dir_path,
                              f"{ctx.prefix}/$Extend/$UsnJrnl:$J ")


def read_counts(report: ArtifactReport, counts: Counts, prefix: str = "") -> None:
    """Add what one read saw to the artifact's report: lost entries as errors (``prefix``: the file system's
    drive or ``fsN:`` inside an image), the rest as stats."""
    report.errors.extend(RecordError(f"{prefix}{e.record_ref}", e.kind, e.message, e.count) for e in counts.errors)
    st = report.stats.setdefault("fs_entries", {})
    for k in ("entries", "deleted", "orphans", "no_metadata"):
        st[k] = st.get(k, 0) + getattr(counts, k)


# --------------------------------------------------------------------------------------------------------
# a loose $MFT (a triage collection's copy of the master file table)
# --------------------------------------------------------------------------------------------------------

class MftCollector(Collector):
    """A loose ``$MFT`` (first record opening with ``FILE0``): its file-system timeline, as from the volume."""

    name = "mft"
    source = "FILE"
    engines = ("libfsntfs",)
    parser = ("libfsntfs", "libfsntfs-python")

    @classmethod
    def matches(cls, path: str) -> bool:
        head = read_magic(path, 1024)
        return head[:5] in (b"FILE0", b"BAAD0") and head[:4] == b"FILE" and os.path.getsize(path) % 1024 == 0

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not cls.matches(path):
            raise UnknownFormat(f"{path}: not an NTFS master file table (expected records of 1024 bytes opening "
                                "with FILE0)")

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        from timeline.custody import open_evidence

        rep = self.report(artifact)
        counts = Counts()
        # read from a drive of a collection (``c:/$MFT``, ``triage.zip!c:/$MFT``): its paths are on that drive
        root = artifact.evidence_path.rpartition("/")[0]
        ctx = Context(artifact.evidence_id, artifact.evidence_path, artifact.host, self._parser, "ntfs",
                      root if root.endswith(":") else "")
        rows = 0
        with os.fdopen(open_evidence(artifact.fs_path), "rb") as fh:
            for table in fs_tables(_ntfs_entries(_Stream(fh), WHOLE, counts), ctx, rep, batch_rows):
                rows += table.num_rows
                yield table
        read_counts(rep, counts)
        rep.stats["rows"] = rows
