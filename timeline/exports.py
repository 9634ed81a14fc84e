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
rest of our columns.

Lists.  ``tags`` is a JSON array in JSON Lines and a JSON array as text (``["a", "b"]``) in CSV and XLSX.

Spreadsheet safety.  A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return would be read as a formula by a spreadsheet (CSV injection).  In CSV and XLSX such text is
written with a leading single quote (``'=HYPERLINK(...)``), and XLSX cells are always written as
text, never as formulas.  JSON Lines and Parquet hold the text unchanged.  Excel also limits a cell
to 32,767 characters and a sheet to 1,048,576 rows: longer text is cut (and counted in the result),
more rows continue on the next sheet (``events``, ``events 2``...).
"""

from __future__ import annotations

import gc
import logging
import os
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
    "ExportResult",
    "neutralise",
    "output_columns",
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


@dataclass
class ExportResult:
    rows: int = 0
    sheets: list[str] = field(default_factory=list)  # XLSX: the event sheets written
    truncated_cells: int = 0  # XLSX: cells cut to Excel's 32,767 characters


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


def _iso(ts: pa.Array, tz: str) -> pa.Array:
    """ISO 8601 text of UTC timestamps in zone ``tz``: nine fractional digits and the offset (+05:30).

    Arrow's cast of a naive nanosecond timestamp to text is ~15x faster than its strftime: the wall
    clock is cast, and the offset (wall clock - UTC, per row: DST) is appended from a small table.
    """
    utc = ts.cast(pa.timestamp("ns", tz="UTC"))
    wall = pc.local_timestamp(utc.cast(pa.timestamp("ns", tz=tz)))
    text = pc.replace_substring(wall.cast(pa.string()), " ", "T", max_replacements=1)
    seconds = (wall.cast(pa.int64()).to_numpy(zero_copy_only=False)
               - utc.cast(pa.int64()).to_numpy(zero_copy_only=False)) // 1_000_000_000
    values, index = np.unique(seconds, return_inverse=True)
    offsets = pa.array([_offset(int(v)) for v in values])
    return pc.binary_join_element_wise(text, pc.take(offsets, pa.array(index.ravel())), "")


def _tags_text(arr: pa.Array) -> pa.Array:
    return pa.array([orjson.dumps(t).decode() for t in arr.to_pylist()], pa.string())


def _micros(ts: pa.Array) -> pa.Array:
    ns = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return pa.array(np.floor_divide(ns, 1000))


def _columns(batch: pa.RecordBatch, fmt: str, tz: str) -> dict[str, pa.Array]:
    """The output columns of one batch, in output order, as Arrow arrays (text formats)."""
    ts = batch.column("timestamp")
    utc, local = _iso(ts, "UTC"), _iso(ts, tz)
    rest = {n: batch.column(n) for n in SCHEMA.names if n != "timestamp"}
    if fmt != "jsonl" and fmt != "timesketch-jsonl":
        rest["tags"] = _tags_text(rest["tags"])
    if fmt.startswith("timesketch"):
        out = {"message": rest.pop("message"), "datetime": utc, "timestamp_desc": rest.pop("timestamp_desc"),
               "timestamp": _micros(ts), "local_time": local}
        out.update(rest)
    elif fmt == "xlsx":
        out = {"local_time": local, "timestamp": utc, **rest}
    else:
        out = {"timestamp": utc, "local_time": local, **rest}
    if fmt in ("csv", "timesketch-csv", "xlsx"):
        out = {k: _neutralise_array(v) for k, v in out.items()}
    return out


def output_columns(fmt: str) -> list[str]:
    """The column names a text format writes, in order."""
    names = [n for n in SCHEMA.names if n != "timestamp"]
    if fmt.startswith("timesketch"):
        return _TIMESKETCH_LEAD + ["local_time"] + [n for n in names if n not in ("message", "timestamp_desc")]
    if fmt == "xlsx":
        return ["local_time", "timestamp"] + names
    if fmt == "parquet":
        return list(SCHEMA.names)
    return ["timestamp", "local_time"] + names


# --- writers ----------------------------------------------------------------------------------


def _slices(batch: pa.RecordBatch, rows: int = _PY_ROWS) -> Iterable[pa.RecordBatch]:
    for off in range(0, batch.num_rows, rows):
        yield batch.slice(off, rows)


def _write_jsonl(batches: Iterable[pa.RecordBatch], fh, fmt: str, tz: str) -> ExportResult:
    res = ExportResult()
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    skip_nulls = fmt == "timesketch-jsonl"  # Timesketch: an absent field is an empty one (smaller files)
    for batch in batches:
        for part in _slices(batch):
            cols = _columns(part, fmt, tz)
            names = list(cols)
            values = [c.to_pylist() for c in cols.values()]
            if skip_nulls:
                lines = [dumps({k: v for k, v in zip(names, row) if v is not None}, option=opt) for row in zip(*values)]
            else:
                lines = [dumps(dict(zip(names, row)), option=opt) for row in zip(*values)]
            fh.write(b"".join(lines))
        res.rows += batch.num_rows
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
    names = output_columns("xlsx")
    widths = {"local_time": 36, "timestamp": 36, "message": 80, "attrs": 60, "host": 24, "artifact": 28}
    ws, row = None, 0

    def cell(ws, r: int, c: int, v: Any) -> None:
        if v is None:
            return
        if isinstance(v, str):
            if len(v) > XLSX_MAX_CELL:
                v = v[:XLSX_MAX_CELL]
                res.truncated_cells += 1
            ws.write_string(r, c, v)
        else:
            ws.write_number(r, c, v)

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
            for values in zip(*(c.to_pylist() for c in cols.values())):
                if row >= max_rows_per_sheet:
                    new_sheet()
                row += 1
                for c, v in enumerate(values):
                    cell(ws, row, c, v)
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
                cell(s, r, c, neutralise(v))
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
                 max_rows_per_sheet: int = XLSX_MAX_ROWS) -> ExportResult:
    """Write ``batches`` (timeline rows, SCHEMA's columns) to ``path`` in format ``fmt``.

    ``tz``: the zone of the ``local_time`` column.  ``sheets`` (XLSX only): more sheets after the
    events, each ``(title, header, rows)`` (the story, the custody log...).  ``max_rows_per_sheet``
    (XLSX): events per sheet before the next sheet starts.
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
                return _write_jsonl(rows, fh, fmt, tz)
            return _write_csv(rows, fh, fmt, tz)
    finally:
        if was_enabled:
            gc.enable()
