"""The super-timeline schema: the single source of truth for columns.

Every collector produces Arrow tables with exactly :data:`SCHEMA`; the case
store refuses anything else.  The README's "Timeline schema" section documents
each column; :data:`COLUMNS` carries the same descriptions so the two can be
checked against each other by a test.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any, Sequence

import pyarrow as pa

__all__ = [
    "SCHEMA",
    "COLUMNS",
    "SCHEMA_VERSION",
    "TZ_SOURCES",
    "TZ_SOURCE_UTC",
    "TZ_EMBEDDED_OFFSET",
    "TZ_EVIDENCE_CONFIG",
    "TZ_ANALYST",
    "TZ_ASSUMED_UTC",
    "HOST_SOURCES",
    "HOST_GIVEN",
    "HOST_LOG",
    "HOST_OS",
    "HOST_FOLDER",
    "HOST_UNKNOWN",
    "UNKNOWN_HOST",
    "RowBuilder",
    "event_hash",
    "empty_table",
    "conform",
    "iso_ns",
    "PANDAS_DTYPES",
    "to_pandas",
    "PLAUSIBLE_FROM_NS",
    "FUTURE_SLACK_NS",
    "TIME_FLAGS",
    "time_flags",
    "flag_times",
    "MESSAGE_MAX",
    "cap_messages",
]

SCHEMA_VERSION = 1

# How a row's time zone was decided (column ``tz_source``).
TZ_SOURCE_UTC = "source_utc"  # the source stores UTC (EVTX FILETIME, utmp epoch...)
TZ_EMBEDDED_OFFSET = "embedded_offset"  # the line carried its own offset (RFC 5424, ISO 8601 +05:30)
TZ_EVIDENCE_CONFIG = "evidence_config"  # the evidence's OS configuration (/etc/timezone, registry)
TZ_ANALYST = "analyst"  # the analyst's --tz
TZ_ASSUMED_UTC = "assumed_utc"  # nothing was known; UTC assumed (flagged, never silent)
TZ_SOURCES = (TZ_SOURCE_UTC, TZ_EMBEDDED_OFFSET, TZ_EVIDENCE_CONFIG, TZ_ANALYST, TZ_ASSUMED_UTC)

# How a row's host was decided (``attrs.host_source``), first that applies wins: see collectors/hosts.py.
HOST_GIVEN = "given"  # the analyst's --host for the evidence item (Case.collect(host=...))
HOST_LOG = "log"  # the record names it (syslog's host field, EVTX Computer, journal _HOSTNAME, auditd node...)
HOST_OS = "os"  # the OS tree or image states it (/etc/hostname, the registry's ComputerName)
HOST_FOLDER = "folder"  # a folder of the evidence item named like a host (collectors.hosts.folder_host)
HOST_UNKNOWN = "unknown"  # none of these: the host column is null
HOST_SOURCES = (HOST_GIVEN, HOST_LOG, HOST_OS, HOST_FOLDER, HOST_UNKNOWN)
# What every output (story, hunt, exports, report, plots, info) shows for a row whose host is unknown (null):
# never None, NaN or an empty cell.
UNKNOWN_HOST = "(unknown host)"

_S = pa.string()
_I = pa.int32()

# (name, type, nullable, description) in column order.
COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("timestamp", pa.timestamp("ns", tz="UTC"), False, "When it happened, UTC, nanoseconds (EVTX keeps its 100 ns)."),
    ("timestamp_desc", _S, False, 'What the time means: "Event Logged", "Content Modification Time", "Last Login"...'),
    ("host", _S, True, "Host the event belongs to (EVTX: the record's Computer); how it was decided in attrs.host_source "
                       "(" + ", ".join(HOST_SOURCES) + "); null when unknown, shown as " + UNKNOWN_HOST + "."),
    ("source", _S, False, "Short family: EVTX, SYSLOG, WEB, FILE, REG..."),
    ("artifact", _S, False, "Precise artifact type, e.g. evtx:Security, evtx:Microsoft-Windows-Sysmon/Operational."),
    ("event_id", _I, True, "Numeric event id where the source has one (EVTX EventID)."),
    ("channel", _S, True, "Log channel (EVTX Channel)."),
    ("provider", _S, True, "Provider / program that wrote the event."),
    ("user", _S, True, "Acting account, DOMAIN\\name or name (subject of the action)."),
    ("target_user", _S, True, "Account acted upon (logon target, created or changed account...)."),
    ("logon_type", _I, True, "Windows logon type (2 interactive, 3 network, 10 remote interactive...)."),
    ("src_ip", _S, True, "Source network address."),
    ("src_host", _S, True, "Source workstation / host name as reported by the event."),
    ("dst_ip", _S, True, "Destination network address."),
    ("dst_port", _I, True, "Destination port."),
    ("process", _S, True, "Process image (path or name) that acted."),
    ("parent_process", _S, True, "Parent process image."),
    ("command_line", _S, True, "Command line, script block or shell command."),
    ("path", _S, True, "File, registry key or service image path the event is about."),
    ("service_name", _S, True, "Service, scheduled task or share name the event is about."),
    ("message", _S, False, "One readable line, never null."),
    ("attrs", _S, False, "Every source field, losslessly, as a JSON object (EVTX: the whole record as {\"Event\": {System, EventData/UserData}}, plus \"Record\" notes on its time when needed)."),
    ("tags", pa.list_(_S), False, "Detection tags (empty list when none)."),
    ("tz_source", _S, False, "How this row's zone was decided: " + ", ".join(TZ_SOURCES) + "."),
    ("evidence_id", _S, False, "Id of the evidence item (content-derived, see the custody log)."),
    ("evidence_path", _S, False, "Path of the artifact inside the evidence item."),
    ("record_ref", _S, False, "Where in the artifact: EVTX 'record=N offset=0xO', text 'line=N'."),
    ("parser", _S, False, "Parser name and version, e.g. evtx-rs/0.14.0, evtx-rs/0.14.0+chunk-recovery, dissect.eventlog/3.11."),
    ("event_hash", _S, False, "Stable 128-bit hash (hex) of the event's identity, for deduplication."),
)

SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable) for name, typ, nullable, _ in COLUMNS],
    metadata={b"forensics.schema_version": str(SCHEMA_VERSION).encode()},
)

_NAMES = tuple(c[0] for c in COLUMNS)

# pandas' nullable dtype of each integer column (derived from COLUMNS): an event id stays 4624, never 4624.0,
# and a row without one holds <NA>, under pandas 2.2 and 3.x alike.
_PANDAS_INT = {pa.int8(): "Int8", pa.int16(): "Int16", pa.int32(): "Int32", pa.int64(): "Int64",
               pa.uint8(): "UInt8", pa.uint16(): "UInt16", pa.uint32(): "UInt32", pa.uint64(): "UInt64"}
PANDAS_DTYPES: dict[str, str] = {name: _PANDAS_INT[typ] for name, typ, _, _ in COLUMNS if typ in _PANDAS_INT}


def event_hash(*parts: Any) -> str:
    """Stable hash of an event's identity: the same parts give the same hex string forever.

    SHA-256 of the parts joined by U+001F (None as the empty string), truncated to 128 bits
    (32 hex characters).  Collectors on hot paths may build the same key inline.
    """
    key = "\x1f".join(["" if p is None else p if p.__class__ is str else str(p) for p in parts])
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


_EPOCH = _dt.datetime(1970, 1, 1)
# What a timestamp[ns] can hold (years 1677..2262; the lowest int64 is Arrow's and pandas' null): a time outside
# is left out of the timeline by the collector that reads it, with a counted warning (kept in attrs where it has some)
NS_MIN, NS_MAX = -(2**63) + 1, 2**63 - 1


def iso_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC with all nine fractional digits."""
    sec, rem = divmod(int(ns), 1_000_000_000)
    return (_EPOCH + _dt.timedelta(seconds=sec)).isoformat() + f".{rem:09d}Z"


# --- implausible times: the one definition ----------------------------------------------------------------
# A time before 1990 is a read error (a zero value, a wrong epoch, a DOS date of 0), one later than now plus a day
# is in the future (a skewed clock within a day stays in); a time within a day of the Unix epoch is its zero value
# (read in any zone).  Such rows are kept, with ``attrs.time_flag`` naming why (flag_times, at collection), and
# left out of figures' time axes (forensics.plots, with the same bounds).
PLAUSIBLE_FROM_NS = 631_152_000 * 1_000_000_000  # 1990-01-01T00:00:00Z
FUTURE_SLACK_NS = 86_400 * 1_000_000_000  # one day
_DAY_NS = 86_400 * 1_000_000_000
TIME_FLAGS = ("epoch", "before_1990", "future")


def _flag_codes(timestamps: pa.Array | pa.ChunkedArray, now_ns: int | None) -> Any:
    """Per time: 0 plausible, else 1 + the index of its flag in TIME_FLAGS (a NumPy int8 array)."""
    import time

    import numpy as np

    now_ns = time.time_ns() if now_ns is None else now_ns
    a = timestamps.combine_chunks() if isinstance(timestamps, pa.ChunkedArray) else timestamps
    ns = a.cast(pa.int64()).fill_null(PLAUSIBLE_FROM_NS).to_numpy(zero_copy_only=False)
    codes = np.zeros(len(ns), dtype=np.int8)
    codes[ns < PLAUSIBLE_FROM_NS] = 2
    codes[(ns > -_DAY_NS) & (ns < _DAY_NS)] = 1
    codes[ns > now_ns + FUTURE_SLACK_NS] = 3
    return codes


def time_flags(timestamps: pa.Array | pa.ChunkedArray, now_ns: int | None = None) -> list[str | None]:
    """The ``time_flag`` of each time (UTC timestamps or int64 nanoseconds): "epoch" (within a day of
    1970-01-01T00:00Z), "before_1990", "future" (later than ``now_ns``, default now, plus a day), else None."""
    names = (None, *TIME_FLAGS)
    return [names[c] for c in _flag_codes(timestamps, now_ns).tolist()]


def _has_key(doc: str, key: str) -> bool:
    import json

    try:
        return key in json.loads(doc)
    except (ValueError, TypeError):
        return False


def flag_times(table: pa.Table, now_ns: int | None = None) -> tuple[pa.Table, pa.Array | None]:
    """``table`` with ``"time_flag"`` put first in the ``attrs`` of each row whose time is implausible (see
    :func:`time_flags`; a row whose attrs already hold one keeps it), and the flag of every row (a string array,
    null where plausible; None when no row is flagged)."""
    import numpy as np
    import pyarrow.compute as pc

    codes = _flag_codes(table.column("timestamp"), now_ns)
    rows = np.flatnonzero(codes)
    if not len(rows):
        return table, None
    names = (None, *TIME_FLAGS)
    flags = pa.array([names[c] for c in codes.tolist()], pa.string())
    attrs = table.column("attrs").combine_chunks()
    new = []
    for i in rows.tolist():
        a, f = attrs[i].as_py(), names[codes[i]]
        if '"time_flag"' in a and _has_key(a, "time_flag") or not a.startswith("{"):
            new.append(a)
        else:
            new.append(f'{{"time_flag":"{f}"' + ("," + a[1:] if a.strip() != "{}" else "}"))
    attrs = pc.replace_with_mask(attrs, pa.array(codes > 0), pa.array(new, pa.string()))
    return table.set_column(table.schema.get_field_index("attrs"), table.schema.field("attrs"), attrs), flags


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def to_pandas(table: pa.Table):
    """An Arrow table of timeline rows (any subset of the columns, plus computed ones) as a pandas DataFrame:
    the schema's integer columns as nullable integers (:data:`PANDAS_DTYPES`: ``Int32``), every time with a
    zone as UTC (``datetime64[ns, UTC]``, whatever zone DuckDB or a file labelled it with), text as pandas'
    default string dtype.  Columns the schema does not know keep pyarrow's default conversion."""
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.tz is not None and f.type.tz != "UTC":
            f = f.with_type(pa.timestamp(f.type.unit, tz="UTC"))  # the same instants, labelled UTC
        fields.append(f)
    table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    df = table.to_pandas()
    for i, f in enumerate(table.schema):
        if f.name in PANDAS_DTYPES and f.type in _PANDAS_INT:  # a computed column keeps its own width
            import pandas as pd

            want = pd.api.types.pandas_dtype(_PANDAS_INT[f.type])
            df.isetitem(i, table.column(i).to_pandas(types_mapper=lambda _t, want=want: want).set_axis(df.index))
    return df


def conform(table: pa.Table) -> pa.Table:
    """Return ``table`` with exactly SCHEMA's columns, order and types, or raise ValueError."""
    if table.schema.equals(SCHEMA, check_metadata=False):
        return table.replace_schema_metadata(SCHEMA.metadata)
    missing = [n for n in _NAMES if n not in table.column_names]
    extra = [n for n in table.column_names if n not in _NAMES]
    if missing or extra:
        raise ValueError(f"table does not match the timeline schema: missing {missing}, unexpected {extra}")
    return table.select(list(_NAMES)).cast(SCHEMA)


_INT32 = (-(2**31), 2**31 - 1)


def _coerce(v: Any, typ: pa.DataType) -> Any:
    if v is None:
        return None
    if pa.types.is_string(typ):
        return v if isinstance(v, str) else str(v)
    if pa.types.is_int32(typ):
        try:
            i = int(v)
        except (TypeError, ValueError):
            return None
        return i if _INT32[0] <= i <= _INT32[1] else None  # out of range: the raw value stays in attrs
    return v


def _array(values: Sequence, typ: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        # Slow path only for batches holding an odd value (an int where text was expected, a 64-bit id...).
        return pa.array([_coerce(v, typ) for v in values], type=typ)


# --- the message cap: the one definition ---------------------------------------------------------------------
MESSAGE_MAX = 400  # characters of the readable ``message`` column; the whole text stays in ``attrs``


def cap_messages(data: pa.Table | pa.Array | pa.ChunkedArray) -> Any:
    """``data`` (a timeline table, or its message column) with every message longer than :data:`MESSAGE_MAX`
    characters cut to ``MESSAGE_MAX - 1`` and an ellipsis.  :class:`RowBuilder` applies it to the rows it
    builds; a collector that builds its table column-wise applies it to that table (and the case to every
    table it writes), so that one huge message (a 32 MB line) cannot make each query and export of the case
    run out of memory."""
    import pyarrow.compute as pc

    col = data.column("message") if isinstance(data, pa.Table) else data
    if not len(col):
        return data
    lens = pc.utf8_length(col)
    longest = pc.max(lens).as_py()
    if longest is None or longest <= MESSAGE_MAX:
        return data
    cut = pc.if_else(pc.greater(lens, MESSAGE_MAX),
                     pc.binary_join_element_wise(pc.utf8_slice_codeunits(col, 0, MESSAGE_MAX - 1), "…", ""), col)
    if not isinstance(data, pa.Table):
        return cut
    i = data.schema.get_field_index("message")
    return data.set_column(i, data.schema.field(i), cut)


class RowBuilder:
    """Accumulates rows and turns them into one Arrow table per batch.

    Collectors append plain values (``timestamp`` as int nanoseconds since the
    epoch, UTC), either by name with :meth:`add` or, on hot paths, as a tuple
    in :data:`COLUMNS` order with :meth:`append`; the conversion to Arrow
    happens once per batch, column by column, not per row.
    """

    __slots__ = ("_rows",)
    names = _NAMES

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def add(self, **row: Any) -> None:
        unknown = row.keys() - set(_NAMES)
        if unknown:
            raise ValueError(f"unknown timeline columns {sorted(unknown)}")
        self._rows.append(tuple(row.get(n) for n in _NAMES))

    def append(self, row: tuple) -> None:
        """Hot path: ``row`` holds one value per column, in COLUMNS order."""
        self._rows.append(row)

    def __len__(self) -> int:
        return len(self._rows)

    def to_table(self) -> pa.Table:
        rows, self._rows = self._rows, []
        if not rows:
            return empty_table()
        cols = list(zip(*rows))
        if len(cols) != len(_NAMES) or any(len(r) != len(_NAMES) for r in (rows[0], rows[-1])):
            raise ValueError(f"rows must have {len(_NAMES)} values")
        arrays = [_array(col, typ) for col, (_, typ, _, _) in zip(cols, COLUMNS)]
        table = pa.Table.from_arrays(arrays, schema=SCHEMA)
        nulls = [name for name, _, nullable, _ in COLUMNS if not nullable and table.column(name).null_count]
        if nulls:
            raise ValueError(f"null values in non-nullable columns {nulls}")
        return cap_messages(table)
