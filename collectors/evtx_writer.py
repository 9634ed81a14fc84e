"""Write genuine Windows XML event logs (.evtx), as Windows lays them out.

The sample case and the tests need real event logs of any size whose every value is known.
This module writes them; it reads nothing and imports nothing of ``forensics``.

Layout (libyal's "Windows XML Event Log (EVTX)" and what the corpus's real files show):

* a 4 KiB file header (version 3.1, chunk count, next record id, CRC32 of its first 120
  bytes); it says "dirty" while the log is open and is rewritten clean on :meth:`EvtxWriter.close`;
* 64 KiB chunks: a 512-byte header (first/last record numbers and ids, last-record and
  free-space offsets, CRC32 of the records, header CRC32 over bytes 0-120 and 128-512,
  flags 1 as in every closed chunk of the corpus), the 64-bucket common-string table and
  the 32-bucket template table, then the records.  A record never spans chunks;
* each record: ``**\\0\\0``, size, record id, written FILETIME, binary XML, size copy,
  padded to 8 bytes as Windows does;
* binary XML as Windows writes it: a template instance of the ``System`` template (the
  computer name a literal of it, every other field an optional substitution of its proper
  type: Level uint8, Task uint16, Keywords hex64, TimeCreated FILETIME, UserID SID, ...)
  whose last value is a nested binary XML fragment: a template instance of the event's
  ``<EventData><Data Name="...">`` (or ``<UserData>``) template, each value a normal
  substitution typed by its Python type or explicitly.  A template is defined inline in
  the first record of a chunk that uses it and referenced by offset afterwards; element and
  attribute names likewise (inline once per chunk, then by offset), and both tables in the
  chunk header chain them in hash buckets exactly as Windows does (names: the 16-bit
  ``h = h * 65599 + c`` hash of the UTF-16 code units, modulo 64; templates: the same hash
  over the GUID's eight 16-bit words, modulo 32).

Typing of event data values (``Event.event_data`` / ``UserData.values``):

=====================  =============================================================
Python value           substitution type
=====================  =============================================================
``str``                string (UTF-16LE, NUL-terminated as Security and Sysmon write it)
``int``                uint32 if 0 <= v < 2**32, int32 if -2**31 <= v < 0, else int64/uint64
``bool``               bool (32-bit)
``float``              double
``bytes``              binary
``uuid.UUID``          GUID
``datetime`` (aware)   FILETIME
``None``               null (the template declares a string)
``(name, value)``      the named type, one of :data:`TYPES`: ``"string"``, ``"ansi"``,
                       ``"int8"`` ... ``"uint64"``, ``"float"``, ``"double"``, ``"bool"``,
                       ``"binary"``, ``"guid"``, ``"filetime"`` (int FILETIME or aware
                       datetime), ``"systemtime"`` (aware datetime, millisecond
                       precision), ``"sid"`` (``"S-1-5-18"``), ``"hex32"``, ``"hex64"``,
                       ``"null"``
=====================  =============================================================

Times are UTC FILETIMEs (100 ns since 1601): give an ``int`` FILETIME (full precision),
an aware ``datetime`` (microseconds) or use :func:`unix_ns_to_filetime`.  A naive datetime
is refused: the writer never guesses a zone.

Memory is bounded: one chunk is buffered; the output must be seekable (the header is
rewritten at the end).  Same events in, byte-identical file out.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import itertools
import logging
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable, Mapping

from collectors.evtx_format import CHUNK_HEADER, CHUNK_MAGIC, CHUNK_SIZE, FILE_MAGIC, FILETIME_EPOCH, HEADER_BLOCK
from timeline.errors import RecordTooLarge, WriteError

__all__ = ["Event", "UserData", "EvtxWriter", "write_evtx", "TYPES", "to_filetime", "unix_ns_to_filetime",
           "MAX_RECORD_SIZE"]

log = logging.getLogger(__name__)

MAX_RECORD_SIZE = CHUNK_SIZE - CHUNK_HEADER  # a record alone in a chunk
EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
_MAX_CHUNKS = 0xFFFF  # the file header counts chunks in 16 bits

# value type name -> BinXML value type
TYPES: dict[str, int] = {
    "null": 0x00, "string": 0x01, "ansi": 0x02, "int8": 0x03, "uint8": 0x04, "int16": 0x05, "uint16": 0x06,
    "int32": 0x07, "uint32": 0x08, "int64": 0x09, "uint64": 0x0A, "float": 0x0B, "double": 0x0C, "bool": 0x0D,
    "binary": 0x0E, "guid": 0x0F, "filetime": 0x11, "systemtime": 0x12, "sid": 0x13, "hex32": 0x14,
    "hex64": 0x15,
}
_NULL, _STRING, _UINT8, _UINT16, _UINT32, _UINT64 = 0x00, 0x01, 0x04, 0x06, 0x08, 0x0A
_GUID, _FILETIME, _SID, _HEX64, _BINXML = 0x0F, 0x11, 0x13, 0x15, 0x21

_EPOCH_1601 = _dt.datetime(1601, 1, 1, tzinfo=_dt.timezone.utc)
_B, _H, _I, _Q = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))
_DESC = struct.Struct("<HBB")
_REC_HEAD = struct.Struct("<IIQQ")
_FRAGMENT = b"\x0f\x01\x01\x00"  # fragment header: token, major 1, minor 1, flags 0


# --- events ----------------------------------------------------------------------------------


@dataclass(slots=True)
class UserData:
    """``<UserData><name xmlns="xmlns"><key>value</key>...</name></UserData>`` (values typed as event data)."""

    name: str
    values: Mapping[str, Any]
    xmlns: str | None = None


@dataclass(slots=True)
class Event:
    """One event record.  ``time`` is TimeCreated; ``written`` (the record header's time) defaults to it."""

    event_id: int
    time: _dt.datetime | int
    provider: str
    channel: str
    computer: str
    level: int = 4
    task: int = 0
    opcode: int = 0
    keywords: int = 0
    version: int = 0
    qualifiers: int | None = None
    provider_guid: uuid.UUID | str | None = None
    event_source_name: str | None = None
    process_id: int = 0
    thread_id: int = 0
    user_sid: str | None = None
    activity_id: uuid.UUID | str | None = None
    related_activity_id: uuid.UUID | str | None = None
    event_data: Mapping[str, Any] | None = None
    user_data: UserData | None = None
    record_id: int | None = None
    written: _dt.datetime | int | None = None


# --- times -----------------------------------------------------------------------------------


def to_filetime(value: _dt.datetime | int) -> int:
    """A FILETIME (100 ns since 1601-01-01 UTC) from an int FILETIME or an aware datetime."""
    if isinstance(value, bool):
        raise WriteError(f"not a time: {value!r}")
    if isinstance(value, int):
        if not 0 <= value < 2**64:
            raise WriteError(f"FILETIME {value} out of range (0 .. 2**64-1)")
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise WriteError(f"naive datetime {value.isoformat()}: give a zone (EVTX times are UTC)")
        d = value - _EPOCH_1601
        return (d.days * 86_400 + d.seconds) * 10_000_000 + d.microseconds * 10
    raise WriteError(f"not a time: {value!r} (int FILETIME or aware datetime)")


def unix_ns_to_filetime(ns: int) -> int:
    """FILETIME of a time in nanoseconds since 1970 (must be a multiple of 100 ns: nothing is rounded)."""
    if ns % 100:
        raise WriteError(f"{ns} ns is not a multiple of 100 ns, the FILETIME resolution")
    return ns // 100 + FILETIME_EPOCH


# --- values ----------------------------------------------------------------------------------


def _int(fmt: str, lo: int, hi: int):
    pack = struct.Struct(fmt).pack

    def enc(v: Any) -> bytes:
        if v.__class__ is int and lo <= v <= hi:
            return pack(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise WriteError(f"expected an int, got {v!r}")
        if not lo <= v <= hi:
            raise WriteError(f"{v} out of range {lo}..{hi}")
        return pack(v)

    return enc


def _utf16(v: Any) -> bytes:
    if not isinstance(v, str):
        raise WriteError(f"expected a str, got {type(v).__name__}")
    try:
        return v.encode("utf-16-le")
    except UnicodeEncodeError as exc:
        raise WriteError(f"string cannot be stored as UTF-16: {exc}") from None


def _ansi(v: Any) -> bytes:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v) + b"\x00"
    if not isinstance(v, str):
        raise WriteError(f"expected a str or bytes, got {type(v).__name__}")
    try:
        return v.encode("cp1252") + b"\x00"
    except UnicodeEncodeError as exc:
        raise WriteError(f"ANSI string is not in code page 1252: {exc}") from None


def _float(fmt: str):
    pack = struct.Struct(fmt).pack

    def enc(v: Any) -> bytes:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise WriteError(f"expected a number, got {v!r}")
        return pack(v)

    return enc


def _bool(v: Any) -> bytes:
    if not isinstance(v, bool):
        raise WriteError(f"expected a bool, got {v!r}")
    return _I.pack(int(v))


def _binary(v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise WriteError(f"expected bytes, got {type(v).__name__}")
    return bytes(v)


def _guid(v: Any) -> bytes:
    if isinstance(v, uuid.UUID):
        return v.bytes_le
    if isinstance(v, str):
        return _guid_str(v)
    raise WriteError(f"not a GUID: {v!r}")


@functools.lru_cache(maxsize=4096)
def _guid_str(v: str) -> bytes:
    try:
        return uuid.UUID(v).bytes_le
    except ValueError:
        raise WriteError(f"not a GUID: {v!r}") from None


def _sid(v: Any) -> bytes:
    if not isinstance(v, str):
        raise WriteError(f"not a SID: {v!r} (S-1-5-21-...)")
    return _sid_str(v)


@functools.lru_cache(maxsize=4096)
def _sid_str(v: str) -> bytes:
    parts = v.split("-")
    try:
        if len(parts) < 3 or parts[0].upper() != "S":
            raise ValueError
        rev, auth, subs = int(parts[1]), int(parts[2]), [int(x) for x in parts[3:]]
        if not (0 <= rev < 256 and 0 <= auth < 2**48 and len(subs) <= 15 and all(0 <= s < 2**32 for s in subs)):
            raise ValueError
    except ValueError:
        raise WriteError(f"not a SID: {v!r} (S-1-5-21-...)") from None
    return bytes((rev, len(subs))) + auth.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def _filetime(v: Any) -> bytes:
    return _Q.pack(to_filetime(v))


def _systemtime(v: Any) -> bytes:
    if not isinstance(v, _dt.datetime):
        raise WriteError(f"expected an aware datetime, got {v!r}")
    if v.tzinfo is None or v.utcoffset() is None:
        raise WriteError(f"naive datetime {v.isoformat()}: give a zone (SYSTEMTIME here is UTC)")
    v = v.astimezone(_dt.timezone.utc)
    if v.microsecond % 1000:
        raise WriteError(f"{v.isoformat()}: a SYSTEMTIME holds milliseconds, not microseconds")
    return struct.pack("<8H", v.year, v.month, (v.weekday() + 1) % 7, v.day, v.hour, v.minute, v.second,
                       v.microsecond // 1000)


_ENCODERS = {
    0x01: lambda v: _utf16(v) + b"\x00\x00", 0x02: _ansi,
    0x03: _int("<b", -(2**7), 2**7 - 1), 0x04: _int("<B", 0, 2**8 - 1),
    0x05: _int("<h", -(2**15), 2**15 - 1), 0x06: _int("<H", 0, 2**16 - 1),
    0x07: _int("<i", -(2**31), 2**31 - 1), 0x08: _int("<I", 0, 2**32 - 1),
    0x09: _int("<q", -(2**63), 2**63 - 1), 0x0A: _int("<Q", 0, 2**64 - 1),
    0x0B: _float("<f"), 0x0C: _float("<d"), 0x0D: _bool, 0x0E: _binary, 0x0F: _guid,
    0x11: _filetime, 0x12: _systemtime, 0x13: _sid, 0x14: _int("<I", 0, 2**32 - 1), 0x15: _int("<Q", 0, 2**64 - 1),
}


def _typed(v: Any) -> tuple[int, int, bytes]:
    """(declared type, value type, value bytes) of one event data value (any but a plain str)."""
    if v.__class__ is tuple and len(v) == 2 and isinstance(v[0], str):
        kind, v = v
        code = TYPES.get(kind)
        if code is None:
            raise WriteError(f"unknown value type {kind!r}; one of {', '.join(TYPES)}")
        if v is None:  # a null value; the template keeps the declared type
            return (_STRING if code == _NULL else code), _NULL, b""
        if code == _NULL:
            raise WriteError(f"a null value must be None, got {v!r}")
    elif v is None:
        return _STRING, _NULL, b""
    elif isinstance(v, bool):
        code = 0x0D
    elif isinstance(v, int):
        if v >= 0:
            code = 0x08 if v < 2**32 else 0x0A
        else:
            code = 0x07 if v >= -(2**31) else 0x09
    elif isinstance(v, float):
        code = 0x0C
    elif isinstance(v, (bytes, bytearray, memoryview)):
        code = 0x0E
    elif isinstance(v, uuid.UUID):
        code = 0x0F
    elif isinstance(v, _dt.datetime):
        code = 0x11
    elif isinstance(v, str):
        code = 0x01
    else:
        raise WriteError(f"no EVTX type for {type(v).__name__} {v!r}; give (type, value)")
    return code, code, _ENCODERS[code](v)


_KINDS = {name: (code, _ENCODERS[code]) for name, code in TYPES.items() if code}


def _values(data: Mapping[str, Any]) -> tuple[tuple, bytes, int, bytes, bytes]:
    """Names, declared types, count, descriptors and bytes of an event's data values."""
    datas, codes, nulls = [], bytearray(), None
    add, code_of, kinds = datas.append, codes.append, _KINDS
    for k, v in data.items():
        cls = v.__class__
        try:
            if cls is str:
                add(v.encode("utf-16-le") + b"\x00\x00")
                code_of(_STRING)
                continue
            if cls is tuple and len(v) == 2 and v[0].__class__ is str and v[1] is not None and v[0] in kinds:
                code, enc = kinds[v[0]]
                add(enc(v[1]))
                code_of(code)
                continue
            dcode, code, b = _typed(v)
        except UnicodeEncodeError as exc:
            raise WriteError(f"{k}: string cannot be stored as UTF-16: {exc}") from None
        except WriteError as exc:
            raise WriteError(f"{k}: {exc}") from None
        if dcode != code:
            nulls = nulls or {}
            nulls[len(datas)] = dcode
        add(b)
        code_of(code)
    sizes = list(map(len, datas))
    if sizes and max(sizes) > 0xFFFF:
        k = list(data)[sizes.index(max(sizes))]
        raise RecordTooLarge(f"{k}: value of {max(sizes):,} bytes (a substitution holds at most 65,535)")
    desc = b"".join(map(_DESC.pack, sizes, codes, itertools.repeat(0, len(sizes))))
    if nulls:  # the template declares the type a null value stands for
        for i, dcode in nulls.items():
            codes[i] = dcode
    return tuple(data), bytes(codes), len(datas), desc, b"".join(datas)


def _check_names(names: tuple, what: str) -> None:
    for k in names:
        if k.__class__ is not str or not k:
            raise WriteError(f"{what} must be a non-empty str, got {k!r}")


# --- binary XML ------------------------------------------------------------------------------


def _name_hash(units: bytes) -> int:
    h = 0
    for (c,) in struct.iter_unpack("<H", units):
        h = (h * 65599 + c) & 0xFFFFFFFF
    return h & 0xFFFF


class _Sub:
    """A substitution in a template: ``0x0e`` (optional) or ``0x0d`` (normal), index, type."""

    __slots__ = ("index", "type", "optional")

    def __init__(self, index: int, type_: int, optional: bool):
        self.index, self.type, self.optional = index, type_, optional


# An element is (name, [(attribute name, content)], [child element or content]); a content is
# a literal str or a _Sub.
_Element = tuple


def _system_template(computer: str, user_data: bool, source_name: bool) -> _Element:
    """The System template Windows writes (substitution indexes as Windows numbers them)."""
    o = lambda i, t: _Sub(i, t, True)  # noqa: E731
    provider = [("Name", o(14, _STRING)), ("Guid", o(15, _GUID))]
    if source_name:
        provider.append(("EventSourceName", o(17, _STRING)))
    body_index = 18 if source_name else 17
    body = ("UserData", [], [o(body_index, _BINXML)]) if user_data else o(body_index, _BINXML)
    system = ("System", [], [
        ("Provider", provider, []),
        ("EventID", [("Qualifiers", o(4, _UINT16))], [o(3, _UINT16)]),
        ("Version", [], [o(11, _UINT8)]),
        ("Level", [], [o(0, _UINT8)]),
        ("Task", [], [o(2, _UINT16)]),
        ("Opcode", [], [o(1, _UINT8)]),
        ("Keywords", [], [o(5, _HEX64)]),
        ("TimeCreated", [("SystemTime", o(6, _FILETIME))], []),
        ("EventRecordID", [], [o(10, _UINT64)]),
        ("Correlation", [("ActivityID", o(7, _GUID)), ("RelatedActivityID", o(13, _GUID))], []),
        ("Execution", [("ProcessID", o(8, _UINT32)), ("ThreadID", o(9, _UINT32))], []),
        ("Channel", [], [o(16, _STRING)]),
        ("Computer", [], [computer]),
        ("Security", [("UserID", o(12, _SID))], []),
    ])
    return ("Event", [("xmlns", EVENT_NS)], [system, body])


def _data_template(names: tuple, types: bytes) -> _Element:
    return ("EventData", [], [("Data", [("Name", n)], [_Sub(i, t, False)]) for i, (n, t) in enumerate(zip(names, types))])


def _user_template(name: str, xmlns: str | None, names: tuple, types: bytes) -> _Element:
    return (name, [("xmlns", xmlns)] if xmlns else [],
            [(k, [], [_Sub(i, t, False)]) for i, (k, t) in enumerate(zip(names, types))])


# Every template shape gets a small id once per process; the GUID derives from the shape alone,
# so the same events give the same bytes in any run.
_TEMPLATE_IDS: dict[tuple, int] = {}
_TEMPLATES: list[tuple[bytes, bytes, Any, tuple]] = []  # id -> (GUID, instance prefix, builder, its args)


def _template_id(key: tuple, build, args: tuple, what: str | None = None) -> int:
    tid = _TEMPLATE_IDS.get(key)
    if tid is None:
        if what:  # a new shape: its names are checked once
            _check_names(key[-2], what)
        guid = hashlib.md5(repr(key).encode("utf-8", "surrogatepass")).digest()
        tid = _TEMPLATE_IDS[key] = len(_TEMPLATES)
        # instance: token 0x0c, 0x01, template id (the GUID's first 4 bytes, as in Windows' records)
        _TEMPLATES.append((guid, b"\x0c\x01" + guid[:4], build, args))
    return tid


class _Staging:
    """Names and templates a record adds to its chunk, kept apart until the record fits."""

    __slots__ = ("chunk", "names", "templates", "name_heads", "template_heads")

    def __init__(self, chunk: "_Chunk"):
        self.chunk = chunk
        self.names: dict[str, int] = {}
        self.templates: dict[int, int] = {}
        self.name_heads = chunk.name_heads[:]
        self.template_heads = chunk.template_heads[:]

    def name(self, out: bytearray, base: int, name: str) -> None:
        """The name's chunk offset, its definition inline after it on its first use in the chunk."""
        off = self.chunk.names.get(name)
        if off is None:
            off = self.names.get(name)
        if off is not None:
            out += _I.pack(off)
            return
        units = _utf16(name)
        off = base + len(out) + 4
        h = _name_hash(units)
        out += _I.pack(off)
        out += struct.pack("<IHH", self.name_heads[h % 64], h, len(units) // 2)  # next in bucket, hash, length
        out += units
        out += b"\x00\x00"
        self.name_heads[h % 64] = off
        self.names[name] = off

    def element(self, out: bytearray, base: int, el: _Element) -> None:
        name, attrs, children = el
        start = len(out)
        # token (0x41: with attributes), dependency id -1, data size (patched below)
        out += b"\x41\xff\xff\x00\x00\x00\x00" if attrs else b"\x01\xff\xff\x00\x00\x00\x00"
        self.name(out, base, name)
        if attrs:
            list_at = len(out)
            out += b"\x00\x00\x00\x00"
            last = len(attrs) - 1
            for i, (aname, value) in enumerate(attrs):
                out.append(0x46 if i < last else 0x06)  # 0x46: another attribute follows
                self.name(out, base, aname)
                self.content(out, value)
            _I.pack_into(out, list_at, len(out) - list_at - 4)
        if children:
            out.append(0x02)
            for child in children:
                if child.__class__ is tuple:
                    self.element(out, base, child)
                else:
                    self.content(out, child)
            out.append(0x04)
        else:
            out.append(0x03)
        _I.pack_into(out, start + 3, len(out) - start - 7)

    @staticmethod
    def content(out: bytearray, value: str | _Sub) -> None:
        if value.__class__ is _Sub:
            out += struct.pack("<BHB", 0x0E if value.optional else 0x0D, value.index, value.type)
        else:
            units = _utf16(value)
            out += b"\x05\x01"
            out += _H.pack(len(units) // 2)
            out += units

    def instance(self, out: bytearray, base: int, tid: int) -> None:
        """A template instance's header; the template inline after it on its first use in the chunk."""
        guid, prefix, build, args = _TEMPLATES[tid]
        out += prefix
        off = self.chunk.templates.get(tid)
        if off is None:
            off = self.templates.get(tid)
        if off is not None:
            out += _I.pack(off)
            return
        off = base + len(out) + 4
        out += _I.pack(off)
        bucket = _name_hash(guid) % 32
        out += _I.pack(self.template_heads[bucket])  # next template in the bucket
        out += guid
        size_at = len(out)
        out += b"\x00\x00\x00\x00"
        out += _FRAGMENT
        self.element(out, base, build(*args))
        out.append(0x00)  # end of the template's stream
        _I.pack_into(out, size_at, len(out) - size_at - 4)
        self.template_heads[bucket] = off
        self.templates[tid] = off


# --- the writer ------------------------------------------------------------------------------


class _Chunk:
    __slots__ = ("buf", "pos", "first", "last", "last_offset", "names", "templates", "name_heads", "template_heads")

    def __init__(self) -> None:
        self.buf = bytearray(CHUNK_SIZE)
        self.pos = CHUNK_HEADER
        self.first = self.last = 0
        self.last_offset = 0
        self.names: dict[str, int] = {}
        self.templates: dict[int, int] = {}
        self.name_heads = [0] * 64
        self.template_heads = [0] * 32

    def add(self, record: bytes | bytearray, record_id: int) -> None:
        n = len(record)
        self.buf[self.pos:self.pos + n] = record
        if self.pos == CHUNK_HEADER:
            self.first = record_id
        self.last, self.last_offset = record_id, self.pos
        self.pos += n

    def adopt(self, st: _Staging) -> None:
        self.names.update(st.names)
        self.templates.update(st.templates)
        self.name_heads, self.template_heads = st.name_heads, st.template_heads

    def finish(self) -> bytes:
        """The chunk with its header: record range, offsets, tables and both CRC32s."""
        b = self.buf
        struct.pack_into("<8sQQQQIIII", b, 0, CHUNK_MAGIC, self.first, self.last, self.first, self.last,
                         128, self.last_offset, self.pos, zlib.crc32(memoryview(b)[CHUNK_HEADER:self.pos]))
        _I.pack_into(b, 120, 1)  # flags: 1 in every closed chunk Windows wrote in the corpus
        struct.pack_into("<64I", b, 128, *self.name_heads)
        struct.pack_into("<32I", b, 384, *self.template_heads)
        view = memoryview(b)
        _I.pack_into(b, 124, zlib.crc32(view[128:CHUNK_HEADER], zlib.crc32(view[:120])))
        return bytes(b)


_SYS_A = struct.Struct("<BBHH")  # values 0-3: Level, Opcode, Task, EventID
_SYS_B = struct.Struct("<QQ")  # 5-6: Keywords, TimeCreated
_SYS_C = struct.Struct("<IIQB")  # 8-11: ProcessID, ThreadID, EventRecordID, Version
_SYS_DESC: dict[tuple, bytes] = {}
_EMPTY: Mapping[str, Any] = {}
_U16: dict[str, bytes] = {}
_SYSTEM_CHECKS = (("level", 0xFF), ("opcode", 0xFF), ("task", 0xFFFF), ("event_id", 0xFFFF),
                  ("qualifiers", 0xFFFF), ("keywords", 2**64 - 1), ("process_id", 2**32 - 1),
                  ("thread_id", 2**32 - 1), ("version", 0xFF))


def _u16(s: Any, what: str) -> bytes:
    """UTF-16 of a System string (provider, channel: few distinct values, cached)."""
    b = _U16.get(s)
    if b is None:
        if not isinstance(s, str):
            raise WriteError(f"{what} must be a str, got {s!r}")
        b = _utf16(s)
        if len(_U16) > 10_000:
            _U16.clear()
        _U16[s] = b
    return b


def _system_descriptors(sizes: tuple) -> bytes:
    """Descriptors of the System values 0..16 (and 17, EventSourceName), by the sizes of the variable ones."""
    d = _SYS_DESC.get(sizes)
    if d is None:
        q, act, sid, rel, prov, pg, chan, esn = sizes
        spec = [(1, _UINT8), (1, _UINT8), (2, _UINT16), (2, _UINT16), (q, _UINT16 if q else _NULL), (8, _HEX64),
                (8, _FILETIME), (act, _GUID if act else _NULL), (4, _UINT32), (4, _UINT32), (8, _UINT64),
                (1, _UINT8), (sid, _SID if sid else _NULL), (rel, _GUID if rel else _NULL), (prov, _STRING),
                (pg, _GUID if pg else _NULL), (chan, _STRING)]
        if esn >= 0:
            spec.append((esn, _STRING))
        d = b"".join(_DESC.pack(n, c, 0) for n, c in spec)
        if len(_SYS_DESC) > 10_000:
            _SYS_DESC.clear()
        _SYS_DESC[sizes] = d
    return d


class EvtxWriter:
    """Streaming EVTX writer: ``with EvtxWriter(path) as w: w.write(Event(...))``.

    ``target`` is a path (created or truncated) or a seekable binary file object (left open).
    ``first_record_id`` numbers the first record when events carry no ``record_id``; explicit
    ids must increase (gaps allowed).  An event that cannot be written raises
    :class:`~timeline.errors.WriteError` and leaves the file as it was; leaving the ``with``
    block, even by an exception, closes the file with the records written so far.
    """

    def __init__(self, target: str | os.PathLike | BinaryIO, first_record_id: int = 1):
        if isinstance(target, (str, os.PathLike)):
            self._fh: BinaryIO = open(target, "wb")
            self._owns = True
        else:
            if not (hasattr(target, "write") and target.seekable()):
                raise WriteError("the EVTX writer needs a seekable binary file (its header is rewritten at the end)")
            self._fh, self._owns = target, False
        if isinstance(first_record_id, bool) or not isinstance(first_record_id, int) or first_record_id < 1:
            raise WriteError(f"first_record_id must be an int >= 1, got {first_record_id!r}")
        self._start = self._fh.tell()
        self._next_id = first_record_id
        self._chunks = 0
        self._records = 0
        self._chunk = _Chunk()
        self._closed = False
        self._fh.write(self._header(dirty=True))

    # -- public --------------------------------------------------------------------------------

    @property
    def records(self) -> int:
        """Records written so far."""
        return self._records

    @property
    def chunks(self) -> int:
        """Chunks in the file so far, the one being filled included."""
        return self._chunks + (self._chunk.pos > CHUNK_HEADER)

    def write(self, event: Event | Mapping[str, Any]) -> int:
        """Append one event; returns its record id."""
        if self._closed:
            raise WriteError("the EVTX writer is closed")
        if not isinstance(event, Event):
            if not isinstance(event, Mapping):
                raise WriteError(f"not an event: {event!r}")
            try:
                event = Event(**event)
            except TypeError as exc:
                raise WriteError(f"not an event: {exc}") from None
        rid = self._next_id if event.record_id is None else event.record_id
        if isinstance(rid, bool) or not isinstance(rid, int) or not self._next_id <= rid < 2**64 - 1:
            raise WriteError(f"record id {rid!r}: ids must increase (next is {self._next_id} or more)")
        prepared = self._prepare(event, rid)
        size = self._place(prepared, rid)
        if size:
            if self._chunk.pos == CHUNK_HEADER:
                raise RecordTooLarge(self._too_large(rid, size))
            self._flush()
            size = self._place(prepared, rid)
            if size:
                raise RecordTooLarge(self._too_large(rid, size))
        self._next_id = rid + 1
        self._records += 1
        return rid

    def close(self) -> None:
        """Write the last chunk and the final (clean) file header."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._chunk.pos > CHUNK_HEADER:
                self._flush()
            end = self._fh.tell()
            self._fh.seek(self._start)
            self._fh.write(self._header(dirty=False))
            self._fh.seek(end)
            self._fh.flush()
        finally:
            if self._owns:
                self._fh.close()
        log.debug("EVTX written: %d records in %d chunks", self._records, self._chunks)

    def __enter__(self) -> "EvtxWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _too_large(rid: int, size: int) -> str:
        return (f"record {rid} needs {size:,} bytes; a chunk holds {MAX_RECORD_SIZE:,} bytes of records "
                "(shorten its longest values)")

    def _header(self, dirty: bool) -> bytes:
        h = bytearray(HEADER_BLOCK)
        struct.pack_into("<8sQQQIHHHH", h, 0, FILE_MAGIC, 0, max(self._chunks - 1, 0), self._next_id,
                         128, 1, 3, HEADER_BLOCK, self._chunks)
        _I.pack_into(h, 120, 1 if dirty else 0)
        _I.pack_into(h, 124, zlib.crc32(memoryview(h)[:120]))
        return bytes(h)

    def _flush(self) -> None:
        if self._chunks >= _MAX_CHUNKS:
            raise WriteError(f"an EVTX file holds at most {_MAX_CHUNKS} chunks")
        self._fh.write(self._chunk.finish())
        self._chunks += 1
        self._chunk = _Chunk()

    def _prepare(self, e: Event, rid: int) -> tuple:
        """Everything of the record that does not depend on where in the chunk it lands."""
        try:
            t = e.time
            created = t if t.__class__ is int and 0 <= t < 2**64 else to_filetime(t)
            written = created if e.written is None else to_filetime(e.written)
            try:
                a = _SYS_A.pack(e.level, e.opcode, e.task, e.event_id)
                q = b"" if e.qualifiers is None else _H.pack(e.qualifiers)
                b = _SYS_B.pack(e.keywords, created)
                c = _SYS_C.pack(e.process_id, e.thread_id, rid, e.version)
            except struct.error:
                self._explain(e)
                raise
            act = b"" if e.activity_id is None else _guid(e.activity_id)
            sid = b"" if e.user_sid is None else _sid(e.user_sid)
            rel = b"" if e.related_activity_id is None else _guid(e.related_activity_id)
            prov, chan = _u16(e.provider, "provider"), _u16(e.channel, "channel")
            pg = b"" if e.provider_guid is None else _guid(e.provider_guid)
            esn = None if e.event_source_name is None else _u16(e.event_source_name, "event_source_name")
            computer = e.computer
            if computer.__class__ is not str or not computer:
                raise WriteError(f"computer must be a non-empty str, got {computer!r}")
        except WriteError as exc:
            raise exc.__class__(f"record {rid}: {exc}") from None
        sys_vals = b"".join((a, q, b, act, c, sid, rel, prov, pg, chan, esn or b""))
        sys_desc = _system_descriptors((len(q), len(act), len(sid), len(rel), len(prov), len(pg), len(chan),
                                        -1 if esn is None else len(esn)))
        try:
            if e.user_data is not None:
                if e.event_data:
                    raise WriteError("an event has EventData or UserData, not both")
                ud = e.user_data
                if ud.name.__class__ is not str or not ud.name:
                    raise WriteError(f"UserData name must be a non-empty str, got {ud.name!r}")
                names, types, n, desc, vals = _values(ud.values)
                body = _template_id(("UserData", ud.name, ud.xmlns, names, types), _user_template,
                                    (ud.name, ud.xmlns, names, types), "UserData key")
            else:
                names, types, n, desc, vals = _values(e.event_data or _EMPTY)
                body = _template_id(("EventData", names, types), _data_template, (names, types), "EventData name")
        except WriteError as exc:
            raise exc.__class__(f"record {rid}: {exc}") from None
        user, source = e.user_data is not None, esn is not None
        system = _template_id(("System", computer, user, source), _system_template, (computer, user, source))
        return written, system, sys_desc, sys_vals, body, n, desc, vals

    @staticmethod
    def _explain(e: Event) -> None:
        """Which System number is out of range (after struct refused one)."""
        for name, hi in _SYSTEM_CHECKS:
            v = getattr(e, name)
            if v is None and name == "qualifiers":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise WriteError(f"{name} must be an int 0..{hi}, got {v!r}")

    def _place(self, p: tuple, rid: int) -> int:
        """Put the record in the current chunk; returns 0, or the record's size when it does not fit."""
        written, system, sys_desc, sys_vals, body, n, desc, vals = p
        ch = self._chunk
        sys_off, body_off = ch.templates.get(system), ch.templates.get(body)
        if sys_off is not None and body_off is not None:
            # Both templates are in the chunk already: then so are all their names.
            nested = 4 + 10 + 4 + len(desc) + len(vals) + 1
            size = 24 + 4 + 10 + 4 + len(sys_desc) + 4 + len(sys_vals) + nested + 1 + 4
            size += -size % 8
            if ch.pos + size > CHUNK_SIZE:
                return size
            record = b"".join((
                _REC_HEAD.pack(0x2A2A, size, rid, written), _FRAGMENT,
                _TEMPLATES[system][1], _I.pack(sys_off), _I.pack(sys_desc.__len__() // 4 + 1), sys_desc,
                _DESC.pack(nested, _BINXML, 0), sys_vals,
                _FRAGMENT, _TEMPLATES[body][1], _I.pack(body_off), _I.pack(n), desc, vals, b"\x00",
                bytes(size - 24 - 4 - 10 - 4 - len(sys_desc) - 4 - len(sys_vals) - nested - 4), _I.pack(size),
            ))
            ch.add(record, rid)
            return 0
        st = _Staging(ch)
        base = ch.pos
        out = bytearray(24)
        out += _FRAGMENT
        st.instance(out, base, system)
        out += _I.pack(len(sys_desc) // 4 + 1)
        out += sys_desc
        # The nested EventData/UserData fragment is the System template's last value; its bytes hold
        # chunk offsets, so it is built where it will lie: after its descriptor and the other values.
        nested = bytearray(_FRAGMENT)
        st.instance(nested, base + len(out) + 4 + len(sys_vals), body)
        nested += _I.pack(n)
        nested += desc
        nested += vals
        nested.append(0x00)  # end of the fragment's stream
        out += _DESC.pack(len(nested), _BINXML, 0)
        out += sys_vals
        out += nested
        out.append(0x00)  # end of the record's stream
        size = len(out) + 4
        size += -size % 8  # records are 8-byte aligned, as Windows writes them
        if ch.pos + size > CHUNK_SIZE:
            return size
        out += bytes(size - len(out) - 4)
        out += _I.pack(size)
        _REC_HEAD.pack_into(out, 0, 0x2A2A, size, rid, written)
        ch.add(out, rid)
        ch.adopt(st)
        return 0


def write_evtx(target: str | os.PathLike | BinaryIO, events: Iterable[Event | Mapping[str, Any]],
               first_record_id: int = 1) -> int:
    """Write ``events`` to a new EVTX file; returns the number of records written."""
    with EvtxWriter(target, first_record_id) as w:
        for ev in events:
            w.write(ev)
        return w.records
