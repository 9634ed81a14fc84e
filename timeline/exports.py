"""Writers for the files an analyst hands on: Timesketch JSONL/CSV, CSV, JSON Lines, XLSX, Parquet.

Every writer takes an iterable of Arrow record batches with exactly :data:`timeline.schema.SCHEMA`'s
columns, in the order they should appear (callers stream them from DuckDB, sorted by time), and
writes them one batch at a time: memory stays bounded by the batch size, whatever the row count.

Times.  ``timestamp`` (UTC) and ``local_time`` (the zone given, e.g. the case's) are written as
ISO 8601 text with all nine fractional digits and the offset (``2022-11-23T07:00:00.123456789+05:30``),
except in Parquet, which keeps the nanosecond timestamp column itself.

Timesketch (JSONL and CSV).  Timesketch's mandatory fields come first: ``message``, ``datetime``
(the UTC time, ISO 8601 as above, nanoseconds kept), ``timestamp_desc``, then ``timestamp`` in
Timesketch's convention (integer microseconds since the epoch, floored), then ``local_time`` and the
rest of our columns; ``tags`` is written as Timesketch's ``tag`` (a list).  JSONL also carries the
event's own fields (``attrs``) as top-level fields named by family (``source``) and path:
``evtx_TargetImage`` (EVTX EventData/UserData), ``evtx_System_EventRecordID``, ``web_status``,
``login_exit_termination``...  Their values are text: OpenSearch types a field on first sight, and a
field that is a number in one event and text in another (EVTX ``ProcessId``: ``1234`` in Sysmon,
``0x2e8`` in Security 4624) would make Timesketch reject the later events.  At most
:data:`TIMESKETCH_MAX_FIELDS` distinct names are written: Timesketch maps each text field three times
(text, keyword, wildcard) against OpenSearch's default limit of 1,000 mapped fields per index.  The
names admitted are the caller's ranking first (the most frequent in a sample of the rows,
:func:`rank_fields`), then the first seen; the names past the cap stay in ``attrs`` only, and are counted
in the result.

Lists.  ``tags`` is a JSON array in JSON Lines and a JSON array as text (``["a", "b"]``) in CSV and XLSX.

Excel.  ``local_time`` and ``timestamp`` are real Excel datetimes (Excel has no zones: the local time
is the wall clock in the case's zone, UTC the UTC wall clock, the zone in the header; Excel holds
milliseconds, so the time is floored to the millisecond and ``timestamp_iso`` keeps the exact UTC
text with nine digits); times Excel cannot hold (before 1900-03-01) are written as that ISO text.
Numbers (``event_id``, ``logon_type``, ``dst_port``) are numbers; a missing value (None, NaN, NaT) is
an empty cell.

Spreadsheet safety.  A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return would be read as a formula by a spreadsheet (CSV injection).  In CSV and XLSX such text is
written with a leading single quote (``'=HYPERLINK(...)``), and XLSX cells are never formulas (text
is written as text).  JSON Lines and Parquet hold the text unchanged.  Excel also limits a cell
to 32,767 characters and a sheet to 1,048,576 rows: longer text is cut (and counted in the result),
more rows continue on the next sheet (``events``, ``events 2``...).
"""

from __future__ import annotations

import datetime as _dt
import gc
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from timeline.errors import OutputError
from timeline.schema import SCHEMA, conform

__all__ = [
    "FORMATS",
    "XLSX_MAX_ROWS",
    "XLSX_MAX_CELL",
    "TIMESKETCH_MAX_FIELDS",
    "TIMESKETCH_SAMPLE_ROWS",
    "ExportResult",
    "neutralise",
    "output_columns",
    "rank_fields",
    "sheet_from_frame",
    "timesketch_fields",
    "write_export",
]

log = logging.getLogger(__name__)

FORMATS = ("timesketch-jsonl", "timesketch-csv", "csv", "jsonl", "xlsx", "parquet")
XLSX_MAX_ROWS = 1_048_575  # Excel's 1,048,576 rows per sheet, less the header
XLSX_MAX_CELL = 32_767  # Excel's longest cell text
_PY_ROWS = 8192  # rows turned into Python objects at a time (JSON Lines, XLSX)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_RE = r"^[=+\-@\t\r]"
_TIMESKETCH_LEAD = ["message", "datetime", "timestamp_desc", "timestamp"]
# Timesketch maps every text field as text + keyword + wildcard (its data/generic.mappings), and OpenSearch
# refuses more than 1,000 mapped fields per index by default: ~31 columns of ours and 250 event fields stay
# under it (3 x 281 = 843).
TIMESKETCH_MAX_FIELDS = 250
TIMESKETCH_SAMPLE_ROWS = 5000  # rows a caller ranks field names on (rank_fields; on the EVTX corpus 2,000 rank as well)
# Field names Timesketch or OpenSearch give a meaning to: an event field never takes one of them.
_TIMESKETCH_RESERVED = frozenset({"message", "datetime", "timestamp", "timestamp_desc", "tag", "label",
                                  "timesketch_label", "__ts_timeline_id", "_id", "_index", "_source", "_type"})
_EXCEL_FIRST_NS = -2_203_891_200_000_000_000  # 1900-03-01T00:00: Excel's serials are off before it (its 1900-02-29)
_EXCEL_EPOCH_SERIAL = 25_569  # 1970-01-01 as an Excel serial day (days since 1899-12-30)
_EXCEL_DATE_FORMAT = "yyyy-mm-dd hh:mm:ss.000"
_EPOCH = _dt.datetime(1970, 1, 1)
_EXCEL_FIRST = _dt.datetime(1900, 3, 1)


@dataclass
class ExportResult:
    rows: int = 0
    sheets: list[str] = field(default_factory=list)  # XLSX: the event sheets written
    truncated_cells: int = 0  # XLSX: cells cut to Excel's 32,767 characters
    top_level_fields: int = 0  # Timesketch JSONL: distinct event-field names written as top-level fields
    fields_left_in_attrs: dict[str, int] = field(default_factory=dict)  # ... names past the cap: rows holding each

    def details(self, fmt: str) -> dict[str, Any]:
        """What the custody entry records about this export beyond its row count."""
        if fmt == "xlsx":
            return {"sheets": self.sheets, "truncated_cells": self.truncated_cells}
        if fmt == "timesketch-jsonl":
            return {"top_level_fields": self.top_level_fields, "fields_left_in_attrs": self.fields_left_in_attrs}
        return {}


def neutralise(value: Any) -> Any:
    """Text a spreadsheet would run as a formula, made inert with a leading single quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _neutralise_array(arr: pa.Array) -> pa.Array:
    if not pa.types.is_string(arr.type) or len(arr) == 0:
        return arr
    risky = pc.fill_null(pc.match_substring_regex(arr, _FORMULA_RE), False)
    if not pc.any(risky).as_py():
        return arr
    return pc.if_else(risky, pc.binary_join_element_wise("'", arr, ""), arr)


def _offset(seconds: int) -> str:
    sign, seconds = ("-" if seconds < 0 else "+"), abs(seconds)
    hm = f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"
    return hm + (f":{seconds % 60:02d}" if seconds % 60 else "")  # local mean time (before 1900) has seconds


def _wall(ts: pa.Array, tz: str) -> tuple[pa.Array, pa.Array]:
    """(UTC timestamps, their naive wall clock in zone ``tz``), nanoseconds."""
    utc = ts.cast(pa.timestamp("ns", tz="UTC"))
    return utc, pc.local_timestamp(utc.cast(pa.timestamp("ns", tz=tz)))


def _ns(arr: pa.Array) -> np.ndarray:
    return arr.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _iso(ts: pa.Array, tz: str) -> pa.Array:
    """ISO 8601 text of UTC timestamps in zone ``tz``: nine fractional digits and the offset (+05:30).

    Arrow's cast of a naive nanosecond timestamp to text is ~15x faster than its strftime: the wall
    clock is cast, and the offset (wall clock - UTC, per row: DST) is appended from a small table.
    """
    utc, wall = _wall(ts, tz)
    text = pc.replace_substring(wall.cast(pa.string()), " ", "T", max_replacements=1)
    seconds = (_ns(wall) - _ns(utc)) // 1_000_000_000
    values, index = np.unique(seconds, return_inverse=True)
    offsets = pa.array([_offset(int(v)) for v in values], pa.string())  # typed: no rows, no values
    return pc.binary_join_element_wise(text, pc.take(offsets, pa.array(index.ravel())), "")


def _serial(ms: Any) -> Any:
    """Excel serial datetime (days since 1899-12-30) of a naive wall clock given in milliseconds since 1970."""
    return ms / 86_400_000 + _EXCEL_EPOCH_SERIAL


def _excel_times(ts: pa.Array, tz: str) -> list[Any]:
    """Excel serial datetimes of the wall clock of ``ts`` in zone ``tz``, floored to the millisecond Excel
    holds; a time Excel cannot hold (before 1900-03-01) is its ISO text instead."""
    ns = _ns(_wall(ts, tz)[1])
    serial = _serial(np.floor_divide(ns, 1_000_000)).tolist()
    bad = np.flatnonzero(ns < _EXCEL_FIRST_NS)
    if len(bad):
        text = _iso(ts, tz).to_pylist()
        for i in bad.tolist():
            serial[i] = text[i]
    return serial


def _tags_text(arr: pa.Array) -> pa.Array:
    return pa.array([orjson.dumps(t).decode() for t in arr.to_pylist()], pa.string())


def _micros(ts: pa.Array) -> pa.Array:
    return pa.array(np.floor_divide(_ns(ts), 1000))


def _columns(batch: pa.RecordBatch, fmt: str, tz: str) -> dict[str, Any]:
    """The output columns of one batch, in output order, as Arrow arrays (XLSX's times: Python lists)."""
    ts = batch.column("timestamp")
    utc = _iso(ts, "UTC")
    rest = {n: batch.column(n) for n in SCHEMA.names if n != "timestamp"}
    if fmt != "jsonl" and fmt != "timesketch-jsonl":
        rest["tags"] = _tags_text(rest["tags"])
    if fmt.startswith("timesketch"):
        rest = {("tag" if k == "tags" else k): v for k, v in rest.items()}  # Timesketch's name for them
        out = {"message": rest.pop("message"), "datetime": utc, "timestamp_desc": rest.pop("timestamp_desc"),
               "timestamp": _micros(ts), "local_time": _iso(ts, tz)}
        out.update(rest)
    elif fmt == "xlsx":
        names = output_columns("xlsx", tz)
        out = {names[0]: _excel_times(ts, tz), names[1]: _excel_times(ts, "UTC"), "timestamp_iso": utc, **rest}
    else:
        out = {"timestamp": utc, "local_time": _iso(ts, tz), **rest}
    if fmt in ("csv", "timesketch-csv", "xlsx"):
        out = {k: v if isinstance(v, list) else _neutralise_array(v) for k, v in out.items()}
    return out


def output_columns(fmt: str, tz: str = "UTC") -> list[str]:
    """The column names a text format writes, in order (XLSX: with ``tz``, the zone of ``local_time``).
    Timesketch JSONL adds the event's own fields after them (:func:`timesketch_fields`)."""
    names = [n for n in SCHEMA.names if n != "timestamp"]
    if fmt.startswith("timesketch"):
        rest = [n for n in names if n not in ("message", "timestamp_desc")]
        return _TIMESKETCH_LEAD + ["local_time"] + ["tag" if n == "tags" else n for n in rest]
    if fmt == "xlsx":
        return [f"local_time ({tz})", "timestamp (UTC)", "timestamp_iso"] + names
    if fmt == "parquet":
        return list(SCHEMA.names)
    return ["timestamp", "local_time"] + names


# --- Timesketch: the event's own fields as top-level fields ----------------------------------------

_TIMESKETCH_TAKEN = _TIMESKETCH_RESERVED.union(output_columns("timesketch-jsonl"))
_NAME_BAD = re.compile(r"[^\w-]+")
_FIELD_DEPTH = 16  # nesting flattened into names at most; deeper, the rest of the object is one JSON text field
_FIELD_NAME = 200  # characters of a field name at most


_KEYS: dict[tuple[str, str], str] = {}  # (parent name, key) -> field name: the same few hundred, millions of times


def _key(name: str, k: str) -> str:
    key = _KEYS.get((name, k))
    if key is None:
        if len(_KEYS) > 100_000:  # hostile input with endless distinct names: the cache stays bounded
            _KEYS.clear()
        key = _KEYS[(name, k)] = f"{name}_{_NAME_BAD.sub('_', k)}"[:_FIELD_NAME]
    return key


def _put(value: Any, name: str, out: dict[str, str], depth: int = 0) -> None:
    """``value`` under ``name`` as text fields: nested names joined with ``_``; XML's ``#attributes`` and
    ``#text`` (EVTX) belong to their element; ``xmlns`` is left out; lists are JSON text; when two paths
    clean to one name, the first keeps it (both stay in attrs)."""
    t = type(value)
    if t is dict and depth < _FIELD_DEPTH:
        for k, v in value.items():
            if k == "#attributes" or k == "#text":
                _put(v, name, out, depth + 1)
            elif k != "xmlns" and not k.startswith("xmlns:"):
                _put(v, _key(name, k), out, depth + 1)
    elif value is None or name in out:
        return
    elif t is str:
        out[name] = value
    elif t is bool:
        out[name] = "true" if value else "false"
    elif t is int or t is float:
        out[name] = str(value)
    else:
        try:
            out[name] = orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # nested deeper than orjson writes: the value stays in attrs only
            pass


def timesketch_fields(source: str | None, attrs: str | None) -> dict[str, str]:
    """An event's own fields (its ``attrs``) as Timesketch top-level fields: ``<family>_<path>``, the family
    being ``source`` in lower case.  EVTX: EventData and UserData fields by name (``evtx_TargetImage``;
    UserData's one wrapper element left out), System fields under ``evtx_System_`` (``evtx_System_Execution_ProcessID``);
    ``host_source`` (how the row's host was decided) under its own name.
    Values are text; a name Timesketch reserves gets a trailing ``_``."""
    if not attrs:
        return {}
    try:
        doc = orjson.loads(attrs)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(doc, dict):
        return {}
    family = _NAME_BAD.sub("_", (source or "attrs").lower())
    out: dict[str, str] = {}
    if isinstance(doc.get("host_source"), str):  # how the host was decided: one field for every family
        out["host_source"] = doc["host_source"]
        doc = {k: v for k, v in doc.items() if k != "host_source"}
    event = doc.get("Event") if family == "evtx" else None
    if isinstance(event, dict):
        _put(event.get("EventData"), family, out)
        user = event.get("UserData")
        if isinstance(user, dict):
            wrappers = [k for k in user if k != "#attributes"]
            _put(user[wrappers[0]] if len(wrappers) == 1 else user, family, out)
        for k, v in event.items():
            if k not in ("EventData", "UserData", "#attributes"):
                _put(v, _key(family, k), out)
        doc = {k: v for k, v in doc.items() if k != "Event"}
    _put(doc, family, out)
    return {(k + "_" if k in _TIMESKETCH_TAKEN else k): v for k, v in out.items()}


def rank_fields(sample: Iterable[tuple[str | None, str | None]]) -> list[str]:
    """The Timesketch field names of a sample of rows (``(source, attrs)`` pairs), most frequent first (ties
    by name): the order in which :func:`write_export` admits names under its cap."""
    counts: dict[str, int] = {}
    for source, attrs in sample:
        for k in timesketch_fields(source, attrs):
            counts[k] = counts.get(k, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))


# --- writers ----------------------------------------------------------------------------------


def _slices(batch: pa.RecordBatch, rows: int = _PY_ROWS) -> Iterable[pa.RecordBatch]:
    for off in range(0, batch.num_rows, rows):
        yield batch.slice(off, rows)


def _write_jsonl(batches: Iterable[pa.RecordBatch], fh, fmt: str, tz: str,
                 max_fields: int = TIMESKETCH_MAX_FIELDS, first: Sequence[str] = ()) -> ExportResult:
    res = ExportResult()
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    timesketch = fmt == "timesketch-jsonl"  # Timesketch: an absent field is an empty one (smaller files)
    admitted: set[str] = set(list(dict.fromkeys(first))[:max_fields])  # the caller's ranking, then first seen
    left = res.fields_left_in_attrs
    written: set[str] = set()
    for batch in batches:
        for part in _slices(batch):
            cols = _columns(part, fmt, tz)
            names = list(cols)
            values = [c.to_pylist() for c in cols.values()]
            if timesketch:
                lines = []
                i_source, i_attrs = names.index("source"), names.index("attrs")
                for row in zip(*values):
                    doc = {k: v for k, v in zip(names, row) if v is not None}
                    for k, v in timesketch_fields(row[i_source], row[i_attrs]).items():
                        if k not in admitted and len(admitted) < max_fields:
                            admitted.add(k)
                        if k in admitted:
                            doc[k] = v
                            written.add(k)
                        else:
                            left[k] = left.get(k, 0) + 1
                    lines.append(dumps(doc, option=opt))
            else:
                lines = [dumps(dict(zip(names, row)), option=opt) for row in zip(*values)]
            fh.write(b"".join(lines))
        res.rows += batch.num_rows
    res.top_level_fields = len(written)
    if left:
        log.warning("Timesketch export: %d field name(s) past the cap of %d left in attrs only: %s", len(left),
                    max_fields, ", ".join(sorted(left)[:20]))
    return res


def _write_csv(batches: Iterable[pa.RecordBatch], fh, fmt: str, tz: str) -> ExportResult:
    import pyarrow.csv as pcsv

    res = ExportResult()
    names = output_columns(fmt)
    if fmt == "csv":
        fh.write("\ufeff".encode())  # a BOM: Excel then reads the file as UTF-8 (Bengali, Hindi...)
    writer = None
    for batch in batches:
        cols = _columns(batch, fmt, tz)
        table = pa.table(cols)
        if writer is None:
            writer = pcsv.CSVWriter(fh, table.schema, write_options=pcsv.WriteOptions(include_header=True))
        writer.write_table(table)
        res.rows += batch.num_rows
    if writer is None:  # no rows: the header alone
        fh.write((",".join(f'"{n}"' for n in names) + "\n").encode())
    else:
        writer.close()
    return res


def _write_parquet(batches: Iterable[pa.RecordBatch], path: Path) -> ExportResult:
    import pyarrow.parquet as pq

    from timeline.store import ROW_GROUP

    res = ExportResult()
    with pq.ParquetWriter(path, SCHEMA, compression="zstd", write_statistics=True,
                          use_dictionary=["host", "source", "artifact", "channel", "provider", "timestamp_desc",
                                          "tz_source", "evidence_id", "evidence_path", "parser"]) as w:
        for batch in batches:
            w.write_table(pa.Table.from_batches([batch]), row_group_size=ROW_GROUP)
            res.rows += batch.num_rows
    return res


def _missing(v: Any) -> bool:
    """None, NaN, NaT or pandas' NA (pandas 2 and 3 spell a missing value any of these ways)."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ in ("NaTType", "NAType")


def sheet_from_frame(title: str, frame: Any, tz: str) -> tuple[str, list[str], list[list[Any]]]:
    """A DataFrame (the story...) as an XLSX sheet ``(title, header, rows)`` for :func:`write_export`, whatever
    its columns: zone-aware times as Excel datetimes (``local_time`` in ``tz``, any other time in UTC, the
    zone in the header; ``timestamp_iso`` after ``timestamp`` keeps its nanoseconds), numbers as numbers,
    missing values (None, NaN, NaT, NA: pandas 2 and 3 alike) as empty cells, the rest as text."""
    import pandas as pd

    header: list[str] = []
    columns: list[list[Any]] = []
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            zone = tz if name == "local_time" else "UTC"
            wall = col.dt.tz_convert(zone).dt.tz_localize(None).dt.floor("ms")
            header.append(f"{name} ({zone})")
            columns.append([None if _missing(t) else t.to_pydatetime() for t in wall])
            if name == "timestamp":  # the exact time, nine digits (Excel's datetime holds milliseconds)
                arr = pa.array(col.dt.tz_convert("UTC"), pa.timestamp("ns", tz="UTC"))
                iso = _iso(pc.fill_null(arr, pa.scalar(0, arr.type)), "UTC")
                header.append("timestamp_iso")
                columns.append(pc.if_else(arr.is_valid(), iso, pa.scalar(None, pa.string())).to_pylist())
        else:
            header.append(str(name))
            columns.append([None if _missing(v) else v for v in col.astype(object).tolist()])
    return title, header, [list(r) for r in zip(*columns)]


def _write_xlsx(batches: Iterable[pa.RecordBatch], path: Path, tz: str, sheets: Sequence[tuple[str, list[str], list[list[Any]]]],
                max_rows_per_sheet: int) -> ExportResult:
    try:
        import xlsxwriter
        from xlsxwriter.exceptions import XlsxWriterException
    except ImportError as exc:  # pragma: no cover - a dependency
        raise OutputError("XLSX export needs xlsxwriter: pip install xlsxwriter") from exc
    if max_rows_per_sheet < 1 or max_rows_per_sheet > XLSX_MAX_ROWS:
        raise OutputError(f"max_rows_per_sheet must be 1..{XLSX_MAX_ROWS}")
    res = ExportResult()
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                         "strings_to_urls": False, "strings_to_numbers": False})
    bold = wb.add_format({"bold": True, "bg_color": "#DDDDDD"})
    when = wb.add_format({"num_format": _EXCEL_DATE_FORMAT})
    names = output_columns("xlsx", tz)
    widths = {names[0]: 24, names[1]: 24, "timestamp_iso": 36, "message": 80, "attrs": 60, "host": 24, "artifact": 28}
    ws, row = None, 0

    def cell(ws, r: int, c: int, v: Any, date: bool = False) -> None:
        if _missing(v):
            return
        if isinstance(v, str):
            v = neutralise(v)
            if len(v) > XLSX_MAX_CELL:
                v = v[:XLSX_MAX_CELL]
                res.truncated_cells += 1
            ws.write_string(r, c, v)
        elif isinstance(v, (bool, np.bool_)):
            ws.write_boolean(r, c, bool(v))
        elif isinstance(v, (int, float, np.integer, np.floating)):
            if math.isinf(v):
                ws.write_string(r, c, str(v))
            else:
                ws.write_number(r, c, v, when if date else None)
        elif isinstance(v, _dt.datetime) and v.tzinfo is None:  # a naive wall clock (sheets): Excel's kind
            if v < _EXCEL_FIRST:
                ws.write_string(r, c, v.isoformat())
            else:
                ws.write_number(r, c, _serial((v - _EPOCH) // _dt.timedelta(milliseconds=1)), when)
        else:  # anything else (an aware time: its ISO text, with its offset)
            cell(ws, r, c, v.isoformat() if isinstance(v, _dt.datetime) else str(v))

    def close_sheet() -> None:
        if ws is not None:
            ws.autofilter(0, 0, max(row, 1), len(names) - 1)

    def new_sheet():
        nonlocal ws, row
        close_sheet()
        name = "events" if not res.sheets else f"events {len(res.sheets) + 1}"
        ws = wb.add_worksheet(name)
        res.sheets.append(name)
        ws.freeze_panes(1, 0)
        for c, n in enumerate(names):
            ws.set_column(c, c, widths.get(n, 16))
            ws.write_string(0, c, n, bold)
        row = 0

    new_sheet()
    for batch in batches:
        for part in _slices(batch):
            cols = _columns(part, "xlsx", tz)
            for values in zip(*(c if isinstance(c, list) else c.to_pylist() for c in cols.values())):
                if row >= max_rows_per_sheet:
                    new_sheet()
                row += 1
                # the events' values are Arrow's: None, text (already made inert), int, or the two times
                for c, v in enumerate(values):
                    if v is None:
                        continue
                    if type(v) is str:
                        if len(v) > XLSX_MAX_CELL:
                            v = v[:XLSX_MAX_CELL]
                            res.truncated_cells += 1
                        ws.write_string(row, c, v)
                    else:
                        ws.write_number(row, c, v, when if c < 2 else None)
        res.rows += batch.num_rows
    close_sheet()
    for title, header, rows in sheets:
        s = wb.add_worksheet(title)
        s.freeze_panes(1, 0)
        for c, n in enumerate(header):
            s.write_string(0, c, n, bold)
            s.set_column(c, c, 24)
        for r, values in enumerate(rows, 1):
            for c, v in enumerate(values):
                cell(s, r, c, v)
        s.autofilter(0, 0, max(len(rows), 1), max(len(header) - 1, 0))
    try:
        wb.close()
    except XlsxWriterException as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
    return res


def _conformed(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
    for b in batches:
        if b.num_rows:
            yield from conform(pa.Table.from_batches([b])).to_batches()


def write_export(batches: Iterable[pa.RecordBatch], path: str | os.PathLike, fmt: str, tz: str = "UTC", *,
                 sheets: Sequence[tuple[str, list[str], list[list[Any]]]] = (),
                 max_rows_per_sheet: int = XLSX_MAX_ROWS, timesketch_max_fields: int = TIMESKETCH_MAX_FIELDS,
                 timesketch_fields_first: Sequence[str] = ()) -> ExportResult:
    """Write ``batches`` (timeline rows, SCHEMA's columns) to ``path`` in format ``fmt``.

    ``tz``: the zone of the ``local_time`` column.  ``sheets`` (XLSX only): more sheets after the
    events, each ``(title, header, rows)`` (the story, the custody log...).  ``max_rows_per_sheet``
    (XLSX): events per sheet before the next sheet starts.  ``timesketch_max_fields`` (Timesketch JSONL):
    distinct event-field names written as top-level fields; ``timesketch_fields_first``: the names to admit
    first (:func:`rank_fields` of a sample), the rest being admitted as first seen while the cap allows.
    """
    if fmt not in FORMATS:
        raise OutputError(f"unknown export format {fmt!r}; formats are: {', '.join(FORMATS)}")
    path = Path(path)
    rows = _conformed(batches)
    # The rows are acyclic (strings, numbers, lists freed by reference counting): the cycle collector
    # would only re-traverse each batch's millions of objects.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if fmt == "parquet":
            return _write_parquet(rows, path)
        if fmt == "xlsx":
            return _write_xlsx(rows, path, tz, sheets, max_rows_per_sheet)
        with open(path, "wb", buffering=1 << 20) as fh:
            if fmt.endswith("jsonl"):
                return _write_jsonl(rows, fh, fmt, tz, timesketch_max_fields, timesketch_fields_first)
            return _write_csv(rows, fh, fmt, tz)
    finally:
        if was_enabled:
            gc.enable()
