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
        return out


def _walk_chunk(chunk: bytes, index: int, base: int, records: list[tuple[int, int, int, int, int]]) -> None:
    # Like the Windows reader and dissect.eventlog, walk frame after frame until the signature
    # stops, past the chunk's free-space offset too: stale records beyond it are still evidence.
    pos = CHUNK_HEADER
    rec, u32, append = _REC.unpack_from, _U32.unpack_from, records.append
    while pos + 28 <= CHUNK_SIZE:
        magic, size, number, written = rec(chunk, pos)
        if magic != RECORD_MAGIC or size < 28 or pos + size > CHUNK_SIZE:
            break
        if u32(chunk, pos + size - 4)[0] == size:
            append((base + pos, number, written, size, index))
        pos += size


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
            if CHUNK_HEADER <= free <= CHUNK_SIZE and zlib.crc32(view[CHUNK_HEADER:free]) != struct.unpack_from("<I", chunk, 52)[0]:
                s.data_crc_mismatch.append(index)
            _walk_chunk(chunk, index, base, s.records)
        elif chunk != _ZERO_CHUNK:  # not all zeros
            s.bad_magic_chunks.append(index)
            # Records may survive in a chunk whose header was damaged: walk them all the same.
            _walk_chunk(chunk, index, base, s.records)
        index += 1
    return s


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
