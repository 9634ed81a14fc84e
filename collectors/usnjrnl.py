"""The NTFS change journal (``$Extend/$UsnJrnl:$J``): one row per USN record, read from an NTFS volume of an
image or from a loose ``$J`` of a triage collection (recognised by content: USN_RECORD_V2/V3 records, after
the sparse zero run a journal keeps ahead of its live part).

Record schema (USN_RECORD_V2 / V3, little-endian; V3 has 128-bit file references)::

    RecordLength u32 | MajorVersion u16 | MinorVersion u16 | FileReferenceNumber u64/u128 |
    ParentFileReferenceNumber u64/u128 | Usn i64 | TimeStamp FILETIME | Reason u32 | SourceInfo u32 |
    SecurityId u32 | FileAttributes u32 | FileNameLength u16 | FileNameOffset u16 | FileName UTF-16LE

Rows: ``timestamp`` the record's time (100 ns kept), ``timestamp_desc`` "USN Journal Entry", ``source`` FILE,
``artifact`` ``ntfs:usnjrnl``, ``path`` the file's path when the volume's MFT still names its directory (else
its name alone), ``attrs`` {usn, reasons (names, e.g. ["DATA_EXTEND", "CLOSE"]), reason (int), name,
extension, file_record, file_sequence, parent_record, parent_sequence, file_attributes, source_info,
security_id, version, offset} and, on a RENAME_NEW_NAME record, ``old_name`` / ``old_extension`` (from the
RENAME_OLD_NAME record of the same file before it, until the file is closed) — what a look for mass renames and new extensions needs;
``record_ref`` "usn=N offset=0xO".  Bytes that are neither a record nor zero padding are a counted ``damage``
warning (one per run), and reading goes on at the next 8-byte boundary.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import struct
from typing import Callable, Iterator

import numpy as np
import orjson
import pyarrow as pa

from collectors.base import Artifact, ArtifactReport, Collector, read_magic
from collectors.filesystem import filetime_ns
from timeline.errors import UnknownFormat
from timeline.schema import NS_MAX, NS_MIN, SCHEMA, TZ_SOURCE_UTC, cap_messages

__all__ = ["REASONS", "UsnJrnlCollector", "reason_names", "usn_tables"]

log = logging.getLogger(__name__)

REASONS = {
    0x00000001: "DATA_OVERWRITE", 0x00000002: "DATA_EXTEND", 0x00000004: "DATA_TRUNCATION",
    0x00000010: "NAMED_DATA_OVERWRITE", 0x00000020: "NAMED_DATA_EXTEND", 0x00000040: "NAMED_DATA_TRUNCATION",
    0x00000100: "FILE_CREATE", 0x00000200: "FILE_DELETE", 0x00000400: "EA_CHANGE", 0x00000800: "SECURITY_CHANGE",
    0x00001000: "RENAME_OLD_NAME", 0x00002000: "RENAME_NEW_NAME", 0x00004000: "INDEXABLE_CHANGE",
    0x00008000: "BASIC_INFO_CHANGE", 0x00010000: "HARD_LINK_CHANGE", 0x00020000: "COMPRESSION_CHANGE",
    0x00040000: "ENCRYPTION_CHANGE", 0x00080000: "OBJECT_ID_CHANGE", 0x00100000: "REPARSE_POINT_CHANGE",
    0x00200000: "STREAM_CHANGE", 0x00400000: "TRANSACTED_CHANGE", 0x00800000: "INTEGRITY_CHANGE",
    0x80000000: "CLOSE",
}
_RENAME_OLD, _RENAME_NEW, _CLOSE = 0x1000, 0x2000, 0x80000000
_V2 = struct.Struct("<IHHQQqqIIIIHH")  # 60 bytes
_V3 = struct.Struct("<IHH16s16sqqIIIIHH")  # 76 bytes
_MAX_RECORD = 4096  # a record never spans a journal page
_CHUNK = 16 << 20
_MATCH_ZEROS = 1 << 30  # a loose $J may begin with this much zero padding (read only where it is not a hole)
_TS = SCHEMA.field("timestamp").type
_EMPTY_TAGS = pa.array([], pa.string())


@functools.lru_cache(maxsize=4096)
def reason_names(reason: int) -> tuple[str, ...]:
    """The flag names of a USN reason mask, lowest bit first (unknown bits as hex)."""
    out = [name for bit, name in REASONS.items() if reason & bit]
    rest = reason & ~sum(REASONS)
    return tuple(out + ([f"0x{rest:x}"] if rest else []))


@functools.lru_cache(maxsize=4096)
def _joined(reason: int) -> str:
    return "|".join(reason_names(reason))


def _record_at(buf, pos: int) -> tuple | None:
    """(length, version, file ref, parent ref, usn, filetime, reason, source, security, attributes, name) of a
    V2/V3 record at ``pos`` of ``buf``, or None when the bytes there are not one (or are cut off)."""
    if pos + 60 > len(buf):
        return None
    length, major, _minor = struct.unpack_from("<IHH", buf, pos)
    if major == 2:
        if length < 60 or length > _MAX_RECORD or length % 8 or pos + length > len(buf):
            return None
        _, _, _, fref, pref, usn, ft, reason, source, sec, attr, nlen, noff = _V2.unpack_from(buf, pos)
        fref_i, pref_i = fref, pref
    elif major == 3:
        if length < 76 or length > _MAX_RECORD or length % 8 or pos + length > len(buf):
            return None
        _, _, _, fref, pref, usn, ft, reason, source, sec, attr, nlen, noff = _V3.unpack_from(buf, pos)
        fref_i, pref_i = int.from_bytes(fref, "little"), int.from_bytes(pref, "little")
    else:
        return None
    if noff < (60 if major == 2 else 76) or noff + nlen > length or nlen % 2 or usn < 0:
        return None
    name = bytes(buf[pos + noff:pos + noff + nlen]).decode("utf-16-le", "surrogatepass")
    return length, major, fref_i, pref_i, usn, ft, reason, source, sec, attr, name


def looks_like_usn(path: str) -> bool:
    """A loose ``$J``: after its zero prefix (holes skipped), three USN_RECORD_V2/V3 records in a row."""
    from timeline.custody import open_evidence

    try:
        fd = open_evidence(path)
    except Exception:
        return False
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < min(size, _MATCH_ZEROS):
            try:
                pos = os.lseek(fd, pos, os.SEEK_DATA)  # past a hole of a sparse copy, for free
            except OSError:
                return False
            block = os.pread(fd, 1 << 20, pos)
            if not block:
                return False
            nz = np.flatnonzero(np.frombuffer(block[: len(block) // 8 * 8], np.uint64))
            if not len(nz):
                pos += len(block)
                continue
            start = int(nz[0]) * 8
            buf = os.pread(fd, 3 * _MAX_RECORD, pos + start)
            p = 0
            for _ in range(3):
                rec = _record_at(buf, p)
                if rec is None:
                    return False
                p += rec[0]
                while p + 4 <= len(buf) and buf[p:p + 4] == b"\0\0\0\0" and p % 4096:  # page padding
                    p += 8
                if p + 60 > len(buf):
                    return True
            return True
        return False
    finally:
        os.close(fd)


def usn_tables(chunks: Iterator[tuple[int, bytes]], evidence_id: str, evidence_path: str, host: str | None,
               parser: str, report: ArtifactReport, batch_rows: int = 50_000, prefix: str = "",
               parent_path: Callable[[int], str | None] | None = None, where: str = "") -> Iterator[pa.Table]:
    """Timeline tables of the USN records in ``chunks`` ((offset in the stream, bytes), in order; sparse runs
    left out).  ``parent_path(reference)`` gives a directory's path from the volume's MFT (None: unknown);
    ``where`` opens each ``record_ref`` (the journal's path inside an image)."""
    cols: tuple[list, ...] = ([], [], [], [], [], [])  # ts, path, message, attrs, record_ref, hash
    ts, paths, msgs, attrs, refs, hashes = cols
    renamed: dict[int, str] = {}  # file reference -> its name in the last RENAME_OLD_NAME record
    stats = report.stats.setdefault("usn", {"records": 0, "v3": 0, "damaged_bytes": 0, "padding_pages": 0})
    head = f"USN\x1f{evidence_id}\x1f".encode()
    bad_from = None

    def parse(buf: bytes, base: int, final: bool) -> Iterator[pa.Table]:
        """Rows of the records in ``buf`` (at ``base`` in the stream); sets ``state["pos"]`` where it stopped
        (short of the end when a record may go on in the next chunk)."""
        nonlocal bad_from
        mv = memoryview(buf)
        n = len(buf)
        nz = np.flatnonzero(np.frombuffer(mv[: n // 8 * 8], np.uint64))  # nonzero 8-byte words
        pos = 0
        while pos + 8 <= n:
            if not any(mv[pos:pos + 8]):  # padding: on to the next nonzero word
                if bad_from is not None:
                    _damage(report, stats, bad_from, base + pos)
                    bad_from = None
                i = int(np.searchsorted(nz, pos // 8))
                if i >= len(nz):
                    pos = n
                    break
                stats["padding_pages"] += 1
                pos = int(nz[i]) * 8
                continue
            rec = _record_at(mv, pos)
            if rec is None:
                if not final and pos + _MAX_RECORD > n:
                    break  # perhaps a record cut by the chunk's end: read again with the next chunk
                if bad_from is None:
                    bad_from = base + pos
                pos += 8
                continue
            if bad_from is not None:
                _damage(report, stats, bad_from, base + pos)
                bad_from = None
            length, major, fref, pref, usn, ft, reason, source, sec, fattr, name = rec
            stats["records"] += 1
            stats["v3"] += major == 3
            off = base + pos
            pos += length
            ns = filetime_ns(ft)
            if not ft or not NS_MIN <= ns <= NS_MAX:
                report.warn("bad_time", f"USN record {usn} at offset 0x{off:x}: time {ft} out of range",
                            f"usn={usn} offset=0x{off:x}")
                continue
            frec, fseq = fref & 0xFFFFFFFFFFFF, (fref >> 48) & 0xFFFF
            prec, pseq = pref & 0xFFFFFFFFFFFF, (pref >> 48) & 0xFFFF
            reasons = reason_names(reason)
            dot = name.rfind(".")
            doc = {"usn": usn, "reasons": reasons, "reason": reason, "name": name,
                   "extension": name[dot + 1:].lower() if dot > 0 else "", "file_record": frec,
                   "file_sequence": fseq, "parent_record": prec, "parent_sequence": pseq,
                   "file_attributes": fattr, "source_info": source, "security_id": sec, "version": major,
                   "offset": off}
            if reason & _RENAME_OLD:
                renamed[fref] = name
            was = ""
            if reason & _RENAME_NEW:  # reasons add up until the file is closed: the old name holds till then
                old = renamed.pop(fref, None) if reason & _CLOSE else renamed.get(fref)
                if old is not None:
                    odot = old.rfind(".")
                    doc["old_name"] = old
                    doc["old_extension"] = old[odot + 1:].lower() if odot > 0 else ""
                    was = f" (was {old})"
            base_dir = parent_path(pref) if parent_path is not None else None
            path = f"{prefix}{base_dir}/{name}" if base_dir is not None else name
            ts.append(ns)
            paths.append(path)
            msgs.append(f"USN {usn}: {path} {_joined(reason)}{was}")
            attrs.append(orjson.dumps(doc).decode())
            refs.append(f"{where}usn={usn} offset=0x{off:x}")
            hashes.append(hashlib.sha256(head + f"{usn}\x1f{fref}\x1f{reason}\x1f{ns}".encode()).hexdigest()[:32])
            if len(ts) >= batch_rows:
                yield _table(cols, evidence_id, evidence_path, host, parser)
        state["pos"] = pos

    state = {"pos": 0}
    carry, carry_at = b"", 0
    for at, data in chunks:
        if carry and carry_at + len(carry) != at:  # a hole follows: what was left is all there is of it
            yield from parse(carry, carry_at, True)
            carry = b""
        buf, base = (carry + data, carry_at) if carry else (data, at)
        yield from parse(buf, base, False)
        carry, carry_at = buf[state["pos"]:], base + state["pos"]
        if len(renamed) > 100_000:  # renames whose new name never came: forget the oldest half
            for k in list(renamed)[:50_000]:
                del renamed[k]
    if carry:
        yield from parse(carry, carry_at, True)
    if bad_from is not None:
        _damage(report, stats, bad_from, carry_at + len(carry))
    if ts:
        yield _table(cols, evidence_id, evidence_path, host, parser)


def _damage(report: ArtifactReport, stats: dict, start: int, end: int) -> None:
    stats["damaged_bytes"] += end - start
    report.warn("damage", f"{end - start} bytes at offset 0x{start:x} are neither a USN record nor padding; "
                          "skipped", f"offset=0x{start:x}")


def _table(cols: tuple[list, ...], evidence_id: str, evidence_path: str, host: str | None, parser: str) -> pa.Table:
    n = len(cols[0])

    def const(v):
        return pa.repeat(pa.scalar(v, pa.string()), n)

    arrays = {
        "timestamp": pa.array(cols[0], pa.int64()).cast(_TS), "timestamp_desc": const("USN Journal Entry"),
        "host": const(host), "source": const("FILE"), "artifact": const("ntfs:usnjrnl"),
        "path": pa.array(cols[1], pa.string()), "message": pa.array(cols[2], pa.string()),
        "attrs": pa.array(cols[3], pa.string()),
        "tags": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), _EMPTY_TAGS),
        "tz_source": const(TZ_SOURCE_UTC), "evidence_id": const(evidence_id), "evidence_path": const(evidence_path),
        "record_ref": pa.array(cols[4], pa.string()), "parser": const(parser), "event_hash": pa.array(cols[5], pa.string()),
    }
    for v in cols:
        v.clear()
    return cap_messages(pa.Table.from_arrays([arrays[f.name] if f.name in arrays else pa.nulls(n, f.type)
                                              for f in SCHEMA], schema=SCHEMA))


def file_chunks(fd: int, chunk: int = _CHUNK) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of a file, holes of a sparse copy skipped."""
    size = os.fstat(fd).st_size
    pos = 0
    while pos < size:
        try:
            pos = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # no data after pos
            return
        data = os.pread(fd, chunk, pos)
        if not data:
            return
        yield pos, data
        pos += len(data)


class UsnJrnlCollector(Collector):
    """A loose NTFS change journal (``$J``/``$UsnJrnl_$J``, whatever its name): one row per USN record."""

    name = "usnjrnl"
    source = "FILE"
    engines = ("forensics-usn",)
    parser = ("forensics-usn", "forensics")

    def __init__(self, engine: str | None = None, threads: int = 1):
        super().__init__(engine, threads)
        # artifact key -> (drive prefix, directory path of an MFT reference): a journal collected with its volume's
        # $MFT (a triage collection) gets its rows' paths from it, as on the volume itself
        self.directories: dict[tuple[str, str], tuple[str, Callable[[int], str | None]]] = {}

    @classmethod
    def matches(cls, path: str) -> bool:
        head = read_magic(path, 8)
        return (not head or head[:4] == b"\0\0\0\0" or head[4:6] in (b"\x02\x00", b"\x03\x00")) and looks_like_usn(path)

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not looks_like_usn(path):
            raise UnknownFormat(f"{path}: not an NTFS change journal (expected USN_RECORD_V2/V3 records after "
                                "zero padding)")

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        from timeline.custody import open_evidence

        rep = self.report(artifact)
        prefix, parent_path = self.directories.pop(artifact.key, ("", None))
        if parent_path is not None:
            rep.facts["paths_from"] = f"{prefix}/$MFT"
        fd = open_evidence(artifact.fs_path)
        rows = 0
        try:
            for t in usn_tables(file_chunks(fd), artifact.evidence_id, artifact.evidence_path, artifact.host,
                                self._parser, rep, batch_rows, prefix, parent_path):
                rows += t.num_rows
                yield t
        finally:
            os.close(fd)
        rep.stats["rows"] = rows
