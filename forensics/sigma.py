"""Sigma rules over the whole timeline, through pySigma, compiled to DuckDB SQL.

``run(timeline, rules=PATH)`` loads SigmaHQ-format rules (a file or a folder), converts
each with pySigma's DuckDB backend and the Sysmon + Windows log-source pipelines (a
rule's log source becomes conditions on ``EventID`` and ``Channel``), and evaluates it
over a view of the timeline in which Sigma's field names are columns:

* ``EventID``, ``Channel``, ``Provider_Name``, ``Computer`` are the timeline's columns;
* every other field (``Image``, ``CommandLine``, ``TargetObject``...) is read from the
  record's data in ``attrs`` (EventData, or UserData).

A rule that cannot be converted or evaluated is reported with its reason and never stops
the run.  The result has one row per (rule, matched row): the rule's id, title, level and
ATT&CK tags, and the row's time, host, message and provenance.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from timeline.errors import ParserUnavailable

__all__ = ["SigmaRun", "load_rules", "run", "save"]

_BUILTIN = {"EventID": "event_id", "Channel": "channel", "Provider_Name": "provider", "Computer": "host",
            "_raw": "concat_ws(' ', message, attrs)"}
# Web server log fields (W3C names in SigmaHQ's webserver rules) -> the web collector's attrs keys
_WEB = {"cs-method": "method", "cs-uri-query": "query", "cs-uri-stem": "path", "cs-uri": "uri", "c-uri": "uri",
        "c-useragent": "user_agent", "cs-user-agent": "user_agent", "sc-status": "status", "cs-referer": "referer",
        "cs-host": "vhost", "c-ip": "client", "cs-username": "user", "cs-bytes": "bytes"}
_FIELD = re.compile(r'("[^"]+"|\b[A-Za-z_][A-Za-z0-9_.]*)\s*(?:=|<>|!=|<|>|\bILIKE\b|\bLIKE\b|\bGLOB\b|\bIN\b|\bIS\b)')
_REGEX_FIELD = re.compile(r'regexp_matches\(\s*("[^"]+"|[A-Za-z_][A-Za-z0-9_.]*)')
# Which timeline sources a rule's log source can match.  Rules for log sources the case does not hold
# (cloud audit logs, proxies, network devices...) are not evaluated: they are listed as skipped.
PRODUCT_SOURCES = {"windows": ("EVTX",), "linux": ("SYSLOG", "SHELL", "LOGIN")}
CATEGORY_SOURCES = {"webserver": ("WEB",), "proxy": ("WEB",)}
SERVICE_SOURCES = {("linux", "auditd"): ("AUDIT",), ("linux", "auth"): ("SYSLOG",), ("linux", "syslog"): ("SYSLOG",),
                   ("linux", "sshd"): ("SYSLOG",), ("linux", "cron"): ("SYSLOG", "CRON"), ("linux", "sudo"): ("SYSLOG",),
                   ("linux", "vsftpd"): ("SYSLOG",), ("linux", "clamav"): ("SYSLOG",), ("linux", "guacamole"): ("SYSLOG",),
                   ("apache", None): ("WEB",), ("nginx", None): ("WEB",)}

_SQL_WORDS = {"AND", "OR", "NOT", "NULL", "TRUE", "FALSE", "SELECT", "FROM", "WHERE", "logs"}


@dataclass
class SigmaRun:
    """What a Sigma run did: matches, and every rule that could not be used, with why."""

    matches: pd.DataFrame
    rules_loaded: int = 0
    rules_converted: int = 0
    rules_matched: int = 0
    conversion_errors: dict[str, str] = field(default_factory=dict)  # rule id or file -> reason
    evaluation_errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # rule id -> log source the timeline does not hold
    seconds: float = 0.0


def _require():
    try:
        from sigma.collection import SigmaCollection  # noqa: F401
        from sigma_backend_duckdb.backend import DuckDBBackend  # noqa: F401
    except ImportError as exc:
        raise ParserUnavailable("Sigma needs pySigma: pip install 'forensics[sigma]'") from exc


def load_rules(paths: str | Path | Iterable[str | Path]) -> tuple[list[Any], dict[str, str]]:
    """SigmaRule objects from files and folders (``*.yml``), and the files that could not be read."""
    _require()
    from sigma.collection import SigmaCollection
    from sigma.rule import SigmaRule

    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.rglob("*.yml")) if p.is_dir() else [p]
    rules, errors = [], {}
    for f in files:
        try:
            for r in SigmaCollection.from_yaml(f.read_text(encoding="utf-8")).rules:
                if isinstance(r, SigmaRule):
                    rules.append(r)
        except Exception as exc:  # a bad rule file is reported, not fatal
            errors[str(f)] = f"{type(exc).__name__}: {exc}"
    return rules, errors


def _backend():
    from sigma.pipelines.sysmon import sysmon_pipeline
    from sigma.pipelines.windows import windows_logsource_pipeline
    from sigma.conversion.base import TextQueryBackend
    from sigma_backend_duckdb.backend import DuckDBBackend

    class Backend(DuckDBBackend):
        # The upstream backend leaves a quote inside a regular expression unescaped, which ends the SQL
        # string early (e.g. HackTool - WSASS Execution): double it, as SQL wants.
        re_escape_char = "'"
        re_escape = ("'",)
        # Keyword rules (Linux syslog, web server errors...): full-text search over the row's message and fields
        unbound_value_str_expression = "_raw ILIKE '%' || {value} || '%'"
        unbound_value_num_expression = "_raw LIKE '%' || {value} || '%'"
        unbound_value_re_expression = "regexp_matches(_raw, {value})"

        # the upstream DuckDB backend refuses value-only expressions outright; the generic text backend
        # renders them with the expressions above
        def convert_condition_val_str(self, cond, state):
            return TextQueryBackend.convert_condition_val_str(self, cond, state)

        def convert_condition_val_num(self, cond, state):
            return TextQueryBackend.convert_condition_val_num(self, cond, state)

        def convert_condition_val_re(self, cond, state):
            return TextQueryBackend.convert_condition_val_re(self, cond, state)

    return Backend(processing_pipeline=sysmon_pipeline() + windows_logsource_pipeline())


def _fields(sql: str) -> set[str]:
    where = sql.split(" WHERE ", 1)[-1]
    where = re.sub(r"'(?:[^']|'')*'", "''", where)  # drop string literals
    names = set()
    for m in list(_FIELD.finditer(where)) + list(_REGEX_FIELD.finditer(where)):
        name = m.group(1).strip('"')
        if name.upper() not in _SQL_WORDS and not name.replace(".", "").isdigit():
            names.add(name)
    return names


def _column(name: str, record: str | None = None) -> str:
    """The SQL giving a Sigma field: a column, an EVTX EventData/UserData value, a web or Linux field of
    ``attrs`` (or, for audit events read record by record, of the record ``record``)."""
    if name in _BUILTIN:
        return f'{_BUILTIN[name]} AS "{name}"'
    key = name.replace('"', "")
    parts = [f"json_extract_string(attrs, '$.Event.EventData.\"{key}\"')",
             f"json_extract_string(attrs, '$.Event.UserData.*.\"{key}\"')[1]"]
    if record is not None:
        parts.insert(0, f"json_extract_string({record}, '$.\"{key}\"')")
    parts.append(f"json_extract_string(attrs, '$.\"{_WEB.get(key, key)}\"')")
    return f"coalesce({', '.join(parts)}) AS \"{name}\""


def _sources(rule: Any) -> tuple[str, ...] | None:
    ls = rule.logsource
    if ls.category in CATEGORY_SOURCES:
        return CATEGORY_SOURCES[ls.category]
    if (ls.product, ls.service) in SERVICE_SOURCES:
        return SERVICE_SOURCES[(ls.product, ls.service)]
    if ls.product == "linux" and ls.category:  # process_creation, file_event... on Linux: Sysmon for Linux, auditd
        return ("AUDIT", "EVTX") if ls.category == "process_creation" else None
    return PRODUCT_SOURCES.get(ls.product) if ls.product else None


def _rule_sql(sql: str, sources: tuple[str, ...]) -> str:
    """The rule's query over the ``base`` table: only its log source's rows, only the columns it uses.
    Audit events (several records each) are matched record by record, as auditd rules are written."""
    fields = sorted(_fields(sql) | {"EventID", "Channel"})
    where = "source IN (" + ", ".join(f"'{s}'" for s in sources) + ")"
    if sources == ("AUDIT",):
        cols = ", ".join(['event_hash AS "__event_hash"'] + [_column(f, record="rec") for f in fields])
        inner = (f"SELECT {cols} FROM (SELECT *, unnest(coalesce(json_extract(attrs, '$.records[*]'), [NULL::JSON])) AS rec "
                 f"FROM base WHERE {where})")
    else:
        cols = ", ".join(['event_hash AS "__event_hash"'] + [_column(f) for f in fields])
        inner = f"SELECT {cols} FROM base WHERE {where}"
    return _quote_fields(sql, fields).replace("SELECT * FROM logs", f'SELECT DISTINCT "__event_hash" FROM ({inner}) AS logs', 1)


def _quote_fields(sql: str, fields: list[str]) -> str:
    """Quote the rule's field names outside string literals (a field called ``Binary`` is a SQL type name)."""
    names = [f for f in fields if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f)]
    if not names:
        return sql
    rx = re.compile(r'(?<!["\w.])(' + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r')(?!["\w.(])')
    parts = re.split(r"('(?:[^']|'')*')", sql)
    return "".join(p if i % 2 else rx.sub(r'"\1"', p) for i, p in enumerate(parts))


def run(timeline: Any, rules: str | Path | Iterable[str | Path]) -> SigmaRun:
    """Apply Sigma rules to a :class:`forensics.Timeline` (all of it, or its filtered rows)."""
    import duckdb

    from forensics.query import Timeline

    if not isinstance(timeline, Timeline):
        raise TypeError("sigma.run takes a forensics.Timeline (forensics.open(CASE))")
    t0 = time.monotonic()
    loaded, errors = load_rules(rules)
    backend = _backend()
    queries: dict[str, tuple[Any, str]] = {}
    for rule in loaded:
        rid = str(rule.id or rule.title)
        try:
            out = backend.convert_rule(rule)
            if len(out) != 1 or not isinstance(out[0], str):
                raise ValueError(f"unexpected conversion output ({len(out)} queries)")
            queries[rid] = (rule, out[0])
        except Exception as exc:
            errors[rid] = f"{type(exc).__name__}: {exc}"
    files = timeline._files()
    res = SigmaRun(matches=pd.DataFrame(), rules_loaded=len(loaded), rules_converted=len(queries),
                   conversion_errors=errors)
    if not files:
        res.matches = pd.DataFrame(columns=["rule_id", "title", "level", "tags", "event_hash"])
        return res
    con = duckdb.connect()
    scope = " AND ".join(f"({w})" for w in timeline._where) or "TRUE"
    # the rows once, in memory: each rule then reads only the fields it names
    con.execute(f"CREATE TEMP TABLE base AS SELECT event_hash, source, event_id, channel, provider, host, message, attrs "
                f"FROM read_parquet({files!r}) WHERE {scope}")
    present = {s for (s,) in con.sql("SELECT DISTINCT source FROM base").fetchall()}
    hits = []
    for rid, (rule, sql) in queries.items():
        sources = _sources(rule)
        if not sources or not present.intersection(sources):
            ls = rule.logsource
            res.skipped[rid] = f"log source product={ls.product} category={ls.category} service={ls.service}: no such rows"
            continue
        q = _rule_sql(sql, sources)
        try:
            found = con.sql(q).fetchall()
        except Exception as exc:
            res.evaluation_errors[rid] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            continue
        if found:
            tags = [str(t) for t in (rule.tags or [])]
            level = str(rule.level.name).lower() if rule.level else None
            hits += [(rid, rule.title, level, tags, h) for (h,) in found]
    con.close()
    matches = pd.DataFrame(hits, columns=["rule_id", "title", "level", "tags", "event_hash"])
    if len(matches):
        rows = timeline.where(event_hash=sorted(set(matches["event_hash"]))).to_pandas(
            ["host", "event_id", "message", "evidence_id", "evidence_path", "record_ref", "event_hash"])
        matches = matches.merge(rows, on="event_hash", how="left")
        matches["tags"] = matches.apply(lambda r: [f"sigma:{r['rule_id']}"] + r["tags"], axis=1)
        matches = matches.sort_values(["timestamp", "rule_id"]).reset_index(drop=True)
    res.matches = matches
    res.rules_matched = matches["rule_id"].nunique() if len(matches) else 0
    res.seconds = time.monotonic() - t0
    return res


def save(timeline: Any, result: SigmaRun, rules: Any = None) -> dict[str, Any]:
    """Store a run's matches in the case (``detections/``, committed with a custody entry), so the rows'
    ``tags`` carry ``sigma:<rule id>`` and the rules' ATT&CK tags from then on."""
    import pyarrow as pa

    from timeline.store import DETECTIONS_SCHEMA, CaseStore, new_run_id, write_parquet

    store = CaseStore(timeline.case_dir)
    run_id = new_run_id()
    staging = store.staging_dir(run_id)
    m = result.matches
    table = pa.Table.from_pydict(
        {"event_hash": list(m["event_hash"]) if len(m) else [], "tags": list(m["tags"]) if len(m) else [],
         "rule_id": list(m["rule_id"]) if len(m) else [], "title": list(m["title"]) if len(m) else [],
         "level": list(m["level"]) if len(m) else []}, schema=DETECTIONS_SCHEMA)
    part = staging / f"detections-{run_id}.parquet"
    write_parquet(table, part, sort=False)
    return store.commit(run_id, [], [part], action_detail="sigma", rules=[str(r) for r in (rules or [])],
                        rules_loaded=result.rules_loaded, rules_converted=result.rules_converted,
                        rules_matched=result.rules_matched, rows_tagged=int(m["event_hash"].nunique()) if len(m) else 0,
                        conversion_errors=len(result.conversion_errors), evaluation_errors=len(result.evaluation_errors))
