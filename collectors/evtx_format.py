"""Structural view of an EVTX file, independent of any record parser.

:func:`scan` walks the file header, every 64 KiB chunk and every record frame
(signature ``**\\0\\0``, size, record number, written FILETIME, trailing size
copy) without decoding binary XML.  The frames it finds are the records the
file holds: the collector then asks parsers to decode them and counts every
frame none could decode as an error, so no record is lost silently.  The scan
also reports what makes a file "damaged" (dirty flag, header chunk count that
disagrees with the file, bad chunk magic, CRC mismatches, truncation) as data.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

FILE_MAGIC = b"ElfFile\x00"
CHUNK_MAGIC = b"ElfChnk\x00"
RECORD_MAGIC = 0x00002A2A
CHUNK_SIZE = 0x10000
HEADER_BLOCK = 0x1000
CHUNK_HEADER = 0x200
FILETIME_EPOCH = 116444736000000000  # 100 ns intervals between 1601-01-01 and 1970-01-01

_REC = struct.Struct("<IIQQ")
_U32 = struct.Struct("<I")
_ZERO_CHUNK = bytes(CHUNK_SIZE)


@dataclass(slots=True)
class Frame:
    """One record frame: where it is and what its header says."""

    offset: int  # absolute file offset of the record
    number: int  # record number in the record header
    written: int  # written time, FILETIME (100 ns since 1601)
    size: int
    chunk: int

    @property
    def written_ns(self) -> int:
        return (self.written - FILETIME_EPOCH) * 100


@dataclass(slots=True)
class Gap:
    """Bytes of a chunk's used part that hold no readable record frame (a damaged frame header, size or size copy):
    the records they held are lost to every parser that walks frames, and counted.  ``numbers``: the record
    numbers the gap must have held, from the frames around it (and the chunk header's first and last record
    numbers at its ends); None when they cannot be told, and then the gap counts as one record lost."""

    start: int  # absolute file offsets
    end: int
    chunk: int
    numbers: range | None

    @property
    def lost(self) -> int:
        return 1 if self.numbers is None else len(self.numbers)


@dataclass
class Scan:
    size: int = 0
    header_ok: bool = False
    dirty: bool = False
    header_chunk_count: int = 0
    chunks_in_file: int = 0
    truncated: bool = False
    bad_magic_chunks: list[int] = field(default_factory=list)
    header_crc_mismatch: list[int] = field(default_factory=list)
    data_crc_mismatch: list[int] = field(default_factory=list)
    # (offset, number, written, size, chunk) of every frame, in file order (plain tuples: cheap to make)
    records: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    # Damaged stretches of a chunk's records: bytes of the used part of a chunk (before its free-space offset)
    # that hold no readable frame, between two frames (or a frame and the chunk's start or end).
    gaps: list[Gap] = field(default_factory=list)

    @property
    def frames(self) -> list[Frame]:
        """Every frame, in file order, as :class:`Frame` objects (made on demand from :attr:`records`)."""
        return [Frame(*r) for r in self.records]

    def damage(self) -> list[str]:
        """Human-readable list of the file's structural damage (empty when clean)."""
        out = []
        if not self.header_ok:
            out.append("file header magic missing")
        if self.dirty:
            out.append("dirty flag set (log not closed cleanly)")
        if self.header_ok and self.header_chunk_count != self.chunks_in_file:
            out.append(f"header chunk count {self.header_chunk_count} vs {self.chunks_in_file} chunks in file")
        if self.truncated:
            out.append("file truncated (partial last chunk)")
        if self.bad_magic_chunks:
            out.append(f"{len(self.bad_magic_chunks)} chunk(s) with bad magic: {self.bad_magic_chunks}")
        if self.header_crc_mismatch:
            out.append(f"chunk header CRC mismatch in chunk(s) {self.header_crc_mismatch}")
        if self.data_crc_mismatch:
            out.append(f"chunk data CRC mismatch in chunk(s) {self.data_crc_mismatch}")
        if self.gaps:
            out.append(f"{len(self.gaps)} damaged stretch(es) of record frames, holding "
                       f"{sum(g.lost for g in self.gaps)} record(s): " + ", ".join(
                           f"0x{g.start:x}-0x{g.end:x}" for g in self.gaps[:10]) + (" ..." if len(self.gaps) > 10 else ""))
        return out


def _frame_at(chunk: bytes, pos: int) -> tuple[int, int, int] | None:
    """(size, number, written) of a whole frame at ``pos`` (signature, size, size copy), else None."""
    if pos + 28 > CHUNK_SIZE:
        return None
    magic, size, number, written = _REC.unpack_from(chunk, pos)
    if magic != RECORD_MAGIC or size < 28 or pos + size > CHUNK_SIZE or _U32.unpack_from(chunk, pos + size - 4)[0] != size:
        return None
    return size, number, written


def _next_frame(chunk: bytes, pos: int, end: int) -> int | None:
    """The offset of the next whole frame at or after ``pos`` and before ``end`` (8-byte aligned, as records are)."""
    while True:
        pos = chunk.find(b"\x2a\x2a\x00\x00", pos, end)
        if pos < 0:
            return None
        if pos % 8 == 0 and _frame_at(chunk, pos) is not None:
            return pos
        pos += 1


def _walk_chunk(chunk: bytes, index: int, base: int, records: list[tuple[int, int, int, int, int]],
                gaps: list[Gap] | None = None, used: int = 0, first: int | None = None, last: int | None = None,
                trusted: bool = True) -> None:
    # Like the Windows reader and dissect.eventlog, walk frame after frame until the signature
    # stops, past the chunk's free-space offset too: stale records beyond it are still evidence.
    # Before ``used`` (the free-space offset of a chunk whose header is sound) every byte belongs to a record:
    # a stretch there that holds no whole frame is damage; the walk goes on at the next whole frame after it,
    # and the stretch is a Gap, with the record numbers it must have held (``first``/``last``: the chunk
    # header's first and last record numbers; when the header's CRC fails (``trusted`` False) they are used
    # only where the frames agree with them: the chunk's first frame carries ``first``).
    pos = CHUNK_HEADER
    rec, u32, append = _REC.unpack_from, _U32.unpack_from, records.append
    if not trusted and first is not None:
        head = _frame_at(chunk, CHUNK_HEADER)
        if head is None or head[1] != first:
            first = last = None
    prev: int | None = None if first is None else first - 1
    while pos + 28 <= CHUNK_SIZE:
        magic, size, number, written = rec(chunk, pos)
        if magic == RECORD_MAGIC and size >= 28 and pos + size <= CHUNK_SIZE and u32(chunk, pos + size - 4)[0] == size:
            append((base + pos, number, written, size, index))
            prev = number
            pos += size
            continue
        if gaps is None or pos >= used:
            break
        nxt = _next_frame(chunk, pos + 8, used)
        if nxt is None and (last is None or prev is None or not 0 < last - prev <= (used - pos) // 28):
            break  # a header not to be trusted: only stretches between two frames count
        end = used if nxt is None else nxt
        after = last + 1 if nxt is None and last is not None else None if nxt is None else _REC.unpack_from(chunk, nxt)[2]
        numbers = None
        if prev is not None and after is not None and 1 <= after - prev - 1 <= (end - pos) // 28:
            numbers = range(prev + 1, after)
        elif magic == RECORD_MAGIC and 28 <= size <= end - pos:  # a record header whose size copy is damaged
            numbers = range(number, number + 1)
        gaps.append(Gap(base + pos, base + end, index, numbers))
        if nxt is None:
            break
        pos = nxt
        prev = None


def scan(fh) -> Scan:
    """Scan an EVTX file object opened for reading (binary)."""
    s = Scan()
    fh.seek(0)
    header = fh.read(HEADER_BLOCK)
    s.size = len(header)
    if len(header) >= 128 and header[:8] == FILE_MAGIC:
        s.header_ok = True
        s.header_chunk_count = struct.unpack_from("<H", header, 42)[0]
        s.dirty = bool(struct.unpack_from("<I", header, 120)[0] & 1)
    index = 0
    while True:
        chunk = fh.read(CHUNK_SIZE)
        if not chunk:
            break
        s.size += len(chunk)
        base = HEADER_BLOCK + index * CHUNK_SIZE
        if len(chunk) < CHUNK_SIZE:
            s.truncated = True
            chunk = chunk + b"\x00" * (CHUNK_SIZE - len(chunk))
        if chunk[:8] == CHUNK_MAGIC:
            s.chunks_in_file += 1
            free = struct.unpack_from("<I", chunk, 48)[0]
            view = memoryview(chunk)
            if zlib.crc32(view[128:512], zlib.crc32(view[:120])) != struct.unpack_from("<I", chunk, 124)[0]:
                s.header_crc_mismatch.append(index)
            header_ok = zlib.crc32(view[128:512], zlib.crc32(view[:120])) == struct.unpack_from("<I", chunk, 124)[0]
            if CHUNK_HEADER <= free <= CHUNK_SIZE and zlib.crc32(view[CHUNK_HEADER:free]) != struct.unpack_from("<I", chunk, 52)[0]:
                s.data_crc_mismatch.append(index)
            if CHUNK_HEADER <= free <= CHUNK_SIZE:
                first, last = struct.unpack_from("<QQ", chunk, 8)
                _walk_chunk(chunk, index, base, s.records, s.gaps, free, first, last, header_ok)
            else:
                _walk_chunk(chunk, index, base, s.records)
        elif chunk != _ZERO_CHUNK:  # not all zeros
            s.bad_magic_chunks.append(index)
            # Records may survive in a chunk whose header was damaged: walk them all the same.  When only the
            # magic was damaged (the header's CRC holds with the magic restored), the header is trusted as usual.
            view = memoryview(chunk)
            free = struct.unpack_from("<I", chunk, 48)[0]
            sound = zlib.crc32(view[128:512], zlib.crc32(view[8:120], zlib.crc32(CHUNK_MAGIC))) == \
                struct.unpack_from("<I", chunk, 124)[0]
            if sound and CHUNK_HEADER <= free <= CHUNK_SIZE:
                first, last = struct.unpack_from("<QQ", chunk, 8)
                _walk_chunk(chunk, index, base, s.records, s.gaps, free, first, last)
            else:
                _walk_chunk(chunk, index, base, s.records)
        index += 1
    _lost_chunks(s)
    return s


def _lost_chunks(s: Scan) -> None:
    """Chunks that hold no readable frame (zeroed, or damaged beyond reading) between two chunks whose record
    numbers leave a hole that fits: the records of that hole are a Gap (a wrapped log's numbers go back at the
    wrap, and never forward over a chunk that held nothing)."""
    by_chunk: dict[int, list[int]] = {}
    for _, number, _, _, chunk in s.records:
        by_chunk.setdefault(chunk, []).append(number)
    covered = {n for g in s.gaps if g.numbers is not None for n in g.numbers}
    covered.update(n for _, n, _, _, _ in s.records)
    total = (s.size - HEADER_BLOCK + CHUNK_SIZE - 1) // CHUNK_SIZE if s.size > HEADER_BLOCK else 0
    lowest = min(covered, default=None)
    k = 0
    while k < total:
        if k == 0 and 0 not in by_chunk and by_chunk:  # the first chunk holds nothing
            j = min(by_chunk)
            first = min(by_chunk[j])
            # a log that never wrapped (no older number anywhere) numbers its records from 1
            if first == lowest and 1 < first <= j * (CHUNK_SIZE - CHUNK_HEADER) // 28:
                s.gaps.append(Gap(HEADER_BLOCK, HEADER_BLOCK + j * CHUNK_SIZE, 0, range(1, first)))
            k = j
            continue
        if k in by_chunk or k == 0 or k - 1 not in by_chunk:
            k += 1
            continue
        j = k
        while j < total and j not in by_chunk:
            j += 1
        if j < total:  # chunks k..j-1 hold nothing, between chunk k-1 and chunk j
            before, after = max(by_chunk[k - 1]), min(by_chunk[j])
            hole = range(before + 1, after)
            if 0 < len(hole) <= (j - k) * (CHUNK_SIZE - CHUNK_HEADER) // 28 and not covered.intersection(hole):
                s.gaps.append(Gap(HEADER_BLOCK + k * CHUNK_SIZE, HEADER_BLOCK + j * CHUNK_SIZE, k, hole))
        k = j


def recovery_file(data_at, chunk: int, frames: list[Frame]) -> bytes:
    """A one-chunk EVTX image that makes a strict parser read every frame of ``chunk``.

    Parsers stop at the chunk's free-space offset and at its last record id, so records in the
    chunk's slack (older records beyond the free space), in a truncated last chunk or behind a
    damaged chunk magic are never decoded.  This copy of the chunk (same bytes, so template and
    string offsets stay valid) has a header that ends at the last frame and never at a record id.
    ``data_at(offset, size)`` reads the original file.
    """
    mine = [f for f in frames if f.chunk == chunk]
    base = HEADER_BLOCK + chunk * CHUNK_SIZE
    ch = bytearray(data_at(base, CHUNK_SIZE).ljust(CHUNK_SIZE, b"\x00"))
    ch[:8] = CHUNK_MAGIC
    last = mine[-1]
    struct.pack_into("<QQQQ", ch, 8, 0, 2**64 - 1, 0, 2**64 - 1)
    struct.pack_into("<II", ch, 44, last.offset - base, last.offset - base + last.size)
    hdr = bytearray(data_at(0, HEADER_BLOCK).ljust(HEADER_BLOCK, b"\x00"))
    hdr[:8] = FILE_MAGIC
    struct.pack_into("<QQ", hdr, 8, 0, 0)  # first and last chunk
    struct.pack_into("<H", hdr, 42, 1)  # one chunk
    struct.pack_into("<I", hdr, 120, 0)  # not dirty
    return bytes(hdr) + bytes(ch)


SYNTHETIC = 1 << 63  # record numbers of a recovery chunk's frames: SYNTHETIC + a number of the chunk's own


def recovery_chunk(data_at, chunk: int, frames: list[Frame], gaps: list[Gap] = ()
                   ) -> tuple[bytes, dict[int, tuple[int, Frame | None]]]:
    """A one-chunk EVTX image of ``chunk`` (see :func:`recovery_file`) in which every frame can be told apart
    and every damaged stretch is stepped over, and what its record numbers stand for.

    Each frame gets a record number of its own (``SYNTHETIC + k``): two different frames that carry the same
    number (a stale or damaged frame, and an intact record) are then decoded and counted each on its own.  A
    damaged stretch (a :class:`Gap`) becomes a frame of its own size, so that parsers, which walk frame after
    frame, go on to the records after it; when it starts with a record header whose size fits in it (only its
    size copy was damaged), that record keeps its bytes and gets a sound size copy.  Returns the image and
    ``{synthetic number: (record number, frame or None)}`` (None: a record found at the start of a stretch).
    """
    mine = [f for f in frames if f.chunk == chunk]
    base = HEADER_BLOCK + chunk * CHUNK_SIZE
    ch = bytearray(data_at(base, CHUNK_SIZE).ljust(CHUNK_SIZE, b"\x00"))
    ch[:8] = CHUNK_MAGIC
    ids: dict[int, tuple[int, Frame | None]] = {}
    k = 0
    for f in mine:
        struct.pack_into("<Q", ch, f.offset - base + 8, SYNTHETIC + k)
        ids[SYNTHETIC + k] = (f.number, f)
        k += 1
    end = max((f.offset - base + f.size for f in mine), default=CHUNK_HEADER)
    last = max((f.offset - base for f in mine), default=CHUNK_HEADER)  # the last record's offset
    for g in gaps:
        if g.chunk != chunk or g.end - base > CHUNK_SIZE:  # (a chunk that held nothing: no frame to recover)
            continue
        pos, stop = g.start - base, g.end - base
        magic, size, number, _ = _REC.unpack_from(ch, pos)
        if magic == RECORD_MAGIC and 28 <= size <= stop - pos and (stop - pos - size == 0 or stop - pos - size >= 28):
            struct.pack_into("<I", ch, pos + size - 4, size)  # a sound size copy
            struct.pack_into("<Q", ch, pos + 8, SYNTHETIC + k)
            ids[SYNTHETIC + k] = (number, None)
            k += 1
            last = max(last, pos)
            pos += size
        if stop - pos >= 28:  # the rest: a frame of its own, which no record number names
            struct.pack_into("<IIQQ", ch, pos, RECORD_MAGIC, stop - pos, SYNTHETIC + k, 0)
            struct.pack_into("<I", ch, stop - 4, stop - pos)
            k += 1
            last = max(last, pos)
        end = max(end, stop)
    struct.pack_into("<QQQQ", ch, 8, 0, 2**64 - 1, 0, 2**64 - 1)
    struct.pack_into("<II", ch, 44, last, end)
    hdr = bytearray(data_at(0, HEADER_BLOCK).ljust(HEADER_BLOCK, b"\x00"))
    hdr[:8] = FILE_MAGIC
    struct.pack_into("<QQ", hdr, 8, 0, 0)  # first and last chunk
    struct.pack_into("<H", hdr, 42, 1)  # one chunk
    struct.pack_into("<I", hdr, 120, 0)  # not dirty
    return bytes(hdr) + bytes(ch), ids


def created_filetime_offset(data: bytes | memoryview, record_offset: int, chunk_offset: int) -> int | None:
    """Where the record's TimeCreated FILETIME (8 bytes, 100 ns) lies in ``data``, or None.

    Renderings of TimeCreated stop at the microsecond; the value itself is a FILETIME
    substitution of the record's template instance.  The System element comes first and
    TimeCreated is its only FILETIME, so the first FILETIME substitution value is it.
    Returns None when the record does not have that shape.
    """
    try:
        pos = record_offset + 24
        if data[pos] != 0x0F or data[pos + 4] != 0x0C:  # fragment header, template instance
            return None
        (def_offset,) = struct.unpack_from("<I", data, pos + 10)
        pos += 14
        if def_offset == pos - chunk_offset:  # template defined inline: skip its definition
            (size,) = struct.unpack_from("<I", data, pos + 20)
            pos += 24 + size
        (count,) = struct.unpack_from("<I", data, pos)
        if not 0 < count < 512:
            return None
        pos += 4
        value = pos + 4 * count
        for i in range(count):
            size, typ = struct.unpack_from("<HB", data, pos + 4 * i)
            if typ == 0x11 and size == 8:
                return value if value + 8 <= len(data) else None
            value += size
    except (IndexError, struct.error):
        return None
    return None


def created_filetime(data: bytes | memoryview, record_offset: int, chunk_offset: int) -> int | None:
    """The record's TimeCreated as a raw FILETIME (see :func:`created_filetime_offset`)."""
    pos = created_filetime_offset(data, record_offset, chunk_offset)
    return None if pos is None else struct.unpack_from("<Q", data, pos)[0]
