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
from timeline.schema import SCHEMA
from timeline.store import DETECTIONS_DIR, TIMELINE_DIR

__all__ = ["Timeline", "open_case"]

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
    """A value as a DuckDB SQL literal (strings quoted, times as UTC TIMESTAMPTZ)."""
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
    return "'" + str(v).replace("'", "''") + "'"


class Timeline:
    """Filters over a case's timeline, evaluated lazily by DuckDB."""

    def __init__(self, case_dir: str | Path, tz: str | None = None, _where: tuple = ()):
        self.case_dir = Path(case_dir)
        meta_path = self.case_dir / "case.json"
        if not meta_path.exists():
            raise CaseError(f"{self.case_dir} is not a case directory (no case.json)")
        self.meta = json.loads(meta_path.read_text())
        self.tz = tz or self.meta.get("tz") or "UTC"
        self.zone = _zone(self.tz)
        self._where = _where

    # --- building ---------------------------------------------------------------------------

    def _with(self, clause: str, *params: Any) -> "Timeline":
        """A new view with ``clause`` added; each ``?`` is replaced by its parameter as a SQL literal."""
        parts = clause.split("?")
        if len(parts) != len(params) + 1:
            raise QueryError("internal: parameter count mismatch")
        sql = parts[0] + "".join(_literal(p) + rest for p, rest in zip(params, parts[1:]))
        return Timeline(self.case_dir, self.tz, self._where + (sql,))

    def between(self, start: Any, end: Any, tz: str | None = None) -> "Timeline":
        """Rows with ``start <= timestamp < end``; naive times in ``tz`` or the case's zone."""
        zone = _zone(tz) if tz else self.zone
        a, b = _utc(start, zone), _utc(end, zone)
        if b < a:
            raise QueryError(f"end {end!r} is before start {start!r}")
        return self._with("timestamp >= ? AND timestamp < ?", a, b)

    def around(self, t: Any, before: str | _dt.timedelta = "1h", after: str | _dt.timedelta = "6h",
               tz: str | None = None) -> "Timeline":
        """Rows from ``t - before`` to ``t + after``, both ends included."""
        zone = _zone(tz) if tz else self.zone
        center = _utc(t, zone)
        return self._with("timestamp >= ? AND timestamp <= ?", center - _duration(before), center + _duration(after))

    def where(self, **columns: Any) -> "Timeline":
        """Equality on columns; a list or tuple means any of its values; None means the column is null."""
        out = self
        for name, value in columns.items():
            if name not in SCHEMA.names:
                raise QueryError(f"unknown column {name!r}; columns are: {', '.join(SCHEMA.names)}")
            col = f'"{name}"'
            if value is None:
                out = out._with(f"{col} IS NULL")
            elif isinstance(value, (list, tuple, set, frozenset)):
                values = list(value)
                out = out._with(f"{col} IN ({', '.join('?' for _ in values)})", *values)
            else:
                out = out._with(f"{col} = ?", value)
        return out

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

    def _con(self):
        import duckdb

        con = duckdb.connect()
        files = self._files()
        detections = sorted(str(p) for p in (self.case_dir / DETECTIONS_DIR).glob("*.parquet"))
        if files and detections:
            # rows carry the tags detections gave them (Sigma rules saved with --save)
            con.execute(
                f"CREATE VIEW timeline_all AS SELECT t.* REPLACE (list_distinct(list_concat(t.tags, coalesce(d.tags, []))) AS tags) "
                f"FROM read_parquet({files!r}) t LEFT JOIN (SELECT event_hash, flatten(list(tags)) AS tags "
                f"FROM read_parquet({detections!r}) GROUP BY event_hash) d USING (event_hash)")
        elif files:
            con.execute(f"CREATE VIEW timeline_all AS SELECT * FROM read_parquet({files!r})")
        else:
            con.register("timeline_all", SCHEMA.empty_table())
        return con, self._where_sql()

    def _where_sql(self) -> str:
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
        """The rows, sorted by time, with ``local_time`` (the case's zone) after ``timestamp``."""
        import forensics.hunt  # noqa: F401 - registers the df.fx accessor on the frames we return
        cols = list(columns) if columns else None
        if cols is not None and "timestamp" not in cols:
            cols = ["timestamp"] + cols
        df = self.to_arrow(cols, limit, replace).to_pandas()
        df["timestamp"] = df["timestamp"].dt.tz_convert("UTC")
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

        if self._where:
            raise QueryError("to_dask() reads the whole timeline; filter the dask DataFrame instead")
        files = self._files()
        if not files:
            ddf = dd.from_pandas(SCHEMA.empty_table().to_pandas(), npartitions=1)
        else:
            ddf = dd.read_parquet(files, dtype_backend=None, split_row_groups="adaptive")
        tz = self.tz

        def local(part):
            part = part.copy()
            part["timestamp"] = part["timestamp"].dt.tz_convert("UTC")
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
               command: list[str] | None = None) -> dict[str, Any]:
        """Write this view's rows to ``path`` in ``format`` (see ``timeline.exports.FORMATS``), streamed,
        and record the export in the case's custody log (its SHA-256, size, row count and the exact
        query).  Returns the custody entry.

        XLSX also gets the story of this view, the custody log and the query as sheets;
        ``max_rows_per_sheet`` splits the events across sheets (default: Excel's limit).
        ``command``: the command line that asked for the export, recorded with it.
        """
        from timeline import exports
        from timeline.custody import CustodyLog
        from timeline.store import CaseStore, file_sha256

        if format not in exports.FORMATS:
            raise OutputError(f"unknown export format {format!r}; formats are: {', '.join(exports.FORMATS)}")
        out = _output_path(self.case_dir, path)
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
            result = exports.write_export(self.batches(), tmp, format, self.tz, sheets=sheets, **kwargs)
            os.replace(tmp, out)
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        fields = {"format": format, "rows": result.rows, "tz": self.tz, "query": query, "filters": list(self._where)}
        fields.update(result.details(format))
        return record_output(CaseStore(self.case_dir), "export", out, file_sha256(out), command=command, **fields)

    def sql(self, query: str, params: Iterable[Any] = ()):
        """Run SQL over this (filtered) timeline, visible as the table ``timeline``; returns a DataFrame."""
        con, where = self._con()
        try:
            con.execute(f"CREATE TEMP VIEW timeline AS SELECT * FROM timeline_all WHERE {where}")
            params = list(params)
            return (con.sql(query, params=params) if params else con.sql(query)).to_arrow_table().to_pandas()
        except Exception as exc:
            raise QueryError(f"query failed: {exc}") from exc
        finally:
            con.close()

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

    # --- the analyst's questions (forensics.hunt), narrowed in DuckDB before reading ----------

    def logons(self, success: bool | None = None):
        from forensics import hunt

        return hunt.logons(self, success=success)

    def brute_force(self, threshold: int = 10, window: str = "10min"):
        from forensics import hunt

        return hunt.brute_force(self, threshold=threshold, window=window)

    def service_installs(self):
        from forensics import hunt

        return hunt.service_installs(self)

    def process_executions(self):
        from forensics import hunt

        return hunt.process_executions(self)

    def log_cleared(self):
        from forensics import hunt

        return hunt.log_cleared(self)

    def shadow_copy_deletion(self):
        from forensics import hunt

        return hunt.shadow_copy_deletion(self)

    def accounts_created(self):
        from forensics import hunt

        return hunt.accounts_created(self)

    def group_changes(self):
        from forensics import hunt

        return hunt.group_changes(self)

    def scheduled_tasks(self):
        from forensics import hunt

        return hunt.scheduled_tasks(self)

    def credential_access(self, spray_users: int = 5, spray_window: str = "30min"):
        from forensics import hunt

        return hunt.credential_access(self, spray_users=spray_users, spray_window=spray_window)

    def lateral_movement(self):
        from forensics import hunt

        return hunt.lateral_movement(self)

    def powershell(self):
        from forensics import hunt

        return hunt.powershell(self)

    def first_seen(self, indicator: str):
        from forensics import hunt

        return hunt.first_seen(self, indicator)

    def encryption_burst(self, window: str = "10min", min_files: int = 100):
        from forensics import hunt

        return hunt.encryption_burst(self, window=window, min_files=min_files)

    def web_attacks(self, tunnel_hits: int = 1000, baseline: str = "1D"):
        from forensics import hunt

        return hunt.web_attacks(self, tunnel_hits=tunnel_hits, baseline=baseline)

    def story(self):
        from forensics import hunt

        return hunt.story(self)

    def onset(self):
        from forensics import hunt

        return hunt.onset(self)

    def __repr__(self) -> str:
        return f"Timeline({str(self.case_dir)!r}, tz={self.tz!r}, filters={len(self._where)})"


def open_case(case_dir: str | Path, tz: str | None = None, engine: str = "duckdb"):
    """The case's timeline (``forensics.open``): a lazy, DuckDB-backed :class:`Timeline`, or with
    ``engine="dask"`` a dask DataFrame over the same Parquet files (with ``local_time``), for a
    Dask cluster; row filters and the row-wise helpers of :mod:`forensics.hunt` work on it unchanged."""
    if engine == "duckdb":
        return Timeline(case_dir, tz=tz)
    if engine == "dask":
        return Timeline(case_dir, tz=tz).to_dask()
    raise QueryError(f"unknown engine {engine!r}: use 'duckdb' or 'dask'")


def _output_path(case_dir: Path, path: str | os.PathLike) -> Path:
    """The output path, absolute; refused inside the case's own data (it would be read as part of the case)."""
    from timeline.store import DATA_DIRS, STAGING_DIR

    out = Path(os.path.abspath(path))
    root = Path(os.path.realpath(case_dir))
    real = Path(os.path.realpath(out))  # through symbolic links too
    if out.is_dir():
        raise OutputError(f"{out} is a directory; give a file name")
    reserved = [root / d for d in (*DATA_DIRS, STAGING_DIR)]
    if real in (root / "case.json", root / "custody.jsonl", root / ".lock") or any(r in real.parents for r in reserved):
        raise OutputError(f"{out}: refusing to write inside the case's own files; "
                          f"write to another folder (or {root / 'exports'})")
    if not out.parent.is_dir():
        raise OutputError(f"folder {out.parent} does not exist")
    return out


def record_output(store, action: str, out: Path, sha256: str, command: list[str] | None = None,
                  **fields: Any) -> dict[str, Any]:
    """Append a custody entry for a file handed out (export, report): where it is, its hash, what made it.

    The path is stored relative to the case when the file is inside the case folder (so the case can
    be moved with its exports), absolute otherwise.
    """
    root = Path(os.path.abspath(store.root))
    try:
        shown = out.relative_to(root).as_posix()
    except ValueError:
        shown = str(out)
    output = {"path": shown, "sha256": sha256, "bytes": out.stat().st_size}
    with store.lock():
        entry = store.custody.append(action, output=output, **fields, **({"command": command} if command else {}))
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
