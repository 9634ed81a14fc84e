"""Write genuine Windows registry hive files (regf), as Windows lays them out.

Tests need real hives (SYSTEM, SOFTWARE, SAM, NTUSER.DAT, Amcache.hve) whose every key, value
and last-written time is known.  This module writes them; it reads nothing.

Layout (libyal's "Windows NT Registry File (REGF) format" and Microsoft's ``CM_KEY_NODE``):

* a 4096-byte base block: ``regf``, equal sequence numbers (no pending transaction), a
  FILETIME, version 1.5, primary file, the root key's cell, the hive-bins data size, the
  file name (last 31 UTF-16 characters), and at byte 508 the XOR-32 checksum of the
  first 508 bytes (0 written as 1, -1 as -2, as Windows does);
* hive bins (``hbin``, 4096 bytes or a multiple for a larger cell) of 8-byte aligned cells,
  each a negative (allocated) size then its data; the rest of a bin is one free cell.  Cell
  offsets count from the first bin;
* one key node (``nk``) per key: flags (the root: HIVE_ENTRY|NO_DELETE), its last-written
  FILETIME, parent, subkey count and list, value count and list, the shared security cell
  (``sk``, one self-linked descriptor granting Everyone read), longest name/data sizes, name
  (ASCII names stored compressed, others UTF-16LE);
* subkey lists as ``lh`` leaves sorted the way Windows sorts (by upper-case name), each entry
  the cell and the name hash ``h = h * 37 + ord(upper(c))``;
* a value list cell of ``vk`` cells; data of 4 bytes or less is stored in the ``vk`` itself
  (data size high bit set), larger data in its own cell, data over 16344 bytes in a ``db``
  big-data cell of segments.

Values are given as Python values or ``(type name, value)`` pairs:

=====================  ===========================================================
``str``                REG_SZ (UTF-16LE, NUL-terminated)
``int``                REG_DWORD (0 <= v < 2**32), else REG_QWORD
``bytes``              REG_BINARY
``list`` of ``str``    REG_MULTI_SZ
``(name, value)``      ``"sz"``, ``"expand_sz"``, ``"binary"``, ``"dword"``, ``"dword_be"``,
                       ``"qword"``, ``"multi_sz"``, ``"none"`` (bytes), or an ``int`` type
                       code with ``bytes`` data (raw, any type)
=====================  ===========================================================

Same keys in, byte-identical file out.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from collectors.evtx_writer import to_filetime
from timeline.errors import WriteError

__all__ = ["Key", "write_hive", "hive_bytes", "TYPES", "lh_hash"]

log = logging.getLogger(__name__)

TYPES = {"none": 0, "sz": 1, "expand_sz": 2, "binary": 3, "dword": 4, "dword_be": 5, "multi_sz": 7, "qword": 11}
_BIN = 4096
_BIG = 16344  # largest data a single cell holds (minor version >= 4: larger data goes to a ``db`` cell)
_NONE = 0xFFFFFFFF
# nk fields (after the cell size): sig, flags, last write, spare, parent, subkey counts (stable, volatile),
# subkey lists, value count, value list, security, class, max name, max class, max value name, max value data,
# work var, name length, class length
_NK = struct.Struct("<2sHQIIIIIIIIIIIIIIIHH")
_VK = struct.Struct("<2sHIIIHH")
# a self-relative security descriptor: owner/group Administrators, DACL granting Everyone KEY_READ
_SID_ADMINS = bytes([1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 32, 2, 0, 0])
_SID_EVERYONE = bytes([1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
_ACE = struct.pack("<BBHI", 0, 0, 8 + len(_SID_EVERYONE), 0x20019) + _SID_EVERYONE
_ACL = struct.pack("<BBHHH", 2, 0, 8 + len(_ACE), 1, 0) + _ACE
_SD = (struct.pack("<BBHIIII", 1, 0, 0x8004, 20, 20 + len(_SID_ADMINS), 0, 20 + 2 * len(_SID_ADMINS))
       + _SID_ADMINS + _SID_ADMINS + _ACL)


@dataclass
class Key:
    """One registry key: its name, last-written time (aware datetime or int FILETIME), values, subkeys and
    class name (rarely set; the LSA keys JD, Skew1, GBG and Data keep the boot key in theirs)."""

    name: str
    last_written: _dt.datetime | int
    values: Mapping[str, Any] = field(default_factory=dict)
    subkeys: Sequence["Key"] = field(default_factory=list)
    class_name: str | None = None


def lh_hash(name: str) -> int:
    """The name hash of an ``lh`` subkey-list entry."""
    h = 0
    for c in name.upper():
        h = (h * 37 + ord(c)) & 0xFFFFFFFF
    return h


def _name(name: str) -> tuple[bytes, bool]:
    """(stored name, compressed): ASCII names are stored one byte per character (the COMP_NAME flag)."""
    try:
        return name.encode("ascii"), True
    except UnicodeEncodeError:
        return name.encode("utf-16-le"), False


def _value(name: str, v: Any) -> tuple[int, bytes]:
    """(type code, data) of one value."""
    if isinstance(v, tuple):
        if len(v) != 2:
            raise WriteError(f"value {name!r}: give (type name, value), not {v!r}")
        kind, data = v
        if isinstance(kind, int):
            if not isinstance(data, (bytes, bytearray)):
                raise WriteError(f"value {name!r}: raw type {kind} needs bytes")
            return kind, bytes(data)
        if kind not in TYPES:
            raise WriteError(f"value {name!r}: unknown type {kind!r} (one of {sorted(TYPES)})")
        code = TYPES[kind]
        try:
            if kind in ("sz", "expand_sz"):
                return code, (str(data) + "\x00").encode("utf-16-le")
            if kind == "multi_sz":
                return code, "".join(s + "\x00" for s in data).encode("utf-16-le") + b"\x00\x00"
            if kind == "dword":
                return code, struct.pack("<I", data)
            if kind == "dword_be":
                return code, struct.pack(">I", data)
            if kind == "qword":
                return code, struct.pack("<Q", data)
            return code, bytes(data)  # binary, none
        except (struct.error, TypeError) as exc:
            raise WriteError(f"value {name!r}: {kind} cannot hold {data!r}: {exc}") from exc
    if isinstance(v, bool):
        raise WriteError(f"value {name!r}: a bool has no registry type; give ('dword', 0 or 1)")
    if isinstance(v, str):
        return _value(name, ("sz", v))
    if isinstance(v, int):
        return _value(name, ("dword" if 0 <= v < 2**32 else "qword", v))
    if isinstance(v, (bytes, bytearray)):
        return TYPES["binary"], bytes(v)
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        return _value(name, ("multi_sz", list(v)))
    raise WriteError(f"value {name!r}: cannot store {type(v).__name__} {v!r}")


class _Bins:
    """Hive bins being filled: cells are allocated in order; a cell never crosses a bin."""

    def __init__(self, timestamp: int):
        self.buf = bytearray()
        self.pos = self.end = 0
        self.timestamp = timestamp

    def alloc(self, length: int) -> int:
        size = (length + 4 + 7) & ~7
        if self.pos + size > self.end:
            self._close()
            start = len(self.buf)
            binsize = max(_BIN, (size + 32 + _BIN - 1) // _BIN * _BIN)
            self.buf += struct.pack("<4sIIIIQI", b"hbin", start, binsize, 0, 0, self.timestamp if not start else 0, 0)
            self.buf += bytes(binsize - 32)
            self.pos, self.end = start + 32, start + binsize
        off = self.pos
        struct.pack_into("<i", self.buf, off, -size)
        self.pos += size
        return off

    def put(self, off: int, data: bytes) -> None:
        struct.pack_into(f"{len(data)}s", self.buf, off + 4, data)

    def _close(self) -> None:
        if self.end > self.pos:  # the rest of the bin is one free cell
            struct.pack_into("<i", self.buf, self.pos, self.end - self.pos)
            self.pos = self.end


def _place(bins: _Bins, key: Key, parent: int, sk: int, root: bool, nk: int | None = None) -> int:
    """Allocate (unless given) and write one key and everything under it; return its cell offset."""
    name, comp = _name(key.name)
    if nk is None:
        nk = bins.alloc(_NK.size + len(name))
    # values: the list, then each vk and its data
    vlist, max_vname, max_vdata = _NONE, 0, 0
    vks = []
    for vname, v in key.values.items():
        code, data = _value(vname, v)
        n, vcomp = _name(vname)
        vk = bins.alloc(_VK.size + len(n))
        if len(data) <= 4:
            ref, size = int.from_bytes(data.ljust(4, b"\x00"), "little"), len(data) | 0x80000000
        elif len(data) <= _BIG:
            ref, size = bins.alloc(len(data)), len(data)
            bins.put(ref, data)
        else:
            segs = [data[i:i + _BIG] for i in range(0, len(data), _BIG)]
            ref, size = bins.alloc(8), len(data)
            lst = bins.alloc(4 * len(segs))
            offs = []
            for s in segs:
                o = bins.alloc(len(s))
                bins.put(o, s)
                offs.append(o)
            bins.put(lst, struct.pack(f"<{len(offs)}I", *offs))
            bins.put(ref, struct.pack("<2sHI", b"db", len(segs), lst))
        bins.put(vk, _VK.pack(b"vk", len(n), size, ref, code, 1 if vcomp else 0, 0) + n)
        vks.append(vk)
        max_vname = max(max_vname, len(vname) * 2)
        max_vdata = max(max_vdata, len(data))
    if vks:
        vlist = bins.alloc(4 * len(vks))
        bins.put(vlist, struct.pack(f"<{len(vks)}I", *vks))
    # subkeys, sorted as Windows sorts them, in an lh leaf
    subs = sorted(key.subkeys, key=lambda k: k.name.upper())
    upper = [k.name.upper() for k in subs]
    if len(set(upper)) != len(upper):
        raise WriteError(f"key {key.name!r}: subkey names differ only in case: {sorted(upper)}")
    slist = _NONE
    if subs:
        slist = bins.alloc(4 + 8 * len(subs))
        cells = [_place(bins, k, nk, sk, False) for k in subs]
        bins.put(slist, struct.pack("<2sH", b"lh", len(subs))
                 + b"".join(struct.pack("<II", c, lh_hash(k.name)) for c, k in zip(cells, subs)))
    cls, cls_len = _NONE, 0
    if key.class_name is not None:
        data = key.class_name.encode("utf-16-le")
        cls, cls_len = bins.alloc(len(data)), len(data)
        bins.put(cls, data)
    flags = (0x20 if comp else 0) | (0x0C if root else 0)
    bins.put(nk, _NK.pack(b"nk", flags, to_filetime(key.last_written), 0, parent, len(subs), 0, slist, _NONE,
                          len(key.values), vlist, sk, cls, max((len(k.name) * 2 for k in subs), default=0),
                          max((len(k.class_name or "") * 2 for k in subs), default=0), max_vname, max_vdata, 0,
                          len(name), cls_len) + name)
    return nk


def hive_bytes(root: Key, file_name: str = "", timestamp: _dt.datetime | int | None = None) -> bytes:
    """The bytes of a hive whose root key is ``root`` (``file_name`` as Windows records it, e.g.
    ``\\??\\C:\\Windows\\System32\\config\\SYSTEM``; ``timestamp`` defaults to the root's last-written time)."""
    ts = to_filetime(root.last_written if timestamp is None else timestamp)
    bins = _Bins(ts)
    # the root key is the first cell of the first bin and the security cell the second, as in Windows' hives
    root_off = bins.alloc(_NK.size + len(_name(root.name)[0]))
    sk = bins.alloc(24 + len(_SD))
    bins.put(sk, struct.pack("<2sHIIII", b"sk", 0, sk, sk, _count_keys(root), len(_SD)) + _SD)
    _place(bins, root, _NONE, sk, True, root_off)
    bins._close()
    data = bytes(bins.buf)
    name16 = file_name.encode("utf-16-le")[-62:].ljust(64, b"\x00")
    base = bytearray(_BIN)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, ts, 1, 5, 0, 1, root_off, len(data), 1)
    base[48:112] = name16
    csum = 0
    for (w,) in struct.iter_unpack("<I", bytes(base[:508])):
        csum ^= w
    csum = {0: 1, 0xFFFFFFFF: 0xFFFFFFFE}.get(csum, csum)
    struct.pack_into("<I", base, 508, csum)
    return bytes(base) + data


def _count_keys(k: Key) -> int:
    return 1 + sum(_count_keys(s) for s in k.subkeys)


def write_hive(path: str | os.PathLike, root: Key, file_name: str = "",
               timestamp: _dt.datetime | int | None = None) -> None:
    """Write the hive whose root key is ``root`` to ``path`` (see :func:`hive_bytes`)."""
    data = hive_bytes(root, file_name, timestamp)
    with open(path, "wb") as f:
        f.write(data)
    log.debug("wrote hive %s: %d bytes", path, len(data))
