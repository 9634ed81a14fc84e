"""Windows XML event logs (.evtx) → timeline rows.

Engines:

``evtx`` (default)
    The Rust ``evtx`` parser decodes every record it can.  Records it stops short
    of (older records in a chunk's slack beyond the free-space offset, records in a
    truncated last chunk or behind a damaged chunk magic) are decoded by the same
    parser from a one-chunk copy whose header does not stop it
    (:func:`collectors.evtx_format.recovery_chunk`); whatever is still missing is
    decoded by ``dissect.eventlog`` from the same chunks.  Each record appears once.
``python-evtx``
    python-evtx alone, for comparison.  It trusts the header's chunk count and so
    loses records on dirty files: those losses are counted as errors.

Whatever the engine, :func:`collectors.evtx_format.scan` first finds every record
frame in the file, and the damaged stretches between them (:class:`collectors.evtx_format.Gap`);
a frame no engine decodes is reported as an error with its record number, offset and the
parsers' reason, a stretch as an error counting the records it must have held.  Frames that
carry one number with different bytes are each read and counted on their own (a damaged
number never hides an intact record).  Nothing is lost silently.

Rows are accumulated across artifacts and turned into Arrow a batch at a time; the
fields investigators need come from :mod:`collectors.evtx_events`.  For the Rust engine, the
per-record work is only the JSON parse, the System fields and the extraction; times,
record_ref, event_hash and the columns are built per batch with numpy/Arrow
(:meth:`EvtxCollector._hot_table`); records whose time needs the binary XML get it from the
same per-row logic as the other engines (:meth:`EvtxCollector._row_time`), and a batch the
column-wise step does not take (odd value types, a record with no time at all) goes row by row
through :meth:`EvtxCollector._record` — the same rows either way (tested).

``timestamp`` is the record's TimeCreated at the full 100 ns precision of a FILETIME:
the record header's written time when it is the same instant, otherwise TimeCreated
itself, the written time then kept in ``attrs.Record.written_time``.  evtx renders
TimeCreated with nine fraction digits, every one of them parsed (:func:`_created_ns`);
python-evtx and dissect.eventlog stop at microseconds, so for them TimeCreated's own
FILETIME is read from the record's binary XML
(:func:`collectors.evtx_format.created_filetime`).  A record whose TimeCreated cannot be
read to 100 ns says so in ``attrs.Record.time_precision``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import io
import mmap
from hashlib import sha256
import logging
import os
import re
import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from collectors.base import Artifact, Collector, RecordError, read_magic
from collectors.evtx_events import extract
from collectors.evtx_format import (
    CHUNK_MAGIC,
    CHUNK_SIZE,
    FILE_MAGIC,
    FILETIME_EPOCH,
    HEADER_BLOCK,
    Frame,
    created_filetime,
    SYNTHETIC,
    recovery_chunk,
    scan,
)
from timeline.custody import open_evidence
from timeline.errors import ParserUnavailable, UnknownFormat
from timeline.schema import NS_MAX as _NS_MAX, NS_MIN as _NS_MIN, SCHEMA, TZ_SOURCE_UTC, RowBuilder, _array, cap_messages, iso_ns

__all__ = ["EvtxCollector"]

log = logging.getLogger(__name__)

_EPOCH = _dt.datetime(1970, 1, 1)
_NUM_ERR = re.compile(r"record number (\d+)")
@functools.lru_cache(maxsize=None)
def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Canonical form: every engine's record becomes (s, d, body) where s is the flat System dict,
# d the event's data fields and body the original EventData/UserData structure for attrs.
# ---------------------------------------------------------------------------------------------


def _canon_rs(ev: dict) -> tuple[dict, dict]:
    """The fields a row needs from one record of the Rust parser's JSON rendering.

    Only what the columns and extractors read; the record itself goes to ``attrs`` verbatim.
    """
    sysn = ev.get("System") or {}
    eid = sysn.get("EventID")
    if eid.__class__ is dict:
        eid = eid.get("#text")
    if eid.__class__ is not int:
        eid = _as_int(eid)
    prov = sysn.get("Provider")
    tc = sysn.get("TimeCreated")
    sec = sysn.get("Security")
    s = {
        "Provider": prov["#attributes"].get("Name") if prov.__class__ is dict and "#attributes" in prov else None,
        "EventID": eid,
        "TimeCreated": tc["#attributes"].get("SystemTime") if tc.__class__ is dict and "#attributes" in tc else None,
        "EventRecordID": sysn.get("EventRecordID"),
        "Channel": sysn.get("Channel"),
        "Computer": sysn.get("Computer"),
        "UserID": sec["#attributes"].get("UserID") if sec.__class__ is dict and "#attributes" in sec else None,
    }
    d = ev.get("EventData")
    if d.__class__ is not dict:
        d = ev.get("UserData")
        if d.__class__ is dict:
            d = next(iter(d.values()), None)
        if d.__class__ is not dict:
            d = {}
    return s, d


def _event_json(s: dict, body: dict) -> str:
    """Render another engine's record in the Rust parser's JSON shape, so ``attrs`` has one shape."""

    def attrs(**kw: Any) -> dict | None:
        kw = {k: v for k, v in kw.items() if v is not None}
        return {"#attributes": kw} if kw else None

    eid = s["EventID"] if s["Qualifiers"] is None else {"#attributes": {"Qualifiers": s["Qualifiers"]}, "#text": s["EventID"]}
    system = {
        "Provider": attrs(Name=s["Provider"], Guid=s["ProviderGuid"], EventSourceName=s["EventSourceName"]),
        "EventID": eid,
        "Version": s["Version"], "Level": s["Level"], "Task": s["Task"], "Opcode": s["Opcode"], "Keywords": s["Keywords"],
        "TimeCreated": attrs(SystemTime=s["TimeCreated"]),
        "EventRecordID": s["EventRecordID"],
        "Correlation": attrs(ActivityID=s["ActivityID"], RelatedActivityID=s["RelatedActivityID"]),
        "Execution": attrs(ProcessID=s["ProcessID"], ThreadID=s["ThreadID"]),
        "Channel": s["Channel"], "Computer": s["Computer"],
        "Security": attrs(UserID=s["UserID"]),
    }
    return orjson.dumps({"Event": {"System": system, **body}}, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


_DISSECT_SYSTEM = {
    "Provider_Name": "Provider", "Provider_Guid": "ProviderGuid", "Provider_EventSourceName": "EventSourceName",
    "EventID": "EventID", "EventID_Qualifiers": "Qualifiers", "Version": "Version", "Level": "Level",
    "Task": "Task", "Opcode": "Opcode", "Keywords": "Keywords", "TimeCreated_SystemTime": "TimeCreated",
    "EventRecordID": "EventRecordID", "Correlation_ActivityID": "ActivityID",
    "Correlation_RelatedActivityID": "RelatedActivityID", "Execution_ProcessID": "ProcessID",
    "Execution_ThreadID": "ThreadID", "Channel": "Channel", "Computer": "Computer", "Security_UserID": "UserID",
}


def _plain(v: Any) -> Any:
    if hasattr(v, "get") and not isinstance(v, dict):  # dissect's BxmlSub
        v = v.get()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(timespec="microseconds") + "Z"
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)


def _canon_dissect(rec: Any) -> tuple[dict, dict, dict]:
    s = {v: None for v in _DISSECT_SYSTEM.values()}
    d: dict = {}
    for k, v in rec.items():
        v = _plain(v)
        if k in _DISSECT_SYSTEM:
            s[_DISSECT_SYSTEM[k]] = v
        else:
            d[k] = v
    s["EventID"] = _as_int(s["EventID"])
    return s, d, {"EventData": d}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _canon_xml(xml: str) -> tuple[dict, dict, dict]:
    """Canonical form of one record rendered as XML (python-evtx)."""
    root = ET.fromstring(xml)
    s = {v: None for v in _DISSECT_SYSTEM.values()}
    body: dict = {}
    d: dict = {}
    for part in root:
        tag = _local(part.tag)
        if tag == "System":
            for el in part:
                t, a = _local(el.tag), el.attrib
                if t == "Provider":
                    s["Provider"], s["ProviderGuid"] = a.get("Name"), a.get("Guid")
                    s["EventSourceName"] = a.get("EventSourceName")
                elif t == "EventID":
                    s["EventID"], s["Qualifiers"] = _as_int(el.text), _as_int(a.get("Qualifiers"))
                elif t == "TimeCreated":
                    s["TimeCreated"] = a.get("SystemTime")
                elif t == "Correlation":
                    s["ActivityID"], s["RelatedActivityID"] = a.get("ActivityID"), a.get("RelatedActivityID")
                elif t == "Execution":
                    s["ProcessID"], s["ThreadID"] = _as_int(a.get("ProcessID")), _as_int(a.get("ThreadID"))
                elif t == "Security":
                    s["UserID"] = a.get("UserID")
                elif t in ("EventRecordID", "Version", "Level", "Task", "Opcode"):
                    s[t] = _as_int(el.text)
                elif t in s:
                    s[t] = el.text
        elif tag == "EventData":
            unnamed = []
            for el in part:
                name = el.attrib.get("Name")
                if name:
                    d[name] = el.text
                else:
                    unnamed.append(el.text)
            if unnamed:
                d["Data"] = unnamed
            body["EventData"] = d
        elif tag == "UserData":
            for el in part:
                d = {_local(c.tag): c.text for c in el}
                body["UserData"] = {_local(el.tag): d}
                break
        else:
            body[tag] = ET.tostring(part, encoding="unicode")
    return s, d, body


def _as_int(v: Any) -> int | None:
    if v is None or isinstance(v, int):
        return v
    try:
        return int(str(v), 0)
    except ValueError:
        return None





# ---------------------------------------------------------------------------------------------


_FRACTION = re.compile(r"\.(\d+)")
_ZONE = re.compile(r"[+-]\d\d:?\d\d")


def _created_ns(tc: Any) -> tuple[int | None, bool]:
    """TimeCreated as nanoseconds since the epoch, and whether the rendering carries the 100 ns digit.

    evtx renders SystemTime with nine fraction digits ('2021-12-16T10:25:32.351835800Z'), python-evtx and
    dissect.eventlog stop at six: every digit given is kept (a FILETIME has seven; more are cut at nine).
    """
    if not isinstance(tc, str) or len(tc) < 19:
        return None, False
    m = _FRACTION.match(tc, 19)
    digits = m.group(1) if m else ""
    rest = tc[m.end() if m else 19:]
    if rest == "Z":
        rest = ""
    elif rest and not _ZONE.fullmatch(rest):  # anything else after the time: not a time
        return None, False
    try:
        t = _dt.datetime.fromisoformat(tc[:19] + rest)
    except ValueError:
        return None, False
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    if t.year < 1678 or t.year > 2261:  # FILETIME 0 (1601) or garbage: not representable, not a real time
        return None, False
    delta = t - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + int((digits + "000000000")[:9]), len(digits) >= 7


# ---------------------------------------------------------------------------------------------
# The Rust engine's hot path: per record only the parse, the System fields and the extraction
# (Python); everything else per batch of records, column by column (numpy / Arrow kernels).
# ---------------------------------------------------------------------------------------------

_EXTRACTED = ("user", "target_user", "logon_type", "src_ip", "src_host", "dst_ip", "dst_port", "process",
              "parent_process", "command_line", "path", "service_name", "message")
_F_TYPE = pa.struct([SCHEMA.field(n) for n in _EXTRACTED])
_S_FIELDS = [("Provider", pa.string()), ("EventID", pa.int64()), ("TimeCreated", pa.string()),
             ("Channel", pa.string()), ("Computer", pa.string())]
_S_TYPES = {int: pa.struct(_S_FIELDS + [("EventRecordID", pa.uint64())]),
            str: pa.struct(_S_FIELDS + [("EventRecordID", pa.string())])}
# FILETIMEs whose nanoseconds a timestamp[ns] holds (the bounds _record applies: _NS_MIN < ns < _NS_MAX)
_FT_LO = FILETIME_EPOCH - ((-(_NS_MIN + 1)) // 100)
_FT_HI = FILETIME_EPOCH + (_NS_MAX - 1) // 100
_ISO_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25])
_ISO_SEP_AT = np.array([4, 7, 10, 13, 16, 19])
_ISO_SEP = np.frombuffer(b"--T::.", dtype=np.uint8)
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_SHA = sha256()


def _iso_ns(tc: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TimeCreated strings as nanoseconds since the epoch, column-wise: (valid, ns, precise).

    Valid only where the string is exactly 'YYYY-MM-DDTHH:MM:SS.ffffff', up to three more digits and an
    optional 'Z', naming a real instant in 1678..2261, which is when :func:`_created_ns` gives the same
    value; ``precise`` where it carries the 100 ns digit.  The rest is left to :func:`_created_ns`.
    """
    n = len(tc)
    valid = np.zeros(n, dtype=bool)
    ns = np.zeros(n, dtype=np.int64)
    precise = np.zeros(n, dtype=bool)
    head = pc.utf8_slice_codeunits(tc, 0, 26)
    lens = pc.fill_null(pc.binary_length(head), 0).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(lens == 26)
    if not len(rows):
        return valid, ns, precise
    if len(rows) < n:
        head = head.take(pa.array(rows))
    offsets = np.frombuffer(head.buffers()[1], dtype=np.int32, count=len(head) + 1, offset=head.offset * 4)
    m = np.frombuffer(head.buffers()[2], dtype=np.uint8, count=26 * len(rows), offset=int(offsets[0])).reshape(-1, 26)
    ok = (m[:, _ISO_SEP_AT] == _ISO_SEP).all(axis=1) & ((m[:, _ISO_DIGITS] - 48) <= 9).all(axis=1)

    def num(*cols: int) -> np.ndarray:
        v = m[:, cols[0]].astype(np.int64) - 48
        for c in cols[1:]:
            v = v * 10 + m[:, c] - 48
        return v

    y, mo, day, hh, mi, ss = num(0, 1, 2, 3), num(5, 6), num(8, 9), num(11, 12), num(14, 15), num(17, 18)
    frac = num(20, 21, 22, 23, 24, 25)
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(mo, 0, 12)] + (leap & (mo == 2))
    ok &= ((y >= 1678) & (y <= 2261) & (mo >= 1) & (mo <= 12) & (day >= 1) & (day <= month_days)
           & (hh < 24) & (mi < 60) & (ss < 60))
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    y2 = y - (mo <= 2)
    era = y2 // 400
    yoe = y2 - era * 400
    doy = (153 * ((mo + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    # what follows the microseconds: up to three more digits (evtx renders nine) and an optional 'Z'
    tail = pc.utf8_slice_codeunits(tc.take(pa.array(rows)) if len(rows) < n else tc, 26)
    ok &= pc.match_substring_regex(tail, r"^[0-9]{0,3}Z?$").to_numpy(zero_copy_only=False)
    sub = pc.utf8_rpad(pc.utf8_slice_codeunits(pc.utf8_rtrim(tail, characters="Z"), 0, 3), 3, "0")
    sub_ns = np.where(ok, pc.cast(pc.if_else(pa.array(ok), sub, "000"), pa.int64()).to_numpy(zero_copy_only=False), 0)
    has_digit = pc.fill_null(pc.greater_equal(pc.utf8_length(pc.utf8_rtrim(tail, characters="Z")), 1), False)
    valid[rows] = ok
    ns[rows] = np.where(ok, ((((days * 24 + hh) * 60 + mi) * 60 + ss) * 1_000_000 + frac) * 1000 + sub_ns, 0)
    precise[rows] = ok & has_digit.to_numpy(zero_copy_only=False)
    return valid, ns, precise


def _fixed_strings(data: bytes, width: int, n: int) -> pa.Array:
    """``n`` strings of ``width`` ASCII characters each, laid end to end in ``data``."""
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _hash_column(keys: pa.Array) -> pa.Array:
    """event_hash of each key: SHA-256 of its UTF-8 bytes, first 128 bits as hex (timeline.schema.event_hash)."""
    n = len(keys)
    copy = _SHA.copy
    out = []
    append = out.append
    for k in keys.cast(pa.binary()).to_numpy(zero_copy_only=False):
        h = copy()
        h.update(k)
        append(h.digest())
    first = np.frombuffer(b"".join(out), dtype=np.uint8).reshape(n, 32)[:, :16]
    return _fixed_strings(first.tobytes().hex().encode(), 32, n)


class _Frames:
    """The file's record frames (:func:`collectors.evtx_format.scan`), the first frame of each record
    number: as arrays sorted by number for the batch step, as :class:`Frame` objects on demand."""

    def __init__(self, records: list[tuple[int, int, int, int, int]]):
        self.records = records
        a = np.array(records, dtype=np.uint64).reshape(-1, 5)
        self.numbers, first = np.unique(a[:, 1], return_index=True)  # sorted; first frame of each number
        self.first = first
        self.written = a[first, 2]
        self.offset = a[first, 0].astype(np.int64)
        self.stale = len(records) - len(first)
        self._dict: dict[int, Frame] | None = None

    def __len__(self) -> int:
        return len(self.numbers)

    def by_number(self) -> dict[int, Frame]:
        """Record number -> first frame, in file order."""
        if self._dict is None:
            recs = self.records
            self._dict = {recs[i][1]: Frame(*recs[i]) for i in np.sort(self.first).tolist()}
        return self._dict

    def get(self, number: int) -> Frame | None:
        if self._dict is not None:
            return self._dict.get(number)
        i = int(np.searchsorted(self.numbers, number)) if 0 <= number < 2**64 else len(self.numbers)
        if i < len(self.numbers) and int(self.numbers[i]) == number:
            return Frame(*self.records[self.first[i]])
        return None

    def missing(self, done: set[int]) -> list[int]:
        """Numbers of the records not in ``done``, in file order."""
        if not len(self.numbers):
            return []
        got = np.isin(self.numbers, np.fromiter(done, dtype=np.uint64, count=len(done)))
        left = np.flatnonzero(~got)
        return self.numbers[left[np.argsort(self.first[left], kind="stable")]].tolist()


class EvtxCollector(Collector):
    name = "evtx"
    source = "EVTX"
    engines = ("evtx", "python-evtx")

    @classmethod
    def wants(cls, name: str) -> bool:
        return name.endswith(".evtx")

    def __init__(self, engine: str | None = None, threads: int = 1):
        super().__init__(engine, threads)
        self._rows = RowBuilder()  # rows built one by one (_record)
        self._hot: list[tuple] = []  # the Rust engine's records awaiting the column-wise step (_seal)
        self._hot_parser = ""
        self._pending: list[pa.Table] = []  # finished pieces of the batch, in reading order
        self._pending_rows = 0
        self._batch_rows = 100_000

    @classmethod
    def matches(cls, path: str) -> bool:
        return path.lower().endswith(".evtx") or read_magic(path, 8) == FILE_MAGIC

    @classmethod
    def check_compatible(cls, path: str) -> None:
        fd = open_evidence(path)
        try:
            head = os.read(fd, 8)
        finally:
            os.close(fd)
        if head != FILE_MAGIC and not path.lower().endswith(".evtx"):
            raise UnknownFormat(f"{path}: not an EVTX file (expected magic {FILE_MAGIC!r}, found {head!r})")

    # -----------------------------------------------------------------------------------------

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        engine = self.engine or "evtx"
        if engine not in self.engines:
            raise ParserUnavailable(f"unknown EVTX engine {engine!r}; choose one of {', '.join(self.engines)}")
        self.check_compatible(artifact.fs_path)
        rep = self.report(artifact)
        fd = open_evidence(artifact.fs_path)
        with os.fdopen(fd, "rb") as fh:
            sc = scan(fh)
            # read-only map of the file, for the few values the renderings truncate (see _record)
            self._buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if sc.size else b""
        rep.stats.update(chunks=sc.chunks_in_file, file_bytes=sc.size)
        for dmg in sc.damage():
            rep.warn("damage", dmg)
        frames = _Frames(sc.records)
        # Frames that carry one number: the same bytes (a stale copy) are one record; different bytes (a damaged
        # number, a reused one) are different records, each read and counted on its own, never hiding another.
        conflicts = _conflicts(sc.records, self._buf) if frames.stale else {}
        copies = frames.stale - sum(len(v) - 1 for v in conflicts.values())
        if copies:
            rep.warn("damage", f"{copies} stale record frame(s) repeat records already read byte for byte; not decoded twice")
        if conflicts:
            rep.warn("damage", f"{len(conflicts)} record number(s) carried by frames of different content "
                               f"({sum(map(len, conflicts.values()))} frames): each frame read on its own")
        rep.stats["frames"] = len(frames) + sum(len(v) - 1 for v in conflicts.values())
        self._artifact = artifact
        self._rep = rep
        self._frames = frames
        self._conflicts = conflicts
        self._done: set[int] = set()
        self._done_frames: set[int] = set()  # offsets of the conflicting frames turned into rows
        self._covered = 0  # frames turned into rows (each record number once): all of them, nothing is missing
        self._engine_errors: dict[int, str] = {}
        self._batch_rows = batch_rows
        # records that damaged stretches must have held (numbers no frame carries): decoded if a parser can
        gap_numbers = {n for g in sc.gaps if g.numbers is not None for n in g.numbers if frames.get(n) is None}

        try:
            if engine == "evtx":
                import evtx as _rs

                ver = _pkg_version("evtx")
                with os.fdopen(open_evidence(artifact.fs_path), "rb") as src:  # O_NOATIME: not by path
                    yield from self._run_rs(_rs, src, f"evtx-rs/{ver}", skip=conflicts)
                # What the first pass left: each chunk again, from a copy in which every frame has a number of
                # its own and damaged stretches are stepped over (recovery_chunk); evtx, then dissect.eventlog.
                missing = self._missing()
                chunks = {frames.get(n).chunk for n in missing}
                chunks |= {f.chunk for fl in conflicts.values() for f in fl}
                chunks |= {g.chunk for g in sc.gaps if g.numbers is not None and g.end - g.start < CHUNK_SIZE
                           and any(n in gap_numbers and n not in self._done for n in g.numbers)}
                buf = self._buf
                all_frames = sc.frames
                for ci in sorted(chunks):
                    image, ids = recovery_chunk(lambda off, size: bytes(buf[off:off + size]), ci, all_frames, sc.gaps)
                    yield from self._run_recovered(_rs, image, ids, gap_numbers, f"evtx-rs/{ver}+chunk-recovery",
                                                   f"dissect.eventlog/{_pkg_version('dissect.eventlog')}")
            else:
                yield from self._run_python_evtx(f"python-evtx/{_pkg_version('python-evtx')}")

            lost = [frames.get(n) for n in self._missing()]
            lost += [fr for fl in conflicts.values() for fr in fl if fr.offset not in self._done_frames]
            for fr in lost:
                why = self._engine_errors.get(fr.number, "no parser could decode this record frame")
                rep.errors.append(RecordError(f"record={fr.number} offset=0x{fr.offset:x}", "undecodable_record", why))
            gap_lost = 0
            for g in sc.gaps:  # records in damaged stretches that no parser could read
                gone = [n for n in g.numbers if n not in self._done and frames.get(n) is None] if g.numbers else None
                if gone == []:
                    continue
                k = 1 if gone is None else len(gone)
                which = ("record number unknown" if gone is None else f"record {gone[0]}" if k == 1
                         else f"records {gone[0]}..{gone[-1]}" if gone[-1] - gone[0] == k - 1 else f"records {gone}")
                rep.errors.append(RecordError(
                    f"offset=0x{g.start:x}", "damaged_frames",
                    f"bytes 0x{g.start:x}-0x{g.end:x} of chunk {g.chunk} hold no readable record frame: {k} record(s) "
                    f"lost ({which})", count=k))
                gap_lost += k
            for n, m in self._engine_errors.items():
                if frames.get(n) is None or n in self._done:  # reported by a parser, but nothing was lost
                    rep.warn("parser_error", m, f"record={n}" if n >= 0 else None)
            rep.stats.update(lost_frames=len(lost), lost_in_damage=gap_lost, engine_errors=len(self._engine_errors))
        finally:
            try:
                self._seal()  # rows read before a failure are kept, as the records they are
            finally:
                if isinstance(self._buf, mmap.mmap):
                    self._buf.close()

    def finish(self) -> Iterator[pa.Table]:
        self._seal()
        if self._pending_rows:
            yield from self._flush()

    def _missing(self) -> list[int]:
        """Numbers of the records no engine has turned into a row yet, in file order (conflicting numbers aside:
        their frames are counted one by one)."""
        if self._covered == len(self._frames):
            return []
        return [n for n in self._frames.missing(self._done) if n not in self._conflicts]

    # --- batching -------------------------------------------------------------------------------

    def _seal(self) -> None:
        """Turn the rows read so far (hot and row-by-row) into Arrow pieces of the batch, in reading order."""
        if self._hot:
            rows, self._hot = self._hot, []
            try:
                table = self._hot_table(rows)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                table = None
            if table is None:
                # values the column-wise step does not take (mixed types, out-of-range times...): row by row
                done = self._done
                for row in rows:
                    done.discard(row[0])
                for number, data, r, s, f in rows:
                    self._record(number, self._hot_parser, data, r["timestamp"], s, None, f)
            else:
                stats = self._rep.stats
                key = f"rows[{self._hot_parser}]"
                stats[key] = stats.get(key, 0) + table.num_rows
                stats["rows"] = stats.get("rows", 0) + table.num_rows
                self._pending.append(table)
                self._pending_rows += table.num_rows
        if len(self._rows):
            table = self._rows.to_table()
            self._pending.append(table)
            self._pending_rows += table.num_rows

    def _flush(self) -> Iterator[pa.Table]:
        tables, self._pending, self._pending_rows = self._pending, [], 0
        yield tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _push(self, number: int | None, parser: str, event_json: str, ts_fallback: Any,
              s: dict | None = None, d: dict | None = None, frame: Frame | None = None) -> Iterator[pa.Table]:
        """One row (see :meth:`_record`), and the batch when it is full."""
        self._record(number, parser, event_json, ts_fallback, s, d, frame=frame)
        if len(self._rows) + self._pending_rows >= self._batch_rows:
            self._seal()
            yield from self._flush()

    def _hot_table(self, rows: list[tuple]) -> pa.Table | None:
        """The timeline table of the Rust engine's records (number, JSON, record, System fields, extracted
        fields), column by column.

        The same values as :meth:`_record` gives row by row (the tests compare both); rows whose time
        needs a closer look go through the same logic one by one.  Returns None (or raises) for what it
        does not handle; the caller then takes the rows one by one.
        """
        n = len(rows)
        numbers_, datas, rs, ss, fs = zip(*rows)
        rid0 = ss[0].get("EventRecordID")
        s_type = _S_TYPES.get(rid0.__class__)
        if s_type is None:
            return None
        S = pa.array(ss, type=s_type)
        numbers = pa.array(numbers_, type=pa.uint64())
        nums = numbers.to_numpy()
        host, channel, provider = S.field("Computer"), S.field("Channel"), S.field("Provider")
        eid = S.field("EventID")

        # time: the record header's written time where it is TimeCreated's instant (the usual case)
        fm = self._frames
        f_num, f_written, f_offset = fm.numbers, fm.written, fm.offset
        idx = np.searchsorted(f_num, nums)
        idx[idx >= len(f_num)] = 0
        found = (f_num[idx] == nums) if len(f_num) else np.zeros(n, dtype=bool)
        ft = np.where(found, f_written[idx] if len(f_num) else 0, 0)
        written_ok = found & (ft >= _FT_LO) & (ft <= _FT_HI)
        written_ns = np.where(written_ok, (ft.astype(np.int64) - FILETIME_EPOCH) * 100, 0)
        created_valid, created_ns, precise = _iso_ns(S.field("TimeCreated"))
        # the same instant: to the 100 ns where TimeCreated's rendering has that digit, else to the microsecond
        same = written_ok & created_valid & np.where(precise, written_ns == created_ns,
                                                     written_ns // 1000 == created_ns // 1000)
        ts = written_ns
        attrs = pa.array(datas, type=pa.string())
        odd = np.flatnonzero(~same)
        if len(odd):
            ts = ts.copy()
            notes: dict[int, str] = {}
            for i in odd.tolist():
                r, s, data = rs[i], ss[i], datas[i]
                fr = Frame(*fm.records[fm.first[idx[i]]]) if found[i] else None
                t, note = self._row_time(fr, r["timestamp"], s["TimeCreated"])
                if t is None:
                    return None  # a record with no time at all: _record reports it
                ts[i] = t
                if note:
                    notes[i] = note + data[1:]
            if notes:
                mask = np.zeros(n, dtype=bool)
                mask[list(notes)] = True
                attrs = pc.replace_with_mask(attrs, pa.array(mask), pa.array([notes[i] for i in sorted(notes)], pa.string()))

        ts_arr = pa.array(ts, type=pa.int64())
        # record_ref: 'record=N offset=0xO' (offset in lower-case hex without leading zeros)
        num_s = numbers.cast(pa.string())
        offs = np.where(found, f_offset[idx] if len(f_num) else 0, 0).astype(">u8")
        hexes = pc.utf8_ltrim(_fixed_strings(offs.tobytes().hex().encode(), 16, n), characters="0")
        ref = pc.binary_join_element_wise("record=", num_s, " offset=0x", hexes, "")
        if not found.all():
            ref = pc.if_else(pa.array(found), ref, pc.binary_join_element_wise("record=", num_s, ""))
        # event_hash, the key of timeline.schema.event_hash built column-wise
        rid = S.field("EventRecordID").cast(pa.string())
        if rid.null_count:
            rid = pc.coalesce(rid, num_s)
        key = pc.binary_join_element_wise("EVTX", host, channel, provider, eid.cast(pa.string()), rid,
                                          ts_arr.cast(pa.string()), "\x1f", null_handling="replace",
                                          null_replacement="")
        try:
            F = pa.array(fs, type=_F_TYPE)
            extracted = [F.field(i) for i in range(len(_EXTRACTED))]
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # an odd value (an int where text was expected...): column by column, as RowBuilder does
            extracted = [_array([f.get(name) for f in fs], _F_TYPE.field(name).type) for name in _EXTRACTED]
        if extracted[-1].null_count:
            raise ValueError("null values in non-nullable columns ['message']")
        extracted[-1] = cap_messages(extracted[-1])
        in32 = pc.and_(pc.greater_equal(eid, -(2**31)), pc.less_equal(eid, 2**31 - 1))
        empty_channel = pc.fill_null(pc.equal(channel, ""), True)
        a = self._artifact

        def const(v: str) -> pa.Array:
            return pa.repeat(pa.scalar(v, pa.string()), n)

        user, target_user, logon_type, src_ip, src_host, dst_ip, dst_port, process, parent, cmd, path, svc, msg = extracted
        table = pa.Table.from_arrays([
            ts_arr.cast(pa.timestamp("ns", tz="UTC")), const("Event Logged"), host, const("EVTX"),
            pc.binary_join_element_wise("evtx:", pc.if_else(empty_channel, "unknown", channel), ""),
            pc.if_else(in32, eid, pa.scalar(None, pa.int64())).cast(pa.int32()), channel, provider,
            user, target_user, logon_type, src_ip, src_host, dst_ip, dst_port, process, parent, cmd, path, svc, msg,
            attrs, pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string())),
            const(TZ_SOURCE_UTC), const(a.evidence_id), const(a.evidence_path), ref, const(self._hot_parser),
            _hash_column(key),
        ], schema=SCHEMA)
        self._covered += int(found.sum())
        return table

    def _row_time(self, fr: Frame | None, ts_fallback: Any, tc: Any) -> tuple[int | None, str]:
        """(timestamp ns, note) of one record, as :meth:`_record` decides it; note is the attrs prefix
        ('{"Record":{...},' to put before the record's JSON without its first brace) or ''."""
        written_ns = fr.written_ns if fr is not None else _rs_ts_ns(ts_fallback)
        if written_ns is not None and not _NS_MIN < written_ns < _NS_MAX:
            written_ns = None
        created_ns, precise = _created_ns(tc)
        if created_ns is None:
            if written_ns is None:
                return None, ""
            return written_ns, '{"Record":{"time_source":"record header written time (TimeCreated missing or invalid)"},'
        created_us = created_ns // 1000
        if written_ns is not None and (written_ns == created_ns if precise else written_ns // 1000 == created_us):
            return written_ns, ""  # same instant: the header keeps the 100 ns digits
        # Written later than created: TimeCreated's rendering when it has every digit (evtx: nine), else its
        # own FILETIME read from the binary XML.
        ft = None
        if precise:
            ft = created_ns // 100 + FILETIME_EPOCH
        elif fr is not None:
            ft = created_filetime(self._buf, fr.offset, HEADER_BLOCK + fr.chunk * CHUNK_SIZE)
        # (within 1 us: python-evtx's rendering rounds some FILETIMEs down by a microsecond)
        if ft is not None and abs((ft - FILETIME_EPOCH) // 10 - created_us) <= 1:
            ts = (ft - FILETIME_EPOCH) * 100
            note = ""
        else:
            ts = created_us * 1000
            note = ',"time_precision":"microsecond"'
        if written_ns is not None:
            return ts, f'{{"Record":{{"written_time":"{iso_ns(written_ns)}"{note}}},'
        if note:
            return ts, f'{{"Record":{{{note[1:]}}},'
        return ts, ""

    def _record(self, number: int | None, parser: str, event_json: str, ts_fallback: Any,
                s: dict | None = None, d: dict | None = None, f: dict | None = None, frame: Frame | None = None) -> None:
        """One timeline row from a record rendered as the Rust parser's JSON ('{"Event":{...}}').

        ``s``/``d`` (System fields, event data) are parsed from ``event_json`` when not given; ``f``
        (the extracted fields) computed when not given.  ``ts_fallback`` is the parser's rendering of
        the written time, used only for a record that is not among the scanned frames.  ``frame``: the
        frame read (a recovery chunk tells it), else the frame of ``number``.
        """
        if s is None:
            s, d = _canon_rs(orjson.loads(event_json)["Event"])
        conflict = number in self._conflicts
        fr = frame if frame is not None or conflict else self._frames.get(number) if number is not None else None
        ts, note = self._row_time(fr, ts_fallback, s["TimeCreated"])
        if ts is None:
            self._rep.errors.append(RecordError(f"record={number}", "no_valid_time",
                                                "record has neither a valid TimeCreated nor a written time"))
            return
        attrs = note + event_json[1:] if note else event_json
        if f is None:
            f = self._extract(number, s, d)
        g = f.get
        channel = s["Channel"]
        computer = s["Computer"]
        eid = s["EventID"]
        provider = s["Provider"]
        rid = s["EventRecordID"]
        a = self._artifact
        self._rows.append((
            ts, "Event Logged", computer, "EVTX", f"evtx:{channel or 'unknown'}", eid, channel, provider,
            g("user"), g("target_user"), g("logon_type"), g("src_ip"), g("src_host"), g("dst_ip"), g("dst_port"),
            g("process"), g("parent_process"), g("command_line"), g("path"), g("service_name"),
            f["message"], attrs, [], TZ_SOURCE_UTC, a.evidence_id, a.evidence_path,
            f"record={number} offset=0x{fr.offset:x}" if fr is not None else f"record={number}", parser,
            sha256(f"EVTX\x1f{computer or ''}\x1f{channel or ''}\x1f{provider or ''}\x1f{'' if eid is None else eid}"
                   f"\x1f{number if rid is None else rid}\x1f{ts}".encode("utf-8", "surrogatepass")).hexdigest()[:32],
        ))  # the event_hash key, built inline: identical to timeline.schema.event_hash(...) (tested)
        if conflict:
            if fr is not None:
                self._done_frames.add(fr.offset)
        else:
            if number is not None:
                self._done.add(number)
            if fr is not None:
                self._covered += 1
        stats = self._rep.stats
        key = f"rows[{parser}]"
        stats[key] = stats.get(key, 0) + 1
        stats["rows"] = stats.get("rows", 0) + 1

    def _extract(self, number: int | None, s: dict, d: dict) -> dict:
        """The fields of one record (:func:`collectors.evtx_events.extract`); a record whose damaged fields the
        extraction cannot take keeps its row, with a plain message, and the reason as a warning."""
        try:
            return extract(s, d)
        except Exception as exc:
            self._rep.warn("parser_error", f"fields not extracted: {exc!r}", f"record={number}")
            return {"message": f"{s.get('EventID')} {s.get('Provider') or ''}".strip()}

    def _run_rs(self, rs, source: Any, parser_name: str, only: set[int] | None = None,
                skip: dict[int, Any] | None = None) -> Iterator[pa.Table]:
        self._seal()  # rows of other engines first: the batch keeps reading order
        self._hot_parser = parser_name
        it = rs.PyEvtxParser(source, number_of_threads=self.threads).records_json()
        batch_rows = self._batch_rows
        done = self._done
        add = done.add
        hot = self._hot
        append = hot.append
        loads = orjson.loads
        while True:
            try:
                r = next(it)
            except StopIteration:
                break
            except Exception as exc:  # per-record error: note it and go on
                msg = f"evtx-rs: {exc}"
                m = _NUM_ERR.search(str(exc))
                key = int(m.group(1)) if m else -1 - len(self._engine_errors)
                self._engine_errors.setdefault(key, msg)
                continue
            number = r["event_record_id"]
            if number in done or (only is not None and number not in only) or (skip and number in skip):
                continue
            data = r["data"]
            try:
                s, d = _canon_rs(loads(data)["Event"])
            except Exception as exc:
                self._engine_errors[number] = f"evtx-rs record could not be normalised: {exc!r}"
                continue
            add(number)
            append((number, data, r, s, self._extract(number, s, d)))
            if len(hot) + self._pending_rows >= batch_rows:
                self._seal()
                hot = self._hot
                append = hot.append
                yield from self._flush()
        self._seal()

    # --- dissect.eventlog fallback ---------------------------------------------------------------

    def _run_recovered(self, rs, image: bytes, ids: dict[int, tuple[int, Frame | None]], gap_numbers: set[int],
                       parser_name: str, dissect_name: str) -> Iterator[pa.Table]:
        """The records of a recovery chunk (:func:`collectors.evtx_format.recovery_chunk`) still wanted: evtx,
        then dissect.eventlog for what it could not decode.  ``ids``: synthetic number -> (number, frame)."""

        def wanted(num: int, fr: Frame | None) -> bool:
            if num in self._conflicts and fr is not None:
                return fr.offset not in self._done_frames
            if num in self._done:
                return False
            return fr is not None or num in gap_numbers

        want = {sid for sid, (num, fr) in ids.items() if wanted(num, fr)}
        if not want:
            return
        self._seal()  # rows of other engines first: the batch keeps reading order
        it = rs.PyEvtxParser(io.BytesIO(image), number_of_threads=1).records_json()
        while want:
            try:
                r = next(it)
            except StopIteration:
                break
            except Exception as exc:  # per-record error: note it (by the record's own number) and go on
                m = _NUM_ERR.search(str(exc))
                sid = int(m.group(1)) if m else None
                if sid in ids:
                    num = ids[sid][0]
                    msg = re.sub(r"record number \d+", f"record number {num}", str(exc))
                    self._engine_errors.setdefault(num, f"evtx-rs: {msg}")
                continue
            sid = r["event_record_id"]
            if sid not in want:
                continue
            num, fr = ids[sid]
            data = r["data"]
            try:
                s, d = _canon_rs(orjson.loads(data)["Event"])
            except Exception as exc:
                self._engine_errors[num] = f"evtx-rs record could not be normalised: {exc!r}"
                continue
            want.discard(sid)
            yield from self._push(num, parser_name, data, r["timestamp"], s, d, frame=fr)
        want = {sid for sid in want if wanted(*ids[sid])}
        if not want:
            return
        try:
            for sid, rec in _dissect_chunk(image[HEADER_BLOCK:], set(want)):
                if sid not in want:
                    continue
                num, fr = ids[sid]
                try:
                    s, _, body = _canon_dissect(rec)
                    event_json = _event_json(s, body)
                except Exception as exc:
                    self._engine_errors[num] = (self._engine_errors.get(num, "")
                                                + f"; dissect.eventlog record not normalised: {exc!r}").lstrip("; ")
                    continue
                want.discard(sid)
                yield from self._push(num, dissect_name, event_json, None, frame=fr)
        except Exception as exc:
            for sid in want:
                num = ids[sid][0]
                prev = self._engine_errors.get(num)
                self._engine_errors[num] = (f"{prev}; " if prev else "") + f"dissect.eventlog: {exc!r}"

    # --- python-evtx -----------------------------------------------------------------------------

    def _run_python_evtx(self, parser_name: str) -> Iterator[pa.Table]:
        try:
            from Evtx.Evtx import FileHeader
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise ParserUnavailable("python-evtx is not installed (pip install python-evtx)") from exc
        # the file's read-only map, opened through open_evidence (Evtx(path) would open it by name: atime)
        with contextlib.nullcontext(FileHeader(self._buf, 0)) as log_file:
            for chunk in log_file.chunks():
                try:
                    records = list(chunk.records())
                except Exception as exc:
                    self._rep.warn("parser_error", f"python-evtx chunk error: {exc!r}")
                    continue
                for record in records:
                    try:
                        number = record.record_num()
                    except Exception as exc:
                        self._rep.warn("parser_error", f"python-evtx record header error: {exc!r}")
                        continue
                    fr = None
                    if number in self._conflicts:  # told apart by where the record is
                        fr = next((f for f in self._conflicts[number] if f.offset == record.offset()), None)
                        if fr is None or fr.offset in self._done_frames:
                            continue
                    elif number in self._done:
                        continue
                    try:
                        s, _, body = _canon_xml(record.xml())
                        event_json = _event_json(s, body)
                    except Exception as exc:
                        self._engine_errors[number] = f"python-evtx: {exc!r}"
                        continue
                    yield from self._push(number, parser_name, event_json, None, frame=fr)
        for n in self._frames.by_number():
            if n not in self._done and n not in self._engine_errors:
                self._engine_errors[n] = "python-evtx did not yield this record (it trusts the header's chunk count)"


def _conflicts(records: list[tuple[int, int, int, int, int]], buf: Any) -> dict[int, list[Frame]]:
    """Numbers carried by frames whose bytes differ: number -> every frame carrying it, in file order."""
    by: dict[int, list[tuple]] = {}
    for r in records:
        by.setdefault(r[1], []).append(r)
    out = {}
    for n, rs in by.items():
        if len(rs) > 1:
            distinct: dict[bytes, tuple] = {}
            for r in rs:  # the first frame of each content (a byte-for-byte copy is the same record)
                distinct.setdefault(bytes(buf[r[0]:r[0] + r[3]]), r)
            if len(distinct) > 1:
                out[n] = [Frame(*r) for r in distinct.values()]
    return out


def _rs_ts_ns(ts: Any) -> int | None:
    """The Rust parser's record timestamp string ('2010-11-21T03:55:59.6264271Z UTC') as ns."""
    if not isinstance(ts, str):
        return None
    ts = ts.replace(" UTC", "").rstrip("Z")
    whole, _, frac = ts.partition(".")
    try:
        t = _dt.datetime.fromisoformat(whole)
    except ValueError:
        return None
    delta = t - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + int((frac + "000000000")[:9])


def _dissect_chunk(data: bytes, wanted: set[int] | None = None) -> Iterator[tuple[int, Any]]:
    """Every record dissect.eventlog decodes in one chunk (only those of ``wanted`` numbers when given), with the
    record number from its header."""
    from dissect.eventlog.bxml import Bxml, EvtxNameReader, parse_bxml
    from dissect.eventlog.evtx import ElfChnk, c_evtx

    chunk = ElfChnk(data)
    stream = chunk.stream
    while True:
        offset = stream.tell()
        try:
            r = c_evtx.EVTX_RECORD(stream)
        except EOFError:
            break
        if r.signature != 0x2A2A:
            break
        if r.size != r.size_copy or (wanted is not None and r.record_id not in wanted):
            stream.seek(offset + r.size)
            continue
        chunk.data_offset = offset + 24
        bxml = Bxml(bxml_stream=io.BytesIO(r.data), elf_chunk_stream=stream)
        bxml.data_offset = chunk.data_offset
        bxml.templates = chunk.templates
        bxml.template = None
        bxml.set_name_reader(EvtxNameReader(bxml))
        try:
            rec = parse_bxml(bxml)
        except Exception:
            stream.seek(offset + r.size)
            continue
        stream.seek(offset + r.size)
        yield r.record_id, rec
