"""plaso interoperability: import plaso's work, run plaso as an engine, write plaso's CSV formats.

* :func:`import_plaso` brings a ``.plaso`` storage file (read through plaso's own storage API and
  output modules, exactly as ``psort -o json_line`` joins events, event data and event data
  streams), or a psort export (``json_line``, ``l2tcsv``, ``dynamic``), into a case: one commit of
  the case's custody log with the file's SHA-256/MD5 and plaso's version.  Importing the same file
  again adds nothing.
* :func:`collect_with_plaso` runs ``log2timeline`` on evidence (hashed before and after, and recorded in
  the custody log, by the same code as :meth:`forensics.Case.collect`: :mod:`collectors.evidence`) with a
  parser preset, then imports its storage file; the storage file is kept in the case (``plaso/``) and
  named in the custody entry.
* :func:`export_plaso` writes a case's timeline as plaso's ``l2tcsv`` or ``dynamic`` CSV.

Row mapping (one row per plaso *event*, i.e. per time of an event data): ``timestamp`` plaso's
UTC microseconds, or the exact FILETIME (100 ns; plaso's microseconds round it to the nearest one); ``timestamp_desc`` plaso's;
``artifact`` ``plaso:<data_type>``; ``parser`` ``plaso/<version>:<parser chain>``; ``message``
plaso's formatter output (what psort prints); ``attrs`` every field psort's ``json_line`` prints,
plus ``plaso_event`` (the storage's event identifier), ``plaso_values_hash`` and, for local-time
sources, ``plaso_zone`` (which zone plaso applied and why).  ``tz_source``: ``source_utc`` for
formats that store UTC, ``embedded_offset`` when the source carried its offset, and for local
times the zone plaso applied: the image's own (``evidence_config``), the analyst's ``-z``
(``analyst``) or plaso's silent default UTC (``assumed_utc``).  ``event_hash`` is psort's
de-duplication key (time, description, plaso's event values hash), so a case holds exactly the
events ``psort`` prints.

plaso is optional (``pip install 'forensics[plaso]'``): this module imports it only when a
function needs it, and nothing else in the project imports it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import pyarrow as pa

from collectors.evidence import Item, evidence_entry, hash_after, hash_before
from timeline.custody import hash_file
from timeline.errors import EvidenceChanged, EvidenceNotFound, EvidenceUnreadable, ParserUnavailable, UnknownFormat
from timeline.schema import (
    NS_MAX,
    NS_MIN,
    TZ_ANALYST,
    TZ_ASSUMED_UTC,
    TZ_EMBEDDED_OFFSET,
    TZ_EVIDENCE_CONFIG,
    TZ_SOURCE_UTC,
    RowBuilder,
    event_hash,
    iso_ns,
)
from timeline.store import PROBLEMS_SCHEMA, SIGHTINGS_SCHEMA, new_run_id, write_parquet

__all__ = [
    "INSTALL_HINT",
    "PlasoReport",
    "plaso_tool",
    "plaso_version",
    "read_plaso",
    "import_plaso",
    "collect_with_plaso",
    "run_log2timeline",
    "export_plaso",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'forensics[plaso]'"
ENV_BIN = "FORENSICS_PLASO_BIN"  # folder holding log2timeline and psort (only there when set)
STORAGE_DIR = "plaso"  # storage files made by the engine, kept in the case
FORMATS = ("storage", "json_line", "l2tcsv", "dynamic")
BATCH_ROWS = 50_000

_TOOL_NAMES = {"log2timeline": ("log2timeline", "log2timeline.py"), "psort": ("psort", "psort.py")}
_SOURCE = {"windows:evtx": "EVTX", "windows:evt": "EVT", "syslog": "SYSLOG", "fs:stat": "FILE", "windows:registry": "REG",
           "linux:utmp": "UTMP", "bash:history": "SHELL", "shell:zsh:history": "SHELL", "fish:history": "SHELL",
           "apache:access": "WEB", "iis:log": "WEB", "nginx:access": "WEB", "selinux:line": "AUDIT", "linux:auditd": "AUDIT"}
# json_line fields that are not event data attributes (generated, or from the event / event data stream)
_NOT_EVENT_DATA = {"__container_type__", "__type__", "date_time", "timestamp", "timestamp_desc", "display_name",
                   "message", "tag", "parser", "pathspec", "md5_hash", "sha1_hash", "sha256_hash", "file_entropy",
                   "yara_match"}
_STREAM_FIELDS = ("file_entropy", "md5_hash", "sha1_hash", "sha256_hash", "yara_match")
_UTC_CLASSES = {"Filetime", "PosixTime", "PosixTimeInMilliseconds", "PosixTimeInMicroseconds",
                "PosixTimeInNanoseconds", "JavaTime", "CocoaTime", "WebKitTime", "HFSTime", "APFSTime", "OLEAutomationDate",
                "DelphiDateTime", "UUIDTime", "GolangTime", "DotNetDateTime", "SystemtimeUTC"}


# ---------------------------------------------------------------------------------------------
# finding plaso
# ---------------------------------------------------------------------------------------------


def _plaso():
    """The plaso package, or ParserUnavailable with the install hint."""
    try:
        import plaso  # noqa: F401 - optional dependency, imported only here

        return plaso
    except ImportError as exc:
        raise ParserUnavailable(f"plaso is not installed (reading .plaso storage needs it): {INSTALL_HINT}") from exc


def plaso_version() -> str:
    return str(_plaso().__version__)


def plaso_tool(name: str = "log2timeline", bin_dir: str | os.PathLike | None = None) -> str:
    """The path of plaso's ``log2timeline`` or ``psort``.

    Looked up in ``bin_dir``, else in ``$FORENSICS_PLASO_BIN`` (only there when either is given),
    else next to this Python (a virtual environment's ``bin``) and on ``PATH``.
    """
    names = _TOOL_NAMES.get(name, (name,))
    where = bin_dir if bin_dir is not None else os.environ.get(ENV_BIN) or None
    if where is not None:
        dirs = [str(where)]
    else:
        dirs = [os.path.dirname(sys.executable), *os.environ.get("PATH", "").split(os.pathsep)]
    for d in dirs:
        for n in names:
            exe = shutil.which(n, path=d) if d else None
            if exe:
                return exe
    looked = f"in {where}" if where is not None else f"next to {sys.executable} or on PATH"
    raise ParserUnavailable(f"plaso's {name} not found ({looked}): {INSTALL_HINT}")


# ---------------------------------------------------------------------------------------------
# reading plaso: every event as the dict psort's json_line prints, plus what json_line leaves out
# ---------------------------------------------------------------------------------------------


@dataclass
class _Event:
    fields: dict[str, Any]  # exactly psort's json_line field values
    ref: str  # where in the file: "event.N" (storage) or "line=N" (exports)
    values_hash: str | None  # plaso's _event_values_hash (psort's de-duplication key)
    tz_source: str
    zone_note: dict[str, Any] | None = None
    ns: int | None = None  # nanoseconds since the epoch, when finer than plaso's microseconds


@dataclass
class _Source:
    """What a plaso file says about itself (custody)."""

    kind: str
    sessions: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    hostnames: dict[str, str] = field(default_factory=dict)  # OS location of a source -> hostname plaso found
    fallback_host: str | None = None


def sniff(path: Path) -> str:
    """Which plaso format ``path`` holds: storage (SQLite), json_line, l2tcsv or dynamic."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"SQLite format 3\x00"):
        return "storage"
    first = head.split(b"\n", 1)[0].strip().lstrip(b"\xef\xbb\xbf")
    if first.startswith(b"{") and b'"timestamp_desc"' in head:
        return "json_line"
    if first.startswith(b"date,time,timezone,MACB,source,sourcetype,type,user,host,short,desc"):
        return "l2tcsv"
    cols = first.decode("utf-8", "replace").split(",")
    if "datetime" in cols and ("message" in cols or "timestamp_desc" in cols):
        return "dynamic"
    raise UnknownFormat(f"{path}: not a plaso storage file nor a psort json_line / l2tcsv / dynamic export")


def read_plaso(path: str | os.PathLike, source: _Source | None = None) -> Iterator[_Event]:
    """The events of a plaso storage file or psort export, in plaso's own terms (see module doc)."""
    p = Path(path)
    src = source or _Source(sniff(p))
    if src.kind == "storage":
        yield from _read_storage(p, src)
    elif src.kind == "json_line":
        yield from _read_json_line(p, src)
    elif src.kind == "l2tcsv":
        yield from _read_l2tcsv(p, src)
    elif src.kind == "dynamic":
        yield from _read_dynamic(p, src)
    else:
        raise UnknownFormat(f"unknown plaso format {src.kind!r} (known: {', '.join(FORMATS)})")


def _read_storage(path: Path, src: _Source) -> Iterator[_Event]:
    plaso = _plaso()
    from dfdatetime import interface as dfdatetime_interface
    from plaso.containers import events as plaso_events
    from plaso.output import json_line
    from plaso.output import mediator as output_mediator
    from plaso.storage import factory

    reader = factory.StorageFactory.CreateStorageReaderForFile(str(path))
    if reader is None:
        raise UnknownFormat(f"{path}: plaso {plaso.__version__} cannot read this storage file")
    data_location = os.path.join(os.path.dirname(plaso.__file__), "data")
    with reader:
        sessions = list(reader.GetSessions())
        src.sessions = [_session(s) for s in sessions]
        explicit_zone = any(_explicit_zone(s.command_line_arguments) for s in sessions)
        preferred = next((s.preferred_time_zone for s in reversed(sessions) if s.preferred_time_zone), None) or "UTC"
        zone_by_parent: dict[str, str] = {}
        for sc in reader.GetAttributeContainers("system_configuration"):
            host = getattr(getattr(sc, "hostname", None), "name", None)
            for ps in getattr(sc, "path_specs", None) or []:
                if sc.time_zone:
                    zone_by_parent[ps.comparable] = sc.time_zone
                if host:
                    src.hostnames[ps.comparable] = host
            if host:
                src.fallback_host = host
        for kind in ("extraction_warning", "timelining_warning", "recovery_warning"):
            if reader.HasAttributeContainers(kind):
                for w in reader.GetAttributeContainers(kind):
                    src.warnings.append({"kind": f"plaso_{kind}", "message": str(w.message),
                                         "parser": getattr(w, "parser_chain", None),
                                         "where": _display(w.path_spec) if getattr(w, "path_spec", None) else None})
        tags = {}
        if reader.HasAttributeContainers("event_tag"):
            for tag in reader.GetAttributeContainers("event_tag"):
                tags[tag.GetEventIdentifier().CopyToString()] = tag
        mediator = output_mediator.OutputMediator(reader, data_location=data_location)
        mediator.ReadMessageFormattersFromDirectory(os.path.join(data_location, "formatters"))
        module = json_line.JSONLineOutputModule()
        streams: dict[str, Any] = {}
        for event in reader.GetSortedEvents():
            event_data = reader.GetAttributeContainerByIdentifier(
                plaso_events.EventData.CONTAINER_TYPE, event.GetEventDataIdentifier())
            sid = event_data.GetEventDataStreamIdentifier()
            stream = None
            if sid:
                key = sid.CopyToString()
                stream = streams.get(key)
                if stream is None:
                    stream = streams[key] = reader.GetAttributeContainerByIdentifier(
                        plaso_events.EventDataStream.CONTAINER_TYPE, sid)
            ident = event.GetIdentifier().CopyToString()
            fields = module.GetFieldValues(mediator, event, event_data, stream, tags.get(ident))
            # what json_line would print: make values JSON-plain once, here
            fields = json.loads(json.dumps(fields, default=str))
            local = [v for _, v in event_data.GetAttributes() if _is_local(v, dfdatetime_interface)]
            tz_source, note = TZ_SOURCE_UTC, None
            dt = event.date_time
            if local:
                hint = next((v.time_zone_hint for v in local if v.time_zone_hint), None)
                parent = getattr(getattr(stream, "path_spec", None), "parent", None)
                system_zone = zone_by_parent.get(parent.comparable) if parent is not None else None
                if hint:
                    zone, tz_source, why = hint, TZ_EVIDENCE_CONFIG, "time zone hint of the source"
                elif system_zone:
                    zone, tz_source, why = system_zone, TZ_EVIDENCE_CONFIG, "system configuration plaso found in the image"
                elif explicit_zone:
                    zone, tz_source, why = preferred, TZ_ANALYST, "log2timeline -z"
                else:
                    zone, tz_source, why = preferred, TZ_ASSUMED_UTC, "plaso's default (no -z, no zone in the evidence)"
                note = {"local_time": True, "zone": zone, "why": why, "preferred_time_zone": preferred,
                        "offset_minutes": getattr(dt, "time_zone_offset", None)}
            elif dt is not None and getattr(dt, "time_zone_offset", None):
                tz_source = TZ_EMBEDDED_OFFSET
            yield _Event(fields, ident, getattr(event_data, "_event_values_hash", None), tz_source, note,
                         _ns(event.timestamp, dt))


def _is_local(v: Any, iface) -> bool:
    if isinstance(v, list):
        return any(isinstance(x, iface.DateTimeValues) and x.is_local_time for x in v)
    return isinstance(v, iface.DateTimeValues) and v.is_local_time


def _explicit_zone(command_line: str | None) -> bool:
    for tok in (command_line or "").split():
        if tok in ("-z", "--zone", "--timezone", "--time_zone") or tok.startswith(("--zone=", "--timezone=")) or (
                tok.startswith("-z") and len(tok) > 2):
            return True
    return False


def _session(s) -> dict[str, Any]:
    d = {}
    for k in ("identifier", "product_name", "product_version", "command_line_arguments", "parser_filter_expression",
              "preferred_time_zone", "preferred_year", "preferred_encoding", "start_time", "completion_time", "aborted"):
        v = getattr(s, k, None)
        if v is not None:
            d[k] = v if isinstance(v, (str, int, bool, float)) else str(v)
    for k in ("start_time", "completion_time"):
        if isinstance(d.get(k), int):
            d[k] = iso_ns(d[k] * 1000)
    return d


def _display(path_spec) -> str:
    from plaso.engine import path_helper

    return path_helper.PathHelper.GetDisplayNameForPathSpec(path_spec)


def _ns(timestamp_us: int, date_time) -> int:
    """The event's time in ns: exact from a FILETIME / nanosecond date_time (plaso's microsecond ``timestamp``
    rounds a FILETIME to the nearest microsecond, so it can be 1 us late), else plaso's microseconds."""
    ns = int(timestamp_us) * 1000
    if date_time is None or getattr(date_time, "is_local_time", False) or getattr(date_time, "time_zone_offset", None):
        return ns
    name = type(date_time).__name__
    raw = getattr(date_time, "timestamp", None)
    exact = _exact_ns(name, raw)
    return exact if exact is not None and abs(exact - ns) < 1000 else ns


def _exact_ns(class_name: str, raw: Any) -> int | None:
    if not isinstance(raw, int):
        return None
    if class_name == "Filetime":
        return (raw - 116_444_736_000_000_000) * 100
    if class_name == "PosixTimeInNanoseconds":
        return raw
    return None


def _read_json_line(path: Path, src: _Source) -> Iterator[_Event]:
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = orjson.loads(line)
                int(d["timestamp"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                src.warnings.append({"kind": "bad_line", "message": f"line {n}: {exc}", "record_ref": f"line={n}",
                                     "error": True})
                continue
            dt = d.get("date_time") or {}
            cls = dt.get("__class_name__", "")
            if cls in _UTC_CLASSES:
                tz_source, note = TZ_SOURCE_UTC, None
            elif dt.get("time_zone_offset"):
                tz_source, note = TZ_EMBEDDED_OFFSET, {"why": "date_time carries an offset; an export does not say "
                                                              "whether the source or log2timeline -z set it"}
            else:
                tz_source, note = TZ_ASSUMED_UTC, {"why": f"{cls or 'unknown'} date_time without offset: an export does "
                                                          "not say which zone log2timeline applied"}
            yield _Event(d, f"line={n}", _values_hash(d), tz_source, note, _ns_from_json(d))


def _ns_from_json(d: dict[str, Any]) -> int:
    ns = int(d["timestamp"]) * 1000
    dt = d.get("date_time") or {}
    if dt.get("is_local_time") or dt.get("time_zone_offset"):
        return ns
    exact = _exact_ns(dt.get("__class_name__", ""), dt.get("timestamp"))
    return exact if exact is not None and abs(exact - ns) < 1000 else ns


def _values_hash(d: dict[str, Any]) -> str | None:
    """plaso's event values hash recomputed from a json_line record (as plaso.containers.events computes it),
    so an export and its storage file give the same events; None when the record does not allow it."""
    try:
        from dfvfs.path import factory as _unused  # noqa: F401 - path spec classes register on import
        from plaso.serializer import json_serializer
    except ImportError:
        return None
    try:
        attrs = [f"data_type: {d['data_type']}"]
        # file-stat event data carries its own display_name (elsewhere json_line generates it)
        own = {"display_name"} if str(d.get("data_type", "")).startswith("fs:stat") else set()
        for name in sorted(k for k in d if (k not in _NOT_EVENT_DATA or k in own) and k != "data_type"):
            value = d[name]
            if value is None or isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
                if value is None:
                    continue
                return None  # a value json_line reformatted (registry values...)
            attrs.append(f"{name}: {value!s}")
        stream = {k: d[k] for k in _STREAM_FIELDS if d.get(k) is not None}
        if d.get("pathspec"):
            stream["path_spec"] = json_serializer.JSONAttributeContainerSerializer.ReadSerializedDict(d["pathspec"]).comparable
        for name in sorted(stream):
            attrs.append(f"{name}: {stream[name]!s}")
        return hashlib.md5(", ".join(attrs).encode("utf-8")).hexdigest()
    except Exception:  # noqa: BLE001 - a record plaso itself could not have hashed this way
        return None


_L2T_FIELDS = ["date", "time", "timezone", "MACB", "source", "sourcetype", "type", "user", "host", "short", "desc",
               "version", "filename", "inode", "notes", "format", "extra"]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo("UTC" if name in ("UTC", "GMT", "Z") else name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownFormat(f"unknown time zone {name!r} in the export") from exc


def _dsv_lines(path: Path, src: _Source, n_fields: int | None) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line number, header, values) of a plaso DSV export: plaso replaces the delimiter inside values
    by a space and quotes nothing, so a plain split is exact."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        header = fh.readline().rstrip("\r\n").lstrip("\ufeff").split(",")
        for n, line in enumerate(fh, 2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            values = line.split(",")
            if len(values) != len(header):
                src.warnings.append({"kind": "bad_line", "record_ref": f"line={n}", "error": True,
                                     "message": f"line {n}: {len(values)} fields, the header has {len(header)}: {line[:200]!r}"})
                continue
            yield n, header, values


def _read_l2tcsv(path: Path, src: _Source) -> Iterator[_Event]:
    zones: dict[str, ZoneInfo] = {}
    for n, header, values in _dsv_lines(path, src, 17):
        r = dict(zip(header, values))
        try:
            zone = zones.get(r["timezone"]) or zones.setdefault(r["timezone"], _zone(r["timezone"]))
            local = _dt.datetime.strptime(f"{r['date']} {r['time']}", "%m/%d/%Y %H:%M:%S").replace(tzinfo=zone)
        except (ValueError, UnknownFormat) as exc:
            src.warnings.append({"kind": "bad_time", "record_ref": f"line={n}", "error": True, "message": f"line {n}: {exc}"})
            continue
        us = int(local.timestamp()) * 1_000_000
        # one line per MACB group: its "type" lists the descriptions of the events plaso grouped
        for desc in [t.strip() for t in r["type"].split(";")] or ["-"]:
            d = {"timestamp": us, "timestamp_desc": desc, "message": r["desc"], "parser": r["format"],
                 "display_name": r["filename"], "hostname": r["host"], "username": r["user"], "source_short": r["source"],
                 "source_long": r["sourcetype"], "l2tcsv": r}
            yield _Event(d, f"line={n}", None, TZ_SOURCE_UTC if r["timezone"] == "UTC" else TZ_EMBEDDED_OFFSET,
                         {"why": f"l2tcsv time in {r['timezone']}, seconds only"}, us * 1000)


def _read_dynamic(path: Path, src: _Source) -> Iterator[_Event]:
    for n, header, values in _dsv_lines(path, src, None):
        r = dict(zip(header, values))
        try:
            t = _dt.datetime.fromisoformat(r["datetime"].replace("Z", "+00:00"))
            if t.tzinfo is None:
                raise ValueError(f"datetime {r['datetime']!r} has no offset")
        except (ValueError, KeyError) as exc:
            src.warnings.append({"kind": "bad_time", "record_ref": f"line={n}", "error": True, "message": f"line {n}: {exc}"})
            continue
        delta = t - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        d = {"timestamp": us, "timestamp_desc": r.get("timestamp_desc", "-"), "message": r.get("message", "-"),
             "parser": r.get("parser", "-"), "display_name": r.get("display_name", "-"),
             "hostname": r.get("hostname") or r.get("host"), "username": r.get("username") or r.get("user"),
             "source_short": r.get("source"), "source_long": r.get("source_long"), "dynamic": r}
        yield _Event(d, f"line={n}", None, TZ_SOURCE_UTC if t.utcoffset() == _dt.timedelta(0) else TZ_EMBEDDED_OFFSET,
                     None, us * 1000)


# ---------------------------------------------------------------------------------------------
# plaso event -> timeline row
# ---------------------------------------------------------------------------------------------

_CHANNEL = re.compile(r"<Channel>([^<]*)</Channel>")
_VOLUME_TYPES = {"TSK_PARTITION", "GPT", "APM", "LVM", "VSHADOW", "CS", "BDE", "FVDE", "LUKSDE", "APFS_CONTAINER"}


def _where(pathspec: dict[str, Any] | None, root: Path | None) -> tuple[str | None, str | None]:
    """(the OS file plaso read, the locations inside it joined by '!') from a serialized path spec chain."""
    chain = []
    ps = pathspec
    while isinstance(ps, dict):
        chain.append((ps.get("type_indicator"), ps.get("location")))
        ps = ps.get("parent")
    if not chain:
        return None, None
    os_loc = next((loc for t, loc in reversed(chain) if t == "OS"), None)
    inner: list[str] = []
    for t, loc in reversed(chain):  # outermost first: /logs/sys.tgz, then /syslog.gz inside it
        if t != "OS" and loc and t not in _VOLUME_TYPES and (not inner or inner[-1] != loc):
            inner.append(loc)
    if os_loc and root is not None:
        try:
            os_loc = Path(os_loc).resolve().relative_to(root).as_posix()
            if os_loc == ".":
                os_loc = root.name
        except ValueError:
            pass
    return os_loc, "!".join(inner) or None


def _source_of(data_type: str, short: str | None) -> str:
    for prefix, fam in _SOURCE.items():
        if data_type == prefix or data_type.startswith(prefix + ":"):
            return fam
    return (short or "PLASO").upper()


def _s(v: Any) -> str | None:
    if v is None or v == "-" or v == "":
        return None
    return v if isinstance(v, str) else str(v)


class _Mapper:
    """Turns plaso events into timeline rows of one evidence item."""

    def __init__(self, evidence_id: str, version: str, root: Path | None, src: _Source, default_path: str | None):
        """``root``: the evidence folder OS paths are made relative to (engine); ``default_path``: the evidence
        item an event without a path spec (a directory's times) belongs to (engine), else its display name."""
        self.evidence_id, self.version, self.root, self.src = evidence_id, version, root, src
        self.default_path = default_path
        self.per_file: dict[str, int] = {}

    def row(self, e: _Event, rows: RowBuilder) -> bool:
        d = e.fields
        data_type = d.get("data_type") or ""
        os_loc, inner = _where(d.get("pathspec"), self.root)
        display = d.get("display_name") if d.get("display_name") not in (None, "-") else None
        if os_loc is None and self.default_path is not None:
            os_loc = self.default_path
            inner = re.sub(r"^[A-Z_]+:", "", display) if display and not display.startswith("OS:") else None
        if os_loc is None:
            os_loc = display or "-"
        ev_path = os_loc + (f"!{inner}" if inner else "")
        self.per_file[os_loc] = self.per_file.get(os_loc, 0) + 1
        chain = d.get("parser") or "-"
        ts = e.ns if e.ns is not None else int(d["timestamp"]) * 1000
        desc = d.get("timestamp_desc") or "-"
        if not NS_MIN < ts < NS_MAX:  # e.g. a FILETIME of year 30828: a lost row, said so (timestamp is ns)
            self.src.warnings.append({"kind": "time_out_of_range", "error": True, "record_ref": e.ref,
                                      "where": ev_path, "parser": chain,
                                      "message": f"{desc} {d['timestamp']} us since 1970 is outside 1677..2262: "
                                                 f"{(d.get('message') or '')[:200]}"})
            return False
        attrs = dict(d)
        attrs["plaso_event"] = e.ref
        if e.values_hash:
            attrs["plaso_values_hash"] = e.values_hash
        if e.zone_note:
            attrs["plaso_zone"] = e.zone_note
        host = _s(d.get("hostname")) or _s(d.get("computer_name"))
        if host is None and self.src.fallback_host and d.get("pathspec"):
            host = self.src.fallback_host
        xml = d.get("xml_string") or ""
        m = _CHANNEL.search(xml) if xml else None
        record = d.get("record_number")
        ref = e.ref + (f" record={record}" if record is not None else "")
        if data_type.startswith("windows:evt"):
            provider = _s(d.get("source_name"))
            event_id = d.get("event_identifier")
        else:
            provider = _s(d.get("reporter")) or _s(d.get("source_name"))
            event_id = None
        user = _s(d.get("username")) or _s(d.get("user"))
        path = _s(d.get("filename")) if data_type.startswith("fs:") else _s(d.get("path")) or _s(d.get("full_path"))
        source = _source_of(data_type, d.get("source_short")) if data_type else (d.get("source_short") or "PLASO")
        artifact = f"plaso:{data_type}" if data_type else f"plaso:{chain}"
        if e.values_hash:
            key = event_hash("PLASO", d["timestamp"], desc, e.values_hash)
        else:  # an export without plaso's values: its visible fields are the identity
            key = event_hash("PLASO-CSV", ts, desc, d.get("display_name"), chain, d.get("message"))
        rows.add(
            timestamp=ts, timestamp_desc=desc, host=host, source=source, artifact=artifact, event_id=event_id,
            channel=m.group(1) if m else None, provider=provider, user=user,
            src_ip=_s(d.get("ip_address")) or _s(d.get("source_ip")) or _s(d.get("remote_address")),
            process=_s(d.get("reporter")) if data_type.startswith("syslog") else _s(d.get("process_name")),
            command_line=_s(d.get("command")), path=path,
            message=d.get("message") or f"{desc} {data_type or chain}", attrs=orjson.dumps(attrs, default=str).decode(),
            tags=_tags(d.get("tag")), tz_source=e.tz_source, evidence_id=self.evidence_id, evidence_path=ev_path,
            record_ref=ref, parser=f"plaso/{self.version}:{chain}", event_hash=key,
        )
        return True


def _tags(tag: Any) -> list[str]:
    if isinstance(tag, dict):
        return [str(x) for x in tag.get("labels") or []]
    if isinstance(tag, str) and tag not in ("", "-"):
        return [t.strip() for t in tag.split(",") if t.strip()]
    return []


# ---------------------------------------------------------------------------------------------
# into a case
# ---------------------------------------------------------------------------------------------


@dataclass
class PlasoReport:
    run_id: str
    kind: str  # storage / json_line / l2tcsv / dynamic / engine
    evidence: list[dict[str, Any]]
    events_read: int
    rows_written: int
    duplicates_dropped: int
    warnings: int
    errors: int
    skipped: list[str]
    plaso: dict[str, Any]
    seconds: float
    per_file: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"plaso {self.kind}: {self.events_read} events read, {self.rows_written} rows written, "
                f"{self.duplicates_dropped} duplicates merged, {self.errors} lost (errors), {self.warnings} plaso warnings, "
                f"{len(self.skipped)} already in the case, {self.seconds:.1f} s")


def _case(case):
    from forensics.case import Case

    return case if isinstance(case, Case) else Case(case, create=True)


def _tool_versions(extra: dict[str, str]) -> dict[str, str]:
    from forensics.case import tool_versions

    return {**tool_versions(), **extra}


def _write_rows(events: Iterable[_Event], mapper: _Mapper, staging: Path, prefix: str, batch_rows: int = BATCH_ROWS
                ) -> tuple[list[Path], list[Path], int]:
    rows = RowBuilder()
    parts, others = [], []
    n = 0

    def flush() -> None:
        t = rows.to_table()
        i = len(others)
        sp = staging / f"sightings-{prefix}-{i:04d}.parquet"
        write_parquet(t.select(SIGHTINGS_SCHEMA.names).cast(SIGHTINGS_SCHEMA), sp)
        others.append(sp)
        tl = staging / f"tl-{prefix}-{i:04d}.parquet"
        write_parquet(t, tl)
        parts.append(tl)

    for e in events:
        if mapper.row(e, rows):
            n += 1
        if len(rows) >= batch_rows:
            flush()
    if len(rows):
        flush()
    return parts, others, n


def _problems(src: _Source, evidence_id: str, evidence_path: str, staging: Path, run_id: str, version: str) -> list[Path]:
    if not src.warnings:
        return []
    recs = [{"severity": "error" if w.get("error") else "warning", "evidence_id": evidence_id,
             "evidence_path": w.get("where") or evidence_path, "record_ref": w.get("record_ref"), "kind": w["kind"],
             "message": w["message"], "count": 1, "parser": f"plaso/{version}:{w.get('parser') or '-'}"}
            for w in src.warnings]
    pp = staging / f"problems-{run_id}.parquet"
    write_parquet(pa.Table.from_pylist(recs, schema=PROBLEMS_SCHEMA), pp, sort=False)
    return [pp]


def import_plaso(case, path: str | os.PathLike, fmt: str | None = None) -> PlasoReport:
    """Import a ``.plaso`` storage file or a psort ``json_line`` / ``l2tcsv`` / ``dynamic`` export into ``case``
    (a :class:`forensics.Case` or a case directory, created if missing).  One custody commit; again: nothing added."""
    t0 = time.monotonic()
    p = Path(os.path.abspath(path))
    if not p.exists():
        raise EvidenceNotFound(f"plaso file not found: {p}")
    if not p.is_file() or not os.access(p, os.R_OK):
        raise EvidenceUnreadable(f"cannot read plaso file {p}")
    kind = fmt or sniff(p)
    if kind not in FORMATS:
        raise UnknownFormat(f"unknown plaso format {kind!r} (known: {', '.join(FORMATS)})")
    version = plaso_version() if kind == "storage" else _optional_version()
    case = _case(case)
    store = case.store
    with store.lock():
        store.recover()
    item = Item(p, [(p.name, p, "plaso")], [])
    hash_before([item])
    before, evidence_id = item.hashes[p.name], item.evidence_id
    files = [(item, p.name, p)]
    engine = f"plaso-import:{kind}"
    src = _Source(kind)
    run_id = new_run_id()
    if (evidence_id, p.name, before.sha256, engine) in store.collected_artifacts():
        return _commit(store, run_id, [], [], kind, evidence_entry([item], files, [before]),
                       [], [f"{evidence_id}:{p.name}"], 0, src, version, t0, {})
    staging = store.staging_dir(run_id)
    try:
        made_by = None
        mapper = _Mapper(evidence_id, version, None, src, None)
        parts, others, n = _write_rows(read_plaso(p, src), mapper, staging, "00000")
        made_by = next((s.get("product_version") for s in src.sessions if s.get("product_version")), None)
        others += _problems(src, evidence_id, p.name, staging, run_id, version)
        after, changed = hash_after(files)
    except BaseException as exc:
        store.abort(run_id, f"plaso import interrupted: {type(exc).__name__}: {exc}")
        raise
    ev = evidence_entry([item], files, after)
    if changed:
        store.abort(run_id, "plaso file changed while it was read", evidence=ev)
        raise EvidenceChanged(f"{p} changed while it was read; nothing committed")
    errors = sum(1 for w in src.warnings if w.get("error"))
    art = {"evidence_id": evidence_id, "evidence_path": p.name, "sha256": before.sha256, "collector": "plaso",
           "engine": engine, "rows": n, "lost": errors, "records_read": n + errors,
           "warnings": len(src.warnings) - errors, "failed": None, "stats": {"made_by_plaso": made_by}}
    return _commit(store, run_id, parts, others, kind, ev, [art], [], n, src, version, t0, mapper.per_file)


def _optional_version() -> str:
    try:
        return plaso_version()
    except ParserUnavailable:
        return "not installed"


def _commit(store, run_id: str, parts: list[Path], others: list[Path], kind: str, evidence: list[dict], artifacts: list[dict],
            skipped: list[str], n: int, src: _Source, version: str, t0: float, per_file: dict[str, int],
            extra: dict[str, Any] | None = None) -> PlasoReport:
    errors = sum(1 for w in src.warnings if w.get("error"))
    warnings = len(src.warnings) - errors
    plaso_info = {"format": kind, "version": version, "sessions": src.sessions, **(extra or {})}
    if not parts and not others:
        store.staging_dir(run_id)
    entry = store.commit(run_id, parts, others, tool=_tool_versions({"plaso": version}), engine=f"plaso:{kind}",
                         evidence=evidence, artifacts=artifacts, skipped=skipped, records_read=n + errors, errors=errors,
                         warnings=warnings, plaso=plaso_info)
    return PlasoReport(run_id, kind, evidence, n + errors, entry["rows_written"], entry["duplicates_dropped"], warnings, errors,
                       skipped, plaso_info, time.monotonic() - t0, per_file)


# ---------------------------------------------------------------------------------------------
# plaso as an engine
# ---------------------------------------------------------------------------------------------


def run_log2timeline(evidence: str | os.PathLike, storage: str | os.PathLike, parsers: str | None = None,
                     tz: str | None = None, workers: int | None = 1, bin_dir: str | os.PathLike | None = None,
                     archives: str | None = None, extra_args: Iterable[str] = ()) -> list[str]:
    """Run ``log2timeline`` on ``evidence`` into a new storage file; returns the command line.
    Unattended (no prompts), every partition and volume, no status view; ``archives`` is plaso's
    ``--archives`` (e.g. "all": files inside tar/zip archives too; plaso's default: none)."""
    exe = plaso_tool("log2timeline", bin_dir)
    cmd = [exe, "--status_view", "none", "--unattended", "--partitions", "all", "--volumes", "all",
           "--storage_file", str(storage)]
    if parsers:
        cmd += ["--parsers", parsers]
    if tz:
        cmd += ["-z", tz]
    if archives:
        cmd += ["--archives", archives]
    cmd += ["--single_process"] if (workers or 1) <= 1 else ["--workers", str(workers)]
    cmd += [*extra_args, str(evidence)]
    workdir = Path(storage).parent
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, errors="replace",
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if res.returncode != 0 or not Path(storage).exists():
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-15:])
        raise ParserUnavailable(f"log2timeline failed (exit {res.returncode}) on {evidence}:\n{tail}") if "No module named" in tail \
            else UnknownFormat(f"log2timeline failed (exit {res.returncode}) on {evidence}:\n{tail}")
    return cmd


def _evidence_files(path: Path) -> list[tuple[str, Path]]:
    if not path.exists():
        raise EvidenceNotFound(f"evidence not found: {path}")
    if path.is_file():
        return [(path.name, path)]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            real = Path(dirpath) / name
            if real.is_file():
                out.append((real.relative_to(path).as_posix(), real))
    if not out:
        raise EvidenceNotFound(f"{path}: empty folder")
    return out


def collect_with_plaso(case, evidence: Iterable[str | os.PathLike], parsers: str | None = None, tz: str | None = None,
                       workers: int | None = 1, bin_dir: str | os.PathLike | None = None,
                       archives: str | None = None) -> PlasoReport:
    """Process ``evidence`` with plaso's ``log2timeline`` (parser preset or filter ``parsers``) and import the result.

    Evidence is hashed before and after (nothing is committed if it changed); each storage file made is kept
    as ``plaso/<run>-<n>.plaso`` in the case and named, with its hash and the command line, in the custody entry.
    Evidence already collected with the same parsers is skipped."""
    t0 = time.monotonic()
    exe = plaso_tool("log2timeline", bin_dir)
    version = plaso_version()
    case = _case(case)
    store = case.store
    with store.lock():
        store.recover()
    engine = f"plaso/{parsers or 'default'}" + (f"+archives={archives}" if archives else "")
    items = []
    for e in evidence:
        root = Path(os.path.abspath(e))
        items.append(Item(root, [(rel, real, "plaso") for rel, real in _evidence_files(root)], []))
    if not items:
        raise EvidenceNotFound("no evidence given")
    hash_before(items)
    done = store.collected_artifacts()
    run_id = new_run_id()
    staging = store.staging_dir(run_id)
    src = _Source("engine")
    parts: list[Path] = []
    others: list[Path] = []
    artifacts, skipped, evidence_entries, storages = [], [], [], []
    n = 0
    per_file: dict[str, int] = {}
    try:
        for i, item in enumerate(items):
            root, evidence_id = item.path, item.evidence_id
            files = [(item, rel, real) for rel, real, _ in item.files]
            before = [item.hashes[rel] for rel, _, _ in item.files]
            if all((evidence_id, rel, h.sha256, engine) in done for (_, rel, _), h in zip(files, before)):
                skipped += [f"{evidence_id}:{rel}" for _, rel, _ in files]
                evidence_entries += evidence_entry([item], files, before)
                continue
            storage = staging / f"engine-{i:03d}.plaso"
            cmd = run_log2timeline(root, storage, parsers, tz, workers, os.path.dirname(exe), archives)
            isrc = _Source("storage")
            mapper = _Mapper(evidence_id, version, root if root.is_dir() else root.parent, isrc, root.name)
            p, o, k = _write_rows(read_plaso(storage, isrc), mapper, staging, f"{i:05d}")
            parts += p
            others += o
            n += k
            for w in isrc.warnings:
                src.warnings.append(w)
            src.sessions += isrc.sessions
            storages.append({"path": f"{STORAGE_DIR}/{run_id}-{i}.plaso", "sha256": hash_file(storage, md5=False).sha256,
                             "command_line": cmd, "evidence_id": evidence_id, "staged": storage})
            after, changed = hash_after(files)
            evidence_entries += evidence_entry([item], files, after)
            if changed:
                store.abort(run_id, "evidence changed during collection", evidence=evidence_entries, changed=changed)
                raise EvidenceChanged("evidence changed while it was being read; nothing committed:\n  " + "\n  ".join(changed))
            for (_, rel, _), h in zip(files, before):
                rows = mapper.per_file.get(rel, 0) if root.is_dir() else sum(mapper.per_file.values())
                per_file[f"{evidence_id}:{rel}"] = rows
                artifacts.append({"evidence_id": evidence_id, "evidence_path": rel, "sha256": h.sha256, "collector": "plaso",
                                  "engine": engine, "rows": rows, "lost": 0, "records_read": rows, "warnings": 0,
                                  "failed": None, "stats": {}})
            others += _problems(isrc, evidence_id, root.name, staging, f"{run_id}-{i}", version)
    except BaseException as exc:
        if not isinstance(exc, EvidenceChanged):
            store.abort(run_id, f"plaso collection interrupted: {type(exc).__name__}: {exc}")
        raise
    # the storage files leave staging before the commit moves (and then removes) it
    (store.root / STORAGE_DIR).mkdir(exist_ok=True)
    for s in storages:
        os.replace(s.pop("staged"), store.root / s["path"])
    return _commit(store, run_id, parts, others, "engine", evidence_entries, artifacts, skipped, n, src, version, t0,
                   per_file, {"parsers": parsers, "tz": tz, "archives": archives, "storage_files": storages})


# ---------------------------------------------------------------------------------------------
# plaso's CSV formats from our timeline
# ---------------------------------------------------------------------------------------------

_MACB = {"Last Access Time": ".A..", "Content Modification Time": "M...", "Metadata Modification Time": "..C.",
         "Creation Time": "...B", "Event Logged": "M...", "Last Login Time": ".A..", "Last Run Time": ".A.."}
DYNAMIC_FIELDS = ["datetime", "timestamp_desc", "source", "source_long", "message", "parser", "display_name", "tag",
                  "hostname", "evidence_id", "record_ref", "event_hash"]


def _clean(v: Any) -> str:
    """A value as plaso writes a DSV field: '-' for nothing, the delimiter replaced by a space, one line."""
    if v is None or v == "" or (isinstance(v, list) and not v):
        return "-"
    s = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return s.replace(",", " ").replace("\r", "").replace("\n", "\\n")


def export_plaso(case, output: str | os.PathLike, fmt: str = "l2tcsv", tz: str | None = None, force: bool = False) -> int:
    """Write the case's timeline (sorted by time) as plaso's ``l2tcsv`` or ``dynamic`` CSV; returns rows written.

    Times are shown in ``tz`` (default UTC) as psort's ``-z`` does; l2tcsv holds whole seconds, dynamic
    microseconds (the timeline's nanoseconds stay in the case).  Streams: bounded memory."""
    import duckdb

    from timeline.store import TIMELINE_DIR

    if fmt not in ("l2tcsv", "dynamic"):
        raise UnknownFormat(f"unknown export format {fmt!r} (l2tcsv or dynamic)")
    try:
        zone = ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        from timeline.errors import QueryError

        raise QueryError(f"unknown time zone {tz!r} (use an IANA name such as Asia/Kolkata)") from exc
    from forensics.case import Case

    from forensics.query import _output_path

    case = case if isinstance(case, Case) else Case(case)
    output = _output_path(case.path, output, force)  # never over evidence, nor an existing file unless force
    files = [str(f) for f in case.store.files(TIMELINE_DIR)]
    zone_name = tz or "UTC"
    n = 0
    with open(output, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(_L2T_FIELDS if fmt == "l2tcsv" else DYNAMIC_FIELDS) + "\n")
        if not files:
            return 0
        con = duckdb.connect()
        rel = con.sql(
            "SELECT epoch_ns(timestamp) AS ns, timestamp_desc, host, source, artifact, event_id, user, message, attrs, "
            "tags, evidence_id, evidence_path, record_ref, parser, event_hash, channel, provider, target_user, logon_type, "
            "src_ip, process, command_line, path FROM read_parquet($files) ORDER BY timestamp, evidence_path, record_ref",
            params={"files": files})
        reader = rel.to_arrow_reader(10_000)
        for batch in reader:
            for r in batch.to_pylist():
                t = (_dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=r["ns"] // 1000)).astimezone(zone)
                if fmt == "l2tcsv":
                    extra = "; ".join(f"{k}: {r[k]}" for k in ("event_id", "channel", "provider", "target_user", "logon_type",
                                                                 "src_ip", "process", "command_line", "path", "evidence_id",
                                                                 "record_ref", "event_hash") if r[k] is not None)
                    macb = _macb(r)
                    msg = r["message"]
                    short = msg if len(msg) <= 80 else msg[:77] + "..."
                    vals = [t.strftime("%m/%d/%Y"), t.strftime("%H:%M:%S"), zone_name, macb, r["source"], r["artifact"],
                            r["timestamp_desc"], r["user"], r["host"], short, msg, "2", r["evidence_path"],
                            _inode(r["record_ref"]), r["tags"], r["parser"], extra]
                else:
                    vals = [t.isoformat(timespec="microseconds"), r["timestamp_desc"], r["source"], r["artifact"],
                            r["message"], r["parser"], r["evidence_path"], r["tags"], r["host"], r["evidence_id"],
                            r["record_ref"], r["event_hash"]]
                out.write(",".join(_clean(v) for v in vals) + "\n")
                n += 1
    return n


def _macb(r: dict[str, Any]) -> str:
    if r["source"] == "FILE":
        try:
            m = orjson.loads(r["attrs"]).get("macb")
            if isinstance(m, str) and len(m) == 4:
                return m
        except orjson.JSONDecodeError:
            pass
    return _MACB.get(r["timestamp_desc"], "....")


def _inode(ref: str | None) -> str | None:
    m = re.search(r"inode=(\d+)", ref or "")
    return m.group(1) if m else None
