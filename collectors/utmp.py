"""Login records: utmp / wtmp / btmp (Linux ``struct utmp``, macOS ``struct utmpx``) and lastlog.

Files are recognised by name (``utmp``, ``wtmp``, ``btmp``, ``utmpx``, ``lastlog`` and their
rotations such as ``wtmp.1``, ``btmp-20231101.gz``) *and* by the structure of their first
records, so a random binary with such a name is not taken.  Compressed rotations (gzip,
bzip2, xz) are read by magic.

Layouts (detected from the first records, not from the machine that reads them)
    ``linux-384-le``  x86 and x86_64 (32-bit ``ut_session`` and ``ut_tv``, 384 bytes);
    ``linux-400-le``  aarch64 and other 64-bit builds without 32-bit time compatibility (400 bytes);
    ``linux-400-be``  s390x (400 bytes, big-endian); ``linux-384-be`` 32-bit big-endian machines;
    ``macos-628-le``  macOS ``/var/run/utmpx`` (628 bytes, with its ``utmpx-1.00`` signature record).
    lastlog: 292-byte records (32-bit ``ll_time``) or 296-byte ones (64-bit), either byte order;
    the record's index is the uid.

Rows (``source`` LOGIN, ``artifact`` wtmp / btmp / utmp / lastlog by the file's name)
    ``ut_tv`` is seconds and microseconds since the epoch, UTC (``tz_source`` source_utc).
    ``timestamp_desc`` says what the record means: "Login Time" (USER_PROCESS), "Session End
    Time" (DEAD_PROCESS), "Boot Time", "Shutdown Time" (RUN_LVL by "shutdown"), "Run Level
    Change Time", "Clock Change Time", "Login Prompt Time" (LOGIN_PROCESS), "Process Start
    Time" (INIT_PROCESS), "Accounting Time", "Record Time" (an EMPTY record that still holds a
    time); every btmp record is a failed login, "Failed Login Time"; lastlog rows are "Last Login".
    ``user`` (the account, for logins, session ends and failures), ``src_ip`` (``ut_addr_v6``,
    IPv4 or IPv6, else ``ut_host`` when it is an address), ``src_host`` (``ut_host`` when it is
    a host name); every field, the pid, exit status and session, is kept in ``attrs``.

Damage
    Empty slots (type EMPTY, no time) are not events: counted in ``stats['empty']``.  A record
    with an unknown type, microseconds outside 0..999999, a negative pid or a time outside
    1970..2100 (or no time at all) is an error with its offset and reason; the records after
    it are read.  A trailing partial record is an error (a warning when its bytes are all zero:
    nothing was lost); a compressed stream that ends early is an error.  Never a crash.
"""

from __future__ import annotations

import logging
import lzma
import os
import re
import socket
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, ArtifactReport, Collector, RecordError
from collectors.text import compression, open_text
from timeline.custody import open_evidence
from timeline.errors import UnknownFormat
from timeline.schema import TZ_SOURCE_UTC, event_hash

__all__ = ["UtmpCollector", "login_file_kind", "LAYOUTS", "LASTLOG_LAYOUTS"]

log = logging.getLogger(__name__)

# ``wtmp``, ``btmp.1.gz``, ``wtmp-20231101``, ``utmpx``, ``lastlog``... but not ``utmp.h`` or ``utmp.py``.
_NAME = re.compile(r"^(?P<kind>[bwu]tmpx?|lastlog)(?:[._-][\w.-]*)?$", re.I)
_NOT_LOG = re.compile(r"\.(?:py[cod]?|[ch]|hh?pp|so(?:\.\d+)*|o|a|la|txt|md|rst|html?|json|ya?ml|xml|conf|cfg|ini|"
                      r"service|socket|timer|rules|pc|ko|sh|pl|rb|go|rs|js|ts|mo|po|pot|desktop|svg|png)$", re.I)

MAX_SEC = 4_102_444_800  # 2100-01-01: a later time is garbage, not a login

LINUX_TYPES = {0: "EMPTY", 1: "RUN_LVL", 2: "BOOT_TIME", 3: "NEW_TIME", 4: "OLD_TIME", 5: "INIT_PROCESS",
               6: "LOGIN_PROCESS", 7: "USER_PROCESS", 8: "DEAD_PROCESS", 9: "ACCOUNTING"}
MACOS_TYPES = {0: "EMPTY", 1: "RUN_LVL", 2: "BOOT_TIME", 3: "OLD_TIME", 4: "NEW_TIME", 5: "INIT_PROCESS",
               6: "LOGIN_PROCESS", 7: "USER_PROCESS", 8: "DEAD_PROCESS", 9: "ACCOUNTING", 10: "SIGNATURE",
               11: "SHUTDOWN_TIME"}

_DESC = {"EMPTY": "Record Time", "RUN_LVL": "Run Level Change Time", "BOOT_TIME": "Boot Time",
         "NEW_TIME": "Clock Change Time", "OLD_TIME": "Clock Change Time", "INIT_PROCESS": "Process Start Time",
         "LOGIN_PROCESS": "Login Prompt Time", "USER_PROCESS": "Login Time", "DEAD_PROCESS": "Session End Time",
         "ACCOUNTING": "Accounting Time", "SHUTDOWN_TIME": "Shutdown Time"}
FAILED_LOGIN = "Failed Login Time"
LAST_LOGIN = "Last Login"

# Normalised record: (type, pid, line, id, user, host, e_termination, e_exit, session, sec, usec, addr)
Rec = tuple


@dataclass(frozen=True)
class Layout:
    name: str
    size: int
    types: dict[int, str]
    unpack: Callable[[bytes, int], Rec]


def _linux(name: str, fmt: str) -> Layout:
    s = struct.Struct(fmt)
    return Layout(name, s.size, LINUX_TYPES, s.unpack_from)


def _macos() -> Layout:
    s = struct.Struct("<256s4s32sih2xii256s64x")

    def unpack(buf: bytes, off: int) -> Rec:
        user, id_, line, pid, typ, sec, usec, host = s.unpack_from(buf, off)
        return (typ, pid, line, id_, user, host, None, None, None, sec, usec, b"")

    return Layout("macos-628-le", s.size, MACOS_TYPES, unpack)


# In order of preference when two layouts read a file equally well.
LAYOUTS: tuple[Layout, ...] = (
    _linux("linux-384-le", "<h2xi32s4s32s256shhiii16s20x"),
    _linux("linux-400-le", "<h2xi32s4s32s256shhqqq16s20x4x"),
    _linux("linux-400-be", ">h2xi32s4s32s256shhqqq16s20x4x"),
    _linux("linux-384-be", ">h2xi32s4s32s256shhiii16s20x"),
    _macos(),
)
assert [lay.size for lay in LAYOUTS] == [384, 400, 400, 384, 628]

LASTLOG_LAYOUTS: tuple[tuple[str, struct.Struct], ...] = (
    ("lastlog-292-le", struct.Struct("<i32s256s")),
    ("lastlog-296-le", struct.Struct("<q32s256s")),
    ("lastlog-292-be", struct.Struct(">i32s256s")),
    ("lastlog-296-be", struct.Struct(">q32s256s")),
)
_LASTLOG_BLOCK = 21_608 * 48  # a multiple of 292 and of 296 (lcm 21,608): ~1 MiB


def login_file_kind(name: str) -> str | None:
    """``wtmp``, ``btmp``, ``utmp`` or ``lastlog`` when a file's name is one of those (or a rotation of
    one, compressed or not), else None.  Only the name: the structure is checked by :meth:`UtmpCollector.matches`."""
    name = os.path.basename(name)
    m = _NAME.match(name)
    if not m or _NOT_LOG.search(re.sub(r"\.(?:gz|bz2|xz)$", "", name, flags=re.I)):
        return None
    kind = m.group("kind").lower()
    return "lastlog" if kind == "lastlog" else kind[:4]


def _text(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")


def _clean(b: bytes) -> bool:
    """No control character before the string's end (a field of a misaligned or garbage record has some)."""
    head = b.split(b"\x00", 1)[0]
    return not any(c < 0x20 or c == 0x7F for c in head)


EMPTY, SIGNATURE = "empty", "signature"


def _check(rec: Rec, lay: Layout) -> str | None:
    """Why this record is garbage (None when it is sane); :data:`EMPTY` for an unused slot,
    :data:`SIGNATURE` for macOS's header record."""
    typ, pid, sec, usec = rec[0], rec[1], rec[9], rec[10]
    if typ not in lay.types:
        return f"unknown record type {typ}"
    if lay.types[typ] == "SIGNATURE":
        return SIGNATURE
    if not 0 <= usec < 1_000_000:
        return f"microseconds {usec} out of range 0..999999"
    if sec < 0 or sec > MAX_SEC:
        return f"time {sec} s out of range (1970..2100)"
    if pid < 0:
        return f"negative pid {pid}"
    if sec == 0:
        return EMPTY if typ == 0 else "record has no time (0)"
    return None


def detect(head: bytes, size: int | None = None) -> Layout | None:
    """The layout that reads the first records of ``head`` as sane ones (None when none does)."""
    best, best_key = None, None
    for i, lay in enumerate(LAYOUTS):
        n = min(len(head) // lay.size, 32)
        if n == 0:
            continue
        ok = empty = bad = 0
        for k in range(n):
            rec = lay.unpack(head, k * lay.size)
            why = _check(rec, lay)
            if why == EMPTY:
                continue
            if why in (None, SIGNATURE) and _clean(rec[2]) and _clean(rec[4]) and _clean(rec[5]):
                ok += 1
            else:
                bad += 1
        if ok == 0 or ok < bad:  # strict: at least as many sane records as garbage ones
            continue
        key = (ok, -bad, size is not None and size % lay.size == 0, -i)
        if best_key is None or key > best_key:
            best, best_key = lay, key
    return best


def _lastlog_check(t: int) -> str | None:
    if t < 0 or t > MAX_SEC:
        return f"time {t} s out of range (1970..2100)"
    if t == 0:
        return "record has no time (0)"
    return None


def detect_lastlog(data: bytes, size: int | None = None) -> tuple[str, struct.Struct] | None:
    """The lastlog layout under which the non-empty records of ``data`` (from the file's start) are sane."""
    best, best_key = None, None
    for i, (name, s) in enumerate(LASTLOG_LAYOUTS):
        ok = bad = 0
        for off in range(0, len(data) - s.size + 1, s.size):
            chunk = data[off:off + s.size]
            if chunk.count(0) == s.size:  # a uid that never logged in
                continue
            t, line, host = s.unpack(chunk)
            if _lastlog_check(t) is None and _clean(line) and _clean(host):
                ok += 1
            else:
                bad += 1
            if ok + bad >= 32:
                break
        if ok == 0 or ok < bad:
            continue
        key = (ok, -bad, size is not None and size % s.size == 0, -i)
        if best_key is None or key > best_key:
            best, best_key = (name, s), key
    return best


def _ip(addr: bytes, host: str) -> str | None:
    """``ut_addr_v6`` (network byte order: IPv4 in the first word, IPv6 in all four), else ``ut_host``
    when it is an address literal."""
    if addr and any(addr):
        if not any(addr[4:16]):
            return socket.inet_ntop(socket.AF_INET, addr[:4])
        return socket.inet_ntop(socket.AF_INET6, addr[:16])
    return _ip_literal(host)


def _ip_literal(host: str) -> str | None:
    """``host`` written the canonical way when it is an IPv4 or IPv6 address, else None."""
    if not host:
        return None
    h = host.strip("[]")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, h))
        except (OSError, ValueError):
            pass
    return None


def _runlevel(pid: int) -> tuple[str | None, str | None]:
    """RUN_LVL records keep the new run level in the pid's low byte and the previous one in the next."""
    new, old = chr(pid & 0xFF), chr((pid >> 8) & 0xFF)
    ok = "0123456789SsQqN"
    return (new if new in ok else None), (old if old in ok else None)


class UtmpCollector(Collector):
    name = "utmp"
    source = "LOGIN"
    engines = ("utmp",)
    parser = ("forensics-utmp", "forensics")
    live_paths = ("/run/utmp", "/var/run/utmp")

    @classmethod
    def wants(cls, name: str) -> bool:
        return login_file_kind(name) is not None  # wherever they lie: /run/utmp, /var/run/utmpx, /usr/bin/lastlog


    # --- recognition ---------------------------------------------------------------------------

    @classmethod
    def _why_not(cls, path: str) -> str | None:
        kind = login_file_kind(path)
        if kind is None:
            return "name is not utmp, wtmp, btmp, utmpx or lastlog (or a rotation of one)"
        head = _head(path, 32 * 628)
        if not head:
            try:
                empty = os.path.getsize(path) == 0
            except OSError:
                empty = False
            return None if empty else "unreadable"  # an empty (just rotated) file holds no records, and no damage
        if kind == "lastlog":
            if head.count(0) == len(head) or detect_lastlog(head, None) is not None:
                return None
            return "its records are not lastlog records (292/296 bytes: time, line, host)"
        if head.count(0) == len(head):
            return None  # only unused slots
        if detect(head) is None:
            return "its first records are not utmp records of any known layout (" + ", ".join(
                lay.name for lay in LAYOUTS) + ")"
        return None

    @classmethod
    def matches(cls, path: str) -> bool:
        return cls._why_not(path) is None

    @classmethod
    def check_compatible(cls, path: str) -> None:
        why = cls._why_not(path)
        if why is not None:
            raise UnknownFormat(f"{path}: not a utmp/wtmp/btmp/lastlog file: {why}")

    # --- reading -------------------------------------------------------------------------------

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        self.check_compatible(artifact.fs_path)
        kind = login_file_kind(artifact.evidence_path) or login_file_kind(artifact.fs_path)
        rep = self.report(artifact)
        rep.stats.update(rows=0, empty=0)
        plain = _plain(artifact.fs_path)
        with open_text(artifact.fs_path) as raw:
            fh = _Stream(raw)
            if kind == "lastlog":
                yield from self._lastlog(artifact, rep, fh, plain, batch_rows)
            else:
                yield from self._utmp(artifact, rep, fh, kind, plain, batch_rows)
        if fh.exc is not None:
            rep.errors.append(RecordError(f"offset=0x{fh.tell:x}", "truncated",
                                          f"compressed stream ended early after {fh.tell} bytes; what followed is lost: "
                                          f"{type(fh.exc).__name__}: {fh.exc}"))

    def _tail(self, rep: ArtifactReport, fh: _Stream, data: bytes, off: int, size: int) -> None:
        ref = f"offset=0x{off:x}"
        if fh.exc is not None:  # the stream broke inside this record: one error for both (see collect)
            return
        if data.count(0) == len(data):
            rep.warn("truncated", f"{len(data)} trailing zero byte(s), less than one {size}-byte record: nothing lost", ref)
        else:
            rep.errors.append(RecordError(ref, "truncated", f"trailing partial record: {len(data)} of {size} bytes"))

    def _utmp(self, art: Artifact, rep: ArtifactReport, fh, kind: str, plain: bool,
              batch_rows: int) -> Iterator[pa.Table]:
        head = fh.read(32 * 628)
        lay = detect(head, art.size if plain else None)
        if lay is None and head.count(0) == len(head):  # only unused slots: any layout reads them as such
            lay = next((x for x in LAYOUTS if art.size % x.size == 0), LAYOUTS[0]) if plain else LAYOUTS[0]
        if lay is None:
            if head:
                rep.errors.append(RecordError(None, "unknown_layout", "no known utmp layout reads this file's records"))
            return
        rep.stats["layout"] = lay.name
        size = lay.size
        rows = self._rows
        n_rows = index = off = 0
        buf = head
        while True:
            whole = len(buf) - len(buf) % size
            for k in range(0, whole, size):
                n_rows += self._record(art, rep, lay, kind, buf, k, off + k, index)
                index += 1
                if len(rows) >= batch_rows:
                    yield rows.to_table()
            off += whole
            buf = buf[whole:]
            more = fh.read(size * 4096)
            if not more:
                break
            buf += more
        if buf:
            self._tail(rep, fh, buf, off, size)
        rep.stats["rows"] = n_rows
        rep.stats["records"] = index

    def _record(self, art: Artifact, rep: ArtifactReport, lay: Layout, kind: str, buf: bytes, k: int, off: int,
                index: int) -> int:
        rec = lay.unpack(buf, k)
        ref = f"record={index} offset=0x{off:x}"
        why = _check(rec, lay)
        if why == EMPTY:
            rep.stats["empty"] += 1
            return 0
        if why == SIGNATURE:  # the macOS file's header record ("utmpx-1.00")
            rep.stats["signature"] = _text(rec[4])
            return 0
        if why is not None:
            rep.errors.append(RecordError(ref, "bad_record", why))
            return 0
        typ, pid, line_b, id_b, user_b, host_b, e_term, e_exit, session, sec, usec, addr = rec
        tname = lay.types[typ]
        line, ut_id, user, host = _text(line_b), _text(id_b), _text(user_b), _text(host_b)
        ip = _ip(addr, host)
        attrs: dict[str, Any] = {
            "type": typ, "type_name": tname, "pid": pid, "line": line, "id": ut_id, "user": user, "host": host,
            "addr": ip if addr and any(addr) else None, "sec": sec, "usec": usec, "offset": off, "layout": lay.name,
        }
        if e_term is not None:
            attrs["exit"] = {"termination": e_term, "exit": e_exit}
            attrs["session"] = session
        who = user or None
        if kind == "btmp":
            desc = FAILED_LOGIN
            msg = f"failed login: {user or '?'} on {line or '?'}"
        else:
            desc = _DESC[tname]
            if tname == "RUN_LVL" and user == "shutdown":
                desc = _DESC["SHUTDOWN_TIME"]
            msg = _message(tname, user, line, ut_id, host, pid, e_term, e_exit, attrs)
            if tname not in ("USER_PROCESS", "DEAD_PROCESS"):
                who = None  # "reboot", "runlevel", "shutdown", "LOGIN", "date": pseudo-users
        remote = kind == "btmp" or tname in ("USER_PROCESS", "DEAD_PROCESS", "LOGIN_PROCESS")
        src_ip = ip if remote else None
        src_host = host if remote and host and not _ip_literal(host) and not host.startswith(":") else None
        if kind == "btmp" or tname in ("USER_PROCESS", "LOGIN_PROCESS"):
            if host:
                msg += f" from {host}" + (f" ({ip})" if ip and ip != host else "")
            elif ip:
                msg += f" from {ip}"
            msg += f" (pid {pid})"
        ns = sec * 1_000_000_000 + usec * 1000
        # btmp apart (a failure is not a session); utmp and wtmp alike, so the same record in both is one row
        key = event_hash("LOGIN", "btmp" if kind == "btmp" else "session", art.host, ns, typ, pid, line, ut_id, user,
                         host, ip, e_term, e_exit, session)
        self._rows.append((  # in timeline.schema.COLUMNS order (hot path)
            ns, desc, art.host, "LOGIN", kind, None, None, None, who, None, None, src_ip, src_host, None, None,
            None, None, None, None, None, f"{kind}: {msg}"[:400], orjson.dumps(attrs).decode(), [], TZ_SOURCE_UTC,
            art.evidence_id, art.evidence_path, ref, self._parser, key,
        ))
        return 1

    def _lastlog(self, art: Artifact, rep: ArtifactReport, fh, plain: bool, batch_rows: int) -> Iterator[pa.Table]:
        rows = self._rows
        layout = None
        off = n_rows = 0
        # Blocks of a multiple of both record sizes, so that either layout's records never straddle two.
        while block := fh.read(_LASTLOG_BLOCK):
            if block.count(0) != len(block):  # a lastlog file is mostly zeros (uids that never logged in)
                if layout is None:
                    layout = detect_lastlog(block, art.size if plain else None)
                    if layout is None:
                        rep.errors.append(RecordError(f"offset=0x{off:x}", "unknown_layout",
                                                      "no known lastlog layout (292 or 296 bytes) reads these records"))
                        return
                    rep.stats["layout"] = layout[0]
                name, s = layout
                size = s.size
                whole = len(block) - len(block) % size
                for k in range(0, whole, size):
                    rec = block[k:k + size]
                    if rec.count(0) == size:
                        continue
                    n_rows += self._lastlog_record(art, rep, name, s, rec, off + k, (off + k) // size)
                    if len(rows) >= batch_rows:
                        yield rows.to_table()
                if whole < len(block):
                    self._tail(rep, fh, block[whole:], off + whole, size)
            off += len(block)
        rep.stats["rows"] = n_rows

    def _lastlog_record(self, art: Artifact, rep: ArtifactReport, name: str, s: struct.Struct, rec: bytes,
                        off: int, uid: int) -> int:
        t, line_b, host_b = s.unpack(rec)
        ref = f"uid={uid} offset=0x{off:x}"
        why = _lastlog_check(t)
        if why is not None:
            rep.errors.append(RecordError(ref, "bad_record", why))
            return 0
        line, host = _text(line_b), _text(host_b)
        ip = _ip_literal(host)
        attrs = {"uid": uid, "line": line, "host": host, "sec": t, "offset": off, "layout": name}
        msg = f"lastlog: last login of uid {uid} on {line or '?'}" + (f" from {host}" if host else "")
        ns = t * 1_000_000_000
        self._rows.append((  # in timeline.schema.COLUMNS order
            ns, LAST_LOGIN, art.host, "LOGIN", "lastlog", None, None, None, None, None, None, ip,
            host if host and not ip and not host.startswith(":") else None, None, None, None, None, None, None, None,
            msg, orjson.dumps(attrs).decode(), [], TZ_SOURCE_UTC, art.evidence_id, art.evidence_path, ref,
            self._parser, event_hash("LOGIN", "lastlog", art.host, uid, ns, line, host),
        ))
        return 1


class _Stream:
    """Reads of exactly ``n`` bytes (fewer only at the end); a compressed stream that ends early gives
    every byte decompressed before the damage, then stops and keeps the exception in :attr:`exc`."""

    def __init__(self, fh):
        self.fh = fh
        self.exc: BaseException | None = None
        self.tell = 0  # decompressed bytes read so far
        self._read = fh.read1 if hasattr(fh, "read1") else fh.read

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n and self.exc is None:
            try:
                chunk = self._read(n - len(out))
            except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
                self.exc = exc
                break
            if not chunk:
                break
            out += chunk
        self.tell += len(out)
        return bytes(out)


def _head(path: str, n: int) -> bytes:
    """The first ``n`` decompressed bytes, as many as a damaged compressed stream gives; b"" when unreadable."""
    try:
        with open_text(path) as fh:
            return _Stream(fh).read(n)
    except (OSError, UnknownFormat):
        return b""


def _plain(path: str) -> bool:
    """Not gzip/bzip2/xz: the file's size is the size of its records (for telling layouts apart)."""
    fd = open_evidence(path)
    try:
        return compression(os.pread(fd, 6, 0)) is None
    finally:
        os.close(fd)


def _message(tname: str, user: str, line: str, ut_id: str, host: str, pid: int, e_term, e_exit,
             attrs: dict[str, Any]) -> str:
    if tname == "USER_PROCESS":
        return f"login: {user or '?'} on {line or '?'}"
    if tname == "DEAD_PROCESS":
        out = f"session end on {line or '?'}" + (f" ({user})" if user else "") + f" (pid {pid}"
        if e_term or e_exit:
            out += f", exit {e_exit} termination {e_term}"
        return out + ")"
    if tname == "BOOT_TIME":
        return "system boot" + (f" (kernel {host})" if host and not _ip_literal(host) else "")
    if tname == "RUN_LVL":
        new, old = _runlevel(pid)
        attrs["runlevel"], attrs["previous_runlevel"] = new, old
        if user == "shutdown":
            return "system shutdown" + (f" (kernel {host})" if host and not _ip_literal(host) else "")
        return "run level change" + (f" to {new}" if new else "") + (f" from {old}" if old else "")
    if tname in ("OLD_TIME", "NEW_TIME"):
        return "clock change: " + ("time before the change" if tname == "OLD_TIME" else "time after the change")
    if tname == "LOGIN_PROCESS":
        return f"login prompt on {line or '?'}"
    if tname == "INIT_PROCESS":
        return f"process started by init: id {ut_id or '?'} (pid {pid})"
    if tname == "SHUTDOWN_TIME":
        return "system shutdown"
    return f"{tname} record" + (f" on {line}" if line else "") + (f" (pid {pid})" if pid else "")
