"""A lazy view of a case's timeline, backed by DuckDB.

``forensics.open(CASE)`` returns a :class:`Timeline`.  Each filter returns a new
``Timeline``; nothing is read until a result is asked for (``to_pandas()``,
``to_arrow()``, ``len()``, ``hosts()``...), and then DuckDB pushes the filters down
to the Parquet row groups (the files are sorted by time with min/max statistics).

Times given without a zone are read in the case's zone (``case.json``'s ``tz``, set
by ``forensics collect --tz``), or in the zone passed as ``tz=``; results carry a
``local_time`` column in that zone next to the UTC ``timestamp``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa

from timeline.errors import CaseError, OutputError, ParserUnavailable, QueryError
from timeline.schema import COLUMNS, PANDAS_DTYPES, SCHEMA, UNKNOWN_HOST
from timeline.schema import to_pandas as _frame_of
from timeline.store import DETECTIONS_DIR, TIMELINE_DIR

__all__ = ["Timeline", "open_case", "like", "within", "not_", "parse_condition"]

log = logging.getLogger(__name__)

EXPORT_BATCH_ROWS = 65_536  # rows per Arrow batch streamed out of DuckDB by exports
EXPORT_MEMORY_LIMIT = "256MB"  # DuckDB's share of an export; its sort spills to a temporary folder past it

_PART = r"(\d+(?:\.\d+)?)\s*(ns|us|ms|sec|min|hours|hour|days|day|s|m|h|d|w)"
_DURATION = re.compile(rf"^\s*(?:{_PART}\s*)+$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600,
          "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800}


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise QueryError(f"unknown time zone {name!r} (use an IANA name such as Asia/Kolkata)") from exc


def _duration(value: str | _dt.timedelta) -> _dt.timedelta:
    if isinstance(value, _dt.timedelta):
        return value
    if not _DURATION.match(str(value)):
        raise QueryError(f"cannot read duration {value!r} (examples: 90s, 15min, 1h, 2h30min, 2d)")
    return _dt.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in re.findall(_PART, str(value))))


def _utc(value: Any, zone: ZoneInfo) -> _dt.datetime:
    """A time as an aware UTC datetime; naive times are read in ``zone``."""
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1) if "T" not in value else value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            value = _dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise QueryError(f"cannot read time {value!r} (ISO 8601, e.g. 2022-11-23 07:00 or 2022-11-23T01:30Z)") from exc
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, _dt.datetime):
        raise QueryError(f"not a time: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(_dt.timezone.utc)


def _literal(v: Any) -> str:
    """A value as DuckDB SQL text (strings quoted, times as UTC TIMESTAMPTZ, lists as [..]): for settings and for
    showing a filter to a person (custody log, XLSX); filter values reach DuckDB as parameters, never as text."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, _dt.datetime):
        v = v.astimezone(_dt.timezone.utc)
        return f"TIMESTAMPTZ '{v.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    return "'" + str(v).replace("'", "''") + "'"


# --- the filter syntax of where() and --where ---------------------------------------------------------

_INT_COLUMNS = frozenset(n for n, t, _, _ in COLUMNS if pa.types.is_integer(t))
_LIST_COLUMNS = frozenset(n for n, t, _, _ in COLUMNS if pa.types.is_list(t))
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|!~|=|~)(.*)$", re.S)


class like:
    """``where(column=like(pattern))``: a case-insensitive SQL ``ILIKE`` match, ``%`` for any run of characters,
    ``_`` for one; a backslash is an ordinary character (``like("%\\powershell.exe")``).  Several patterns: any."""

    __slots__ = ("patterns",)

    def __init__(self, *patterns: str):
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise QueryError("like() takes one or more text patterns")
        self.patterns = patterns

    def __repr__(self) -> str:
        return f"like({', '.join(map(repr, self.patterns))})"


class within:
    """``where(column=within(lo, hi))``: ``lo <= column <= hi`` (both ends included; ``None``: no bound).  For
    whole-number columns a ``range`` also works, with Python's end excluded: ``event_id=range(4624, 4626)``."""

    __slots__ = ("lo", "hi", "hi_included")

    def __init__(self, lo: Any = None, hi: Any = None, *, _hi_included: bool = True):
        if lo is None and hi is None:
            raise QueryError("within() needs a lower or an upper bound")
        self.lo, self.hi, self.hi_included = lo, hi, _hi_included

    def __repr__(self) -> str:
        return f"within({self.lo!r}, {self.hi!r})" if self.hi_included else f"range({self.lo!r}, {self.hi!r})"


class not_:
    """``where(column=not_(value))``: every row the condition ``column=value`` leaves out, rows where the column is
    empty included (``not_(None)``: the column has a value)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        if isinstance(value, not_):
            raise QueryError("not_(not_(...)): say what you want")
        self.value = value

    def __repr__(self) -> str:
        return f"not_({self.value!r})"


def _split_values(text: str) -> list[str]:
    """``a,b,c`` → ['a', 'b', 'c']; ``\\,`` is a comma inside a value."""
    out, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 2] == ",":
            cur.append(",")
            i += 2
            continue
        if text[i] == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(text[i])
        i += 1
    out.append("".join(cur))
    return out


def parse_condition(text: str) -> tuple[str, Any]:
    """One condition of the filter syntax (``where("...")`` and ``--where``) as ``(column, value)`` for
    :meth:`Timeline.where`:

    ``col=v``            equal (``event_id=4624``)
    ``col=v1,v2``        any of (``event_id=4624,4625``; ``\\,`` is a comma inside a value)
    ``col=lo..hi``       from lo to hi, both included (whole-number columns and ``timestamp``; ``lo..``, ``..hi``)
    ``col~pattern``      ILIKE, case-insensitive: ``%`` any run of characters, ``_`` one (``process~%\\cmd.exe``);
                         several patterns comma-separated: any
    ``col=``             the column is empty (null; ``tags=``: no tags)
    ``col!=...``, ``col!~...``  not: every row the condition leaves out, rows without a value included
    ``tags=x``           the row carries tag x (``tags=a,b``: any of them; ``tags~attack.t1059%``: a tag matches)
    """
    m = _CONDITION.match(text)
    if not m:
        raise QueryError(f"cannot read condition {text!r}: use COLUMN=VALUE, COLUMN=V1,V2, COLUMN=LO..HI, "
                         "COLUMN~PATTERN, or != / !~ for not (e.g. event_id=4624,4625 or process~%\\powershell.exe)")
    name, op, raw = m.group(1), m.group(2), m.group(3)
    _check_column(name)
    value: Any
    if op.endswith("~"):
        value = like(*_split_values(raw))
    elif raw == "":
        value = None
    else:
        rng = re.fullmatch(r"(.*?)\.\.(.*)", raw, re.S) if name in _INT_COLUMNS or name == "timestamp" else None
        if rng and (rng.group(1).strip() or rng.group(2).strip()):
            value = within(rng.group(1).strip() or None, rng.group(2).strip() or None)
        else:
            parts = _split_values(raw)
            value = parts[0] if len(parts) == 1 else parts
    return name, not_(value) if op.startswith("!") else value


def _check_column(name: str) -> None:
    if name not in SCHEMA.names:
        raise QueryError(f"unknown column {name!r}; columns are: {', '.join(SCHEMA.names)}")


def _is_null(v: Any) -> bool:
    """None, pandas' NA / NaT or a float NaN (what an empty cell of a DataFrame gives)."""
    return v is None or type(v).__name__ in ("NAType", "NaTType") or (isinstance(v, float) and v != v)


def _not_a_condition(c: Any) -> tuple[str, Any]:
    raise QueryError(f"where() takes conditions as text (\"event_id=4624,4625\") or column=value keywords, not {c!r}")


class Timeline:
    """Filters over a case's timeline, evaluated lazily by DuckDB."""

    def __init__(self, case_dir: str | Path, tz: str | None = None, _filters: tuple = ()):
        self.case_dir = Path(case_dir)
        meta_path = self.case_dir / "case.json"
        if not meta_path.exists():
            raise CaseError(f"{self.case_dir} is not a case directory (no case.json)")
        self.meta = json.loads(meta_path.read_text())
        self.tz = tz or self.meta.get("tz") or "UTC"
        self.zone = _zone(self.tz)
        self._filters: tuple[tuple[str, tuple], ...] = _filters  # (SQL with ? placeholders, their values)

    @property
    def _where(self) -> tuple[str, ...]:
        """The filters as a person reads them (values written out): for the custody log and the XLSX query sheet.
        DuckDB gets the values as parameters (:meth:`_bind`), never this text."""
        out = []
        for clause, params in self._filters:
            parts = clause.split("?")
            out.append(parts[0] + "".join(_literal(p) + rest for p, rest in zip(params, parts[1:])))
        return tuple(out)

    # --- building ---------------------------------------------------------------------------

    def _with(self, clause: str, *params: Any) -> "Timeline":
        """A new view with ``clause`` added; each ``?`` stands for its parameter, handed to DuckDB as a value."""
        if clause.count("?") != len(params):
            raise QueryError("internal: parameter count mismatch")
        return Timeline(self.case_dir, self.tz, self._filters + ((clause, tuple(params)),))

    def between(self, start: Any = None, end: Any = None, tz: str | None = None) -> "Timeline":
        """Rows with ``start <= timestamp < end``; naive times in ``tz`` or the case's zone.  Either end may be
        None: rows from ``start`` on, or before ``end``."""
        zone = _zone(tz) if tz else self.zone
        a = _utc(start, zone) if start is not None else None
        b = _utc(end, zone) if end is not None else None
        if a is not None and b is not None:
            if b < a:
                raise QueryError(f"end {end!r} is before start {start!r}")
            return self._with("timestamp >= ? AND timestamp < ?", a, b)
        if a is not None:
            return self._with("timestamp >= ?", a)
        return self._with("timestamp < ?", b) if b is not None else self

    def around(self, t: Any, before: str | _dt.timedelta = "1h", after: str | _dt.timedelta = "6h",
               tz: str | None = None) -> "Timeline":
        """Rows from ``t - before`` to ``t + after``, both ends included."""
        zone = _zone(tz) if tz else self.zone
        center = _utc(t, zone)
        return self._with("timestamp >= ? AND timestamp <= ?", center - _duration(before), center + _duration(after))

    def where(self, *conditions: str, **columns: Any) -> "Timeline":
        """Rows matching every condition.  Keyword form, one per column::

            tl.where(event_id=4624)                      # equal
            tl.where(event_id=[4624, 4625])              # any of (a list, tuple or set)
            tl.where(event_id=range(4624, 4626))         # a range of whole numbers, end excluded as in Python
            tl.where(dst_port=within(1, 1023))           # from ... to, both included (None: no bound)
            tl.where(process=like("%\\powershell.exe")) # ILIKE: % any run of characters, _ one; case-insensitive
            tl.where(user=not_("SYSTEM"))                # not: the rows the condition leaves out, empty ones too
            tl.where(host=None)                          # the column is empty (not_(None): it has a value)
            tl.where(tags="attack.t1059.001")            # rows carrying a tag (list: any of them; None: no tags)

        or the text syntax of the command line's ``--where`` (:func:`parse_condition`), several at once::

            tl.where("event_id=4624,4625", "logon_type=3..10", "process~%\\psexe%", "user!=SYSTEM")

        ``like``, ``within`` and ``not_`` come from :mod:`forensics.query`.  Values are handed to DuckDB as
        parameters, never pasted into the SQL.  A value of the wrong kind (``event_id="abc"``) is a QueryError.
        """
        out = self
        pairs = [parse_condition(c) if isinstance(c, str) else _not_a_condition(c) for c in conditions]
        for name, value in pairs + list(columns.items()):
            _check_column(name)
            clause, params = self._condition(name, value)
            out = out._with(clause, *params)
        return out

    def _value(self, name: str, v: Any) -> Any:
        """One filter value in the column's own kind (QueryError when it cannot be)."""
        if name in _INT_COLUMNS:
            if isinstance(v, float) and v.is_integer():  # 4624.0 (a float64 column of older results)
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, (int, str)) and not hasattr(v, "__index__"):
                raise QueryError(f"{name} holds whole numbers; {v!r} is not one")
            try:
                return int(v.strip()) if isinstance(v, str) else int(v.__index__())
            except (TypeError, ValueError):
                raise QueryError(f"{name} holds whole numbers; {v!r} is not one") from None
        if name == "timestamp":
            return _utc(v, self.zone)
        if isinstance(v, (like, within, not_, list, tuple, set, frozenset, range, dict)):
            raise QueryError(f"{name}: {v!r} cannot be nested in a condition")
        return v if isinstance(v, str) else str(v)

    def _condition(self, name: str, value: Any) -> tuple[str, list[Any]]:
        """``(SQL with ? placeholders, values)`` for ``name`` against ``value`` (the forms of :meth:`where`)."""
        col = f'"{name}"'
        listed = name in _LIST_COLUMNS
        if hasattr(value, "__array__") and getattr(value, "ndim", 0) == 1:  # numpy array, pandas Series/Index/array
            value = list(value)
        if _is_null(value):
            value = None
        if isinstance(value, not_):
            clause, params = self._condition(name, value.value)
            return f"({clause}) IS NOT TRUE", params  # null counts as "not": every row the condition leaves out
        if value is None and name == "host":  # unknown: the view shows it as timeline.schema.UNKNOWN_HOST
            return f"{col} = ?", [UNKNOWN_HOST]
        if value is None:
            return (f"len({col}) = 0" if listed else f"{col} IS NULL"), []
        if isinstance(value, like):
            if name in _INT_COLUMNS or name == "timestamp":
                raise QueryError(f"{name} is not text: use =, a list or a range, not a pattern")
            tests = " OR ".join([f"len(list_filter({col}, lambda x: x ILIKE ?)) > 0" if listed else f"{col} ILIKE ?"]
                                * len(value.patterns))
            return f"({tests})", list(value.patterns)
        if isinstance(value, range):
            if name not in _INT_COLUMNS:
                raise QueryError(f"a range of whole numbers is for {', '.join(sorted(_INT_COLUMNS))}, not {name}")
            if value.step != 1:
                raise QueryError(f"{name}: a range with a step ({value!r}) is not supported; give a list")
            value = within(value.start, value.stop, _hi_included=False)
        if isinstance(value, within):
            if listed:
                raise QueryError(f"{name} is a list of tags: a range does not apply")
            parts, params = [], []
            if value.lo is not None:
                parts.append(f"{col} >= ?")
                params.append(self._value(name, value.lo))
            if value.hi is not None:
                parts.append(f"{col} {'<=' if value.hi_included else '<'} ?")
                params.append(self._value(name, value.hi))
            return " AND ".join(parts), params
        if isinstance(value, (list, tuple, set, frozenset)):
            values = list(value)
            nulls = any(_is_null(v) for v in values)
            values = list(dict.fromkeys(self._value(name, v) for v in values if not _is_null(v)))
            if listed:
                tests = ["list_has_any(" + col + ", ?)"] if values else []
                tests += [f"len({col}) = 0"] if nulls else []
            else:
                tests = [f"list_contains(?, {col})"] if values else []
                tests += [f"{col} IS NULL"] if nulls else []
            if not tests:
                return "FALSE", []  # any of nothing
            return "(" + " OR ".join(tests) + ")", [values] if values else []
        if isinstance(value, dict):
            raise QueryError(f"{name}: a dict is not a filter value")
        return (f"list_contains({col}, ?)" if listed else f"{col} = ?"), [self._value(name, value)]

    def search(self, pattern: str, regex: bool = False, case: bool = False) -> "Timeline":
        """Rows whose message or attrs contain ``pattern`` (or match it as a regular expression)."""
        if regex:
            flags = "" if case else "i"
            return self._with("(regexp_matches(message, ?, ?) OR regexp_matches(attrs, ?, ?))", pattern, flags, pattern, flags)
        op = "LIKE" if case else "ILIKE"
        like = "%" + pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self._with(f"(message {op} ? ESCAPE '\\' OR attrs {op} ? ESCAPE '\\')", like, like)

    # --- evaluating ---------------------------------------------------------------------------

    def _files(self) -> list[str]:
        return sorted(str(p) for p in (self.case_dir / TIMELINE_DIR).glob("*.parquet"))

    def _detection_files(self) -> list[str]:
        return sorted(str(p) for p in (self.case_dir / DETECTIONS_DIR).glob("*.parquet"))

    def _con(self):
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")  # times come back labelled UTC, and date parts are UTC's, on any machine
        try:  # a library never draws on the analyst's terminal
            con.execute("SET enable_progress_bar = false")
        except duckdb.Error:  # in Jupyter DuckDB refuses to touch the setting without ipywidgets; it draws none then
            pass
        files = self._files()
        detections = self._detection_files()
        # the case's files are handed to DuckDB as values, never pasted into SQL (a case path may hold ' or ")
        if files and detections:
            # rows carry the tags detections gave them (Sigma rules saved with --save)
            con.read_parquet(files).create_view("timeline_files")
            con.read_parquet(detections).create_view("detection_files")
            con.execute(
                # a row's own tags unchanged, then its detections' tags each once, sorted (exports are reproducible)
                "CREATE VIEW timeline_stored AS SELECT t.* REPLACE (CASE WHEN d.tags IS NULL THEN t.tags ELSE list_concat("
                "t.tags, list_sort(list_filter(list_distinct(d.tags), lambda x: NOT list_contains(t.tags, x)))) END AS tags) "
                "FROM timeline_files t LEFT JOIN (SELECT event_hash, flatten(list(tags)) AS tags "
                "FROM detection_files GROUP BY event_hash) d USING (event_hash)")
        elif files:
            con.read_parquet(files).create_view("timeline_stored")
        else:
            con.register("timeline_stored", SCHEMA.empty_table())
        # a row whose host is unknown (null) shows the one placeholder everywhere: story, hunt, exports, report, SQL
        con.execute(f"CREATE VIEW timeline_all AS SELECT * REPLACE (coalesce(host, {_literal(UNKNOWN_HOST)}) AS host) "
                    "FROM timeline_stored")
        return con, self._bind(con)

    def _bind(self, con) -> str:
        """This view's filters as SQL for ``con``: each value is handed to DuckDB as a parameter (stored in a
        session variable, read by ``getvariable``, which DuckDB folds into a constant so the filters still
        reach the Parquet row groups); no value is ever pasted into the SQL text."""
        out, n = [], 0
        for clause, params in self._filters:
            parts = clause.split("?")
            text = parts[0]
            for value, rest in zip(params, parts[1:]):
                name = f"forensics_p{n}"
                n += 1
                con.execute(f"SET VARIABLE {name} = ?", [value])
                text += f"getvariable('{name}')" + rest
            out.append(f"({text})")
        return " AND ".join(out) or "TRUE"

    def _where_sql(self) -> str:
        """The filters as a person reads them (see :attr:`_where`)."""
        return " AND ".join(f"({w})" for w in self._where) or "TRUE"

    def _query(self, select: str, tail: str = "") -> pa.Table:
        con, where = self._con()
        try:
            return con.sql(f"SELECT {select} FROM timeline_all WHERE {where} {tail}").to_arrow_table()
        except Exception as exc:  # duckdb's errors: one clear message
            raise QueryError(f"query failed: {exc}") from exc
        finally:
            con.close()

    def to_arrow(self, columns: Iterable[str] | None = None, limit: int | None = None,
                 replace: dict[str, str] | None = None) -> pa.Table:
        """The rows, sorted by time.  ``replace``: column -> SQL expression computed in its place."""
        cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        if replace:
            cols += " REPLACE (" + ", ".join(f'{expr} AS "{c}"' for c, expr in replace.items()) + ")"
        tail = "ORDER BY timestamp, event_hash" + (f" LIMIT {int(limit)}" if limit else "")
        return self._query(cols, tail)

    def to_pandas(self, columns: Iterable[str] | None = None, limit: int | None = None,
                  replace: dict[str, str] | None = None):
        """The rows, sorted by time, with ``local_time`` (the case's zone) after ``timestamp``.

        dtypes: ``timestamp`` ``datetime64[ns, UTC]``; ``event_id``, ``logon_type``, ``dst_port`` pandas' nullable
        ``Int32`` (4624, or ``<NA>`` where the row has none; :data:`timeline.schema.PANDAS_DTYPES`); text as pandas'
        string dtype; ``tags`` lists.  The same under pandas 2.2 and 3.x, and the same as :meth:`sql` gives."""
        import forensics.hunt  # noqa: F401 - registers the df.fx accessor on the frames we return
        cols = list(columns) if columns else None
        if cols is not None and "timestamp" not in cols:
            cols = ["timestamp"] + cols
        df = _frame_of(self.to_arrow(cols, limit, replace))
        df.insert(df.columns.get_loc("timestamp") + 1, "local_time", df["timestamp"].dt.tz_convert(self.tz))
        return df

    def to_dask(self):
        """A dask DataFrame over the case's timeline files (all rows; this view's filters are not applied),
        with ``local_time`` in the case's zone.  Needs ``dask[dataframe]`` (the ``dask`` extra)."""
        try:
            import dask.dataframe as dd
        except ImportError as exc:
            raise ParserUnavailable("dask is not installed: pip install 'forensics[dask]'") from exc
        import forensics.hunt  # noqa: F401 - the df.fx accessor

        if self._filters:
            raise QueryError("to_dask() reads the whole timeline; filter the dask DataFrame instead")
        files = self._files()
        if not files:
            ddf = dd.from_pandas(SCHEMA.empty_table().to_pandas(), npartitions=1)
        else:
            ddf = dd.read_parquet(files, dtype_backend=None, split_row_groups="adaptive")
        tz = self.tz

        def local(part):
            part = part.copy()
            part["host"] = part["host"].astype(object).where(part["host"].notna(), UNKNOWN_HOST)
            part["timestamp"] = part["timestamp"].dt.tz_convert("UTC")
            for name, dtype in PANDAS_DTYPES.items():  # as to_pandas(): Int32, not float64
                if name in part.columns:
                    part[name] = part[name].astype(dtype)
            part.insert(part.columns.get_loc("timestamp") + 1, "local_time", part["timestamp"].dt.tz_convert(tz))
            return part

        return ddf.map_partitions(local, meta=local(ddf._meta))

    def _ordered_sql(self, where: str) -> str:
        return f"SELECT * FROM timeline_all WHERE {where} ORDER BY timestamp, event_hash"

    def batches(self, rows: int = EXPORT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The rows in time order as Arrow record batches of ``rows`` rows, streamed from DuckDB.

        Memory stays bounded whatever the size of the view: DuckDB is limited to
        ``EXPORT_MEMORY_LIMIT`` (its sort spills to a temporary folder beyond it) and Python holds one
        batch at a time.
        """
        import duckdb

        con, where = self._con()
        with tempfile.TemporaryDirectory(prefix="forensics-sort-") as spill:
            try:
                con.execute(f"SET temp_directory = {_literal(spill)}")
                con.execute(f"SET memory_limit = {_literal(EXPORT_MEMORY_LIMIT)}")
                reader = con.sql(self._ordered_sql(where)).to_arrow_reader(rows)
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    yield batch
            except duckdb.Error as exc:
                raise QueryError(f"query failed: {exc}") from exc
            finally:
                con.close()

    def export(self, path: str | os.PathLike, format: str, *, max_rows_per_sheet: int | None = None,
               command: list[str] | None = None, force: bool = False) -> dict[str, Any]:
        """Write this view's rows to ``path`` in ``format`` (see ``timeline.exports.FORMATS``), streamed,
        and record the export in the case's custody log (its SHA-256, size, row count and the exact
        query).  Returns the custody entry.

        XLSX also gets the story of this view, the custody log and the query as sheets;
        ``max_rows_per_sheet`` splits the events across sheets (default: Excel's limit).
        ``command``: the command line that asked for the export, recorded with it.  ``path`` may not be
        evidence of the case, nor an existing file unless ``force``.
        """
        from timeline import exports
        from timeline.custody import CustodyLog
        from timeline.store import CaseStore

        if format not in exports.FORMATS:
            raise OutputError(f"unknown export format {format!r}; formats are: {', '.join(exports.FORMATS)}")
        out = _output_path(self.case_dir, path, force)
        store = CaseStore(self.case_dir)
        store.check_writable()  # the export is recorded in the custody log: a read-only case fails before writing
        query = self._ordered_sql(self._where_sql())
        sheets = []
        if format == "xlsx":
            sheets = _xlsx_sheets(self, query, CustodyLog(self.case_dir / "custody.jsonl"))
        kwargs: dict[str, Any] = {"max_rows_per_sheet": max_rows_per_sheet} if max_rows_per_sheet else {}
        if format == "timesketch-jsonl":  # under Timesketch's field cap, the fields most rows have come first
            sample = self.sql("SELECT source, attrs FROM timeline ORDER BY hash(event_hash), event_hash "
                              f"LIMIT {exports.TIMESKETCH_SAMPLE_ROWS}")
            kwargs["timesketch_fields_first"] = exports.rank_fields(zip(sample["source"], sample["attrs"]))
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        try:
            try:
                result = exports.write_export(self.batches(), tmp, format, self.tz, sheets=sheets, **kwargs)
            except OSError as exc:
                raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
            fields = {"format": format, "rows": result.rows, "tz": self.tz, "query": query, "filters": list(self._where)}
            fields.update(result.details(format))
            return publish_output(store, "export", tmp, out, command=command, **fields)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def sql(self, query: str, params: Iterable[Any] = (), allow_external: bool = False):
        """Run one SQL query over this (filtered) timeline, visible as the table ``timeline``; returns a DataFrame.

        Read-only: one ``SELECT`` statement (``WITH``/``FROM``-first forms included); ``COPY``, ``ATTACH``,
        ``INSTALL``, ``SET``, ``CREATE``... and several statements at once are refused (QueryError).  Files other
        than the case's timeline cannot be read (``read_csv('/etc/passwd')`` fails) unless ``allow_external``:
        then any file the process can read may be joined (an IOC list), still by one SELECT.

        The DataFrame's dtypes are :meth:`to_pandas`'s: times with a zone as ``datetime64[..., UTC]`` (DuckDB's
        session zone is UTC, so date parts and ``time_bucket`` are UTC's too), the schema's integer columns
        (``event_id``...) as nullable ``Int32``; ``pd.concat`` of the two keeps every column's dtype."""
        import duckdb

        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {exc}") from exc
        if len(statements) != 1:
            raise QueryError(f"one SQL statement at a time, not {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise QueryError(f"only a SELECT query can be run (this is {kind.name}): the case is read-only here")
        con, where = self._con()
        try:
            con.execute(f"CREATE TEMP VIEW timeline AS SELECT * FROM timeline_all WHERE {where}")
            if not allow_external:  # from here on DuckDB reads the case's own Parquet files and nothing else
                con.execute("SET allowed_paths = ?", [self._files() + self._detection_files()])
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")
            params = list(params)
            return _frame_of((con.sql(query, params=params) if params else con.sql(query)).to_arrow_table())
        except duckdb.PermissionException as exc:
            raise QueryError(f"query refused: {exc} (reading files other than the timeline needs --allow-external, "
                             "allow_external=True)") from exc
        except Exception as exc:
            raise QueryError(f"query failed: {exc}") from exc
        finally:
            con.close()

    def fields(self, *names: str, columns: Iterable[str] = (), dtypes: dict[str, str] | None = None):
        """Fields of the events' data as typed DataFrame columns, one row per row of this view (time order)::

            tl.where(event_id=10).fields("TargetImage", "GrantedAccess", dtypes={"GrantedAccess": "int"})

        A field is read from ``attrs``: ``Event.EventData.<name>`` (EVTX files and Windows event exports store
        the event's data there alike), else ``Event.UserData.<element>.<name>``, else, for rows that are not
        Windows events, the top-level ``<name>`` (web logs' ``status``, ``user_agent``...); null when absent.
        Types: see :func:`forensics.query.typed_column` (whole numbers ``Int64``, other numbers ``Float64``,
        true/false ``boolean``, else text; ``dtypes`` forces ``"int"`` (``0x`` hex read too), ``"float"`` or
        ``"str"``).  Columns: ``timestamp``, ``local_time``, ``host``, ``event_id``, ``channel``, ``columns``,
        the fields, then the provenance (``evidence_id``, ``evidence_path``, ``record_ref``).  The same as
        ``df.fx.event_data([...])`` on this view's ``to_pandas()``."""
        names = _field_names(names)
        extra = [c for c in columns if c not in _FIELD_LEAD and c not in PROVENANCE]
        for c in extra:
            _check_column(c)
        lead = [c for c in _FIELD_LEAD if c != "local_time"] + extra
        clash = sorted(set(names) & set(lead + PROVENANCE + ["local_time"]))
        if clash:
            raise QueryError(f"field name(s) {clash} are also timeline columns of the result; leave them out of "
                             "columns= or read them with sql()")
        con, where = self._con()
        try:
            inner, exprs = _event_data_exprs(con, names)
            keep = ", ".join(f'"{c}"' for c in dict.fromkeys(lead + PROVENANCE + ["event_hash"]))
            select = ", ".join([f'"{c}"' for c in lead + PROVENANCE] + [f'{e} AS "__f{i}"' for i, e in enumerate(exprs)])
            table = con.sql(f"SELECT {select} FROM (SELECT {keep}, {inner} AS __j FROM timeline_all WHERE {where}) "
                            "ORDER BY timestamp, event_hash").to_arrow_table()
        except Exception as exc:
            raise QueryError(f"query failed: {exc}") from exc
        finally:
            con.close()
        import forensics.hunt  # noqa: F401 - the df.fx accessor

        df = _frame_of(table.select(lead))
        df.insert(1, "local_time", df["timestamp"].dt.tz_convert(self.tz))
        for i, name in enumerate(names):
            df[name] = typed_column(name, table.column(f"__f{i}").to_pylist(), (dtypes or {}).get(name)).set_axis(df.index)
        prov = _frame_of(table.select(PROVENANCE))
        for c in PROVENANCE:
            df[c] = prov[c]
        return df

    def __len__(self) -> int:
        return int(self._query("count(*) AS n").column(0)[0].as_py())

    def hosts(self) -> dict[str, int]:
        t = self._query("host, count(*) AS n", "GROUP BY host ORDER BY n DESC, host")
        return {str(h): int(n) for h, n in zip(t.column("host").to_pylist(), t.column("n").to_pylist())}

    def time_range(self) -> tuple[Any, Any]:
        """(first, last) timestamps as pandas Timestamps in UTC (None when empty)."""
        import pandas as pd

        t = self._query("min(timestamp) AS first, max(timestamp) AS last")
        first, last = t.column("first")[0], t.column("last")[0]
        if not first.is_valid:
            return None, None
        return pd.Timestamp(first.value, tz="UTC"), pd.Timestamp(last.value, tz="UTC")

    # --- the analyst's questions: forensics.hunt's helpers, defined there once ----------------------

    def __getattr__(self, name: str) -> Any:
        # tl.story(), tl.lateral_movement()...: each helper of forensics.hunt becomes a method of Timeline when
        # forensics.hunt loads (it loads pandas: a collection never pays for it); the first use loads it
        if not name.startswith("_"):
            import forensics.hunt  # noqa: F401 - registers every helper as a Timeline method

            return object.__getattribute__(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        import forensics.hunt  # noqa: F401 - the helpers, for completion and help()

        return list(super().__dir__())

    def __repr__(self) -> str:
        return f"Timeline({str(self.case_dir)!r}, tz={self.tz!r}, filters={len(self._filters)})"


def open_case(case_dir: str | Path, tz: str | None = None, engine: str = "duckdb"):
    """The case's timeline (``forensics.open``): a lazy, DuckDB-backed :class:`Timeline`, or with
    ``engine="dask"`` a dask DataFrame over the same Parquet files (with ``local_time``), for a
    Dask cluster; row filters and the row-wise helpers of :mod:`forensics.hunt` work on it unchanged."""
    if engine == "duckdb":
        return Timeline(case_dir, tz=tz)
    if engine == "dask":
        return Timeline(case_dir, tz=tz).to_dask()
    raise QueryError(f"unknown engine {engine!r}: use 'duckdb' or 'dask'")


# --- fields of the events' data (Timeline.fields, df.fx.event_data) --------------------------------------

_FIELD_LEAD = ["timestamp", "local_time", "host", "event_id", "channel"]
PROVENANCE = ["evidence_id", "evidence_path", "record_ref"]
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,16}")
_INT64 = (-(2**63), 2**63 - 1)


def _field_names(names: Iterable[str]) -> list[str]:
    out = list(dict.fromkeys(names))
    if not out:
        raise QueryError("name at least one field, e.g. fields('TargetImage', 'GrantedAccess')")
    for n in out:
        if not isinstance(n, str) or not n.strip() or '"' in n or any(ord(ch) < 32 for ch in n):
            raise QueryError(f"not a field name: {n!r}")
    return out


def _event_data_exprs(con, names: list[str]) -> tuple[str, list[str]]:
    """SQL reading fields out of ``attrs``: ``(inner, outer)``; ``inner`` (an expression over ``attrs``, to be named
    ``__j``) parses each row's JSON once, ``outer`` reads each field from ``__j`` as JSON text (null when absent).
    The paths are handed to DuckDB as parameters (session variables), never pasted into the SQL."""
    paths = ["$.Event", "$.Event.UserData"]
    outer = []
    for i, name in enumerate(names):
        paths += [f'$.Event.EventData."{name}"', f'$."{name}"']
        con.execute(f"SET VARIABLE forensics_f{i}_ud = ?", [f'$.*."{name}"'])  # under UserData's one element
        ed, top = 3 + 2 * i, 4 + 2 * i
        outer.append(f"CAST(coalesce(__j[{ed}], json_extract(__j[2], getvariable('forensics_f{i}_ud'))[1], "
                     f"CASE WHEN __j[1] IS NULL THEN __j[{top}] END) AS VARCHAR)")
    con.execute("SET VARIABLE forensics_fpaths = ?", [paths])
    return "json_extract(attrs, getvariable('forensics_fpaths'))", outer


def typed_column(name: str, texts: list[str | None], dtype: str | None = None):
    """One field's values (JSON texts, None when absent) as a typed pandas Series.

    Without ``dtype`` the type is read from the values that are present: all whole numbers (JSON numbers or
    decimal text such as an export's ``"3"``) → ``Int64``; all numbers → ``Float64``; all true/false →
    ``boolean``; otherwise text (objects and lists as JSON text), pandas' string dtype.  ``0x`` hex stays text
    unless ``dtype="int"``.  ``dtype``: ``"int"``, ``"float"`` or ``"str"``; a value that cannot be read so is a
    QueryError naming it."""
    import orjson
    import pandas as pd

    values: list[Any] = []
    for t in texts:
        if t is None:
            values.append(None)
            continue
        v = orjson.loads(t)
        if isinstance(v, dict) and "#text" in v:  # an element with attributes: its text
            v = v["#text"]
        values.append(v)
    present = [v for v in values if v is not None]

    def text() -> Any:
        out = [v if isinstance(v, str) or v is None else orjson.dumps(v).decode() for v in values]
        return pa.array(out, pa.string()).to_pandas()

    def as_int(v: Any, hex_too: bool) -> int | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v if _INT64[0] <= v <= _INT64[1] else None
        if isinstance(v, float) and v.is_integer() and dtype == "int":
            return int(v)
        if isinstance(v, str):
            s = v.strip()
            if _DECIMAL.fullmatch(s):
                i = int(s)
                return i if _INT64[0] <= i <= _INT64[1] else None
            if hex_too and _HEX.fullmatch(s):
                i = int(s, 16)
                return i if i <= _INT64[1] else None
        return None

    if dtype not in (None, "int", "float", "str"):
        raise QueryError(f"dtype of {name!r}: {dtype!r} is not one of int, float, str")
    if dtype == "str":
        return text()
    if dtype == "int" or dtype is None:
        ints = [None if v is None else as_int(v, dtype == "int") for v in values]
        if all(i is not None for i, v in zip(ints, values) if v is not None) and (present or dtype == "int"):
            if not any(isinstance(v, bool) for v in present):
                return pd.Series(pd.array(ints, dtype="Int64"))
        if dtype == "int":
            bad = next(v for i, v in zip(ints, values) if v is not None and i is None)
            raise QueryError(f"field {name!r}: {bad!r} is not a whole number (dtypes={{{name!r}: 'str'}} reads it as text)")
    if dtype == "float" or dtype is None:
        def as_float(v: Any) -> float | None:
            if isinstance(v, bool):
                return None
            if isinstance(v, (int, float)):
                return float(v)
            if isinstance(v, str) and dtype == "float":
                try:
                    return float(v)
                except ValueError:
                    return None
            return None
        floats = [None if v is None else as_float(v) for v in values]
        if present and all(f is not None for f, v in zip(floats, values) if v is not None):
            return pd.Series(pd.array(floats, dtype="Float64"))
        if dtype == "float":
            bad = next(v for f, v in zip(floats, values) if v is not None and f is None)
            raise QueryError(f"field {name!r}: {bad!r} is not a number")
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(pd.array(values, dtype="boolean"))
    return text()


def event_data_of_frame(df: Any, names: Iterable[str] | str, dtypes: dict[str, str] | None = None):
    """:meth:`Timeline.fields` for a DataFrame of timeline rows (``df.fx.event_data``): the same SQL reads the
    fields out of its ``attrs`` (DuckDB), the same typing; the result keeps ``df``'s index."""
    import duckdb
    import pandas as pd

    names = _field_names([names] if isinstance(names, str) else names)
    if "attrs" not in df.columns:
        raise QueryError("event_data needs the timeline's attrs column")
    lead = [c for c in _FIELD_LEAD if c in df.columns]
    clash = sorted(set(names) & set(lead + PROVENANCE))
    if clash:
        raise QueryError(f"field name(s) {clash} are also timeline columns of the result")
    attrs = df["attrs"].astype(object)
    arrow = pa.table({"__i": pa.array(range(len(df)), pa.int64()),
                      "attrs": pa.array(attrs.where(attrs.notna(), None).tolist(), pa.string())})
    con = duckdb.connect()
    try:
        try:
            con.execute("SET enable_progress_bar = false")
        except duckdb.Error:  # Jupyter without ipywidgets: DuckDB refuses the setting, and draws no bar there
            pass
        inner, exprs = _event_data_exprs(con, names)
        con.register("frame", arrow)
        select = ", ".join(f"{e} AS __f{i}" for i, e in enumerate(exprs))
        table = con.sql(f"SELECT {select} FROM (SELECT __i, {inner} AS __j FROM frame) ORDER BY __i").to_arrow_table() \
            if len(df) else None
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}") from exc
    finally:
        con.close()
    out = df[lead].copy()
    for i, name in enumerate(names):
        col = typed_column(name, table.column(f"__f{i}").to_pylist() if table is not None else [], (dtypes or {}).get(name))
        out[name] = col.set_axis(df.index) if len(df) else col.iloc[:0]
    for c in PROVENANCE:
        if c in df.columns:
            out[c] = df[c]
    return out


def _output_path(case_dir: Path, path: str | os.PathLike, force: bool = False) -> Path:
    """The output path, absolute.  Refused: inside the case's own data (it would be read as part of the case),
    any evidence of the case or a path inside an evidence folder (the custody log's evidence, through symbolic
    links too), and an existing file unless ``force``."""
    from timeline.custody import CustodyLog
    from timeline.store import DATA_DIRS, STAGING_DIR

    out = Path(os.path.abspath(path))
    root = Path(os.path.realpath(case_dir))
    real = Path(os.path.realpath(out))  # through symbolic links too
    if out.is_dir():
        raise OutputError(f"{out} is a directory; give a file name")
    reserved = [root / d for d in (*DATA_DIRS, STAGING_DIR)]
    if real in (root / "case.json", root / "custody.jsonl", root / ".lock", root / ".collect.lock") \
            or any(r in real.parents for r in reserved):
        raise OutputError(f"{out}: refusing to write inside the case's own files; "
                          f"write to another folder (or {root / 'exports'})")
    for ev in _evidence_paths(CustodyLog(root / "custody.jsonl")):
        if real == ev or ev in real.parents:
            raise OutputError(f"{out}: refusing to write over evidence of the case ({ev}); write to another folder")
    if not out.parent.is_dir():
        raise OutputError(f"folder {out.parent} does not exist")
    if (out.exists() or out.is_symlink()) and not force:
        raise OutputError(f"{out} exists; refusing to overwrite it (--force, force=True: overwrite)")
    return out


def _evidence_paths(custody) -> set[Path]:
    """Every evidence item and evidence file the custody log names, resolved (a live host's root left out)."""
    out: set[Path] = set()
    for e in custody.entries():
        for item in e.get("evidence") or []:
            if not isinstance(item, dict):
                continue
            paths = [item.get("path")] + [f.get("real_path") for f in item.get("files") or [] if isinstance(f, dict)]
            for p in paths:
                if isinstance(p, str) and p:
                    rp = Path(os.path.realpath(p))
                    if rp != Path(rp.anchor):
                        out.add(rp)
    return out


def publish_output(store, action: str, tmp: Path, out: Path, command: list[str] | None = None,
                   **fields: Any) -> dict[str, Any]:
    """Hand out a file written to ``tmp`` (export, report): record it in the custody log (where it goes, its hash,
    what made it), then move it to ``out``.  A file that cannot be recorded (a read-only or full case) is not
    handed out.

    The path is stored relative to the case when the file is inside the case folder (so the case can
    be moved with its exports), absolute otherwise.
    """
    from timeline.store import file_sha256

    root = Path(os.path.abspath(store.root))
    try:
        shown = out.relative_to(root).as_posix()
    except ValueError:
        shown = str(out)
    output = {"path": shown, "sha256": file_sha256(tmp), "bytes": tmp.stat().st_size}
    with store.lock():
        entry = store.custody.append(action, output=output, **fields, **({"command": command} if command else {}))
        try:
            os.replace(tmp, out)
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror or exc} (custody entry #{entry['seq']} records it; "
                              "verify notes it as not present)") from exc
    log.info("%s %s recorded as custody entry #%d", action, out, entry["seq"])
    return entry


def _xlsx_sheets(tl: Timeline, query: str, custody) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The story, custody and query sheets of an XLSX export."""
    from timeline.exports import sheet_from_frame

    story = sheet_from_frame("story", tl.story(), tl.tz)  # every column the story has, typed
    cust_rows = []
    for e in custody.entries():
        details = {k: v for k, v in e.items() if k not in ("seq", "time", "actor", "action", "prev", "hash")}
        cust_rows.append([e.get("seq"), e.get("time"), e.get("actor"), e.get("action"),
                          json.dumps(details, ensure_ascii=False, sort_keys=True), e.get("prev"), e.get("hash")])
    cust = ("custody", ["seq", "time", "actor", "action", "details", "prev", "hash"], cust_rows)
    about = ("query", ["field", "value"], [
        ["case", str(tl.case_dir)], ["case_id", str(tl.meta.get("case_id"))], ["tz (local_time)", tl.tz],
        ["filters", json.dumps(list(tl._where), ensure_ascii=False)], ["query", query],
        ["custody head before this export", custody.head()[1]],
        ["note", "cells whose text began with = + - @ tab or CR carry a leading ' so that no spreadsheet runs "
                 "them; the JSON Lines and Parquet exports hold the text unchanged"],
    ])
    return [story, cust, about]
