"""Sigma rules over the whole timeline: parsed by pySigma, compiled here to DuckDB SQL, evaluated in few scans.

``run(data, rules=PATH)`` loads SigmaHQ-format rules (a file or a folder); pySigma parses them and applies
the Sysmon + Windows log-source pipelines (a rule's log source becomes conditions on ``EventID`` and
``Channel``); this module turns each rule's condition tree into one SQL boolean expression
(:class:`_Compiler`), with Sigma's semantics rather than SQL's:

* strings match case-insensitively (``cased``: exactly); a value is text, never a pattern: ``_``, ``%``
  and ``\\`` in a value are literal, only Sigma's ``*`` and ``?`` are wildcards;
* ``not`` of a field the event lacks is true (SQL's NULL is read as "no match" before negating);
* ``re`` (with ``i``/``m``/``s``) is RE2 through DuckDB: a search, case-sensitive unless ``i``; a pattern
  RE2 cannot run (look-around, back-references) is reported for that rule;
* ``cidr`` matches dotted IPv4 (also written ``::ffff:a.b.c.d``) and IPv6 prefixes; ``lt``/``lte``/``gt``/
  ``gte`` compare numbers; ``fieldref`` compares two fields of the event (case-insensitively);
  ``exists``, ``Field: null``, ``windash``, ``base64``/``base64offset``, ``utf16le``/``wide``, ``all``,
  keywords (unbound values: one case-insensitive RE2 search of the row's message and fields) and the
  ``1 of``/``all of`` conditions are pySigma's, rendered here.

Fields: ``EventID``, ``Channel``, ``Provider_Name``, ``Computer`` are timeline columns; every other field is
read from the record in ``attrs``: EVTX EventData or UserData, the web collector's keys (SigmaHQ's W3C names
such as ``cs-uri-query`` mapped), and for auditd each record of the event.

Evaluation (:class:`_Evaluator`): the rules are grouped by log source (same timeline sources, same
log-source conditions, same EventIDs they can match; keyword rules apart, as they read the whole record).  Chunk by chunk, each group's
rows are selected by the timeline's own columns and the fields its rules use are read out of ``attrs``
once (one JSON parse per row for all of them) into the group's table; at the end each rule of the group is
one ``WHERE`` over that table (UNION ALL'd by batches).  A :class:`forensics.Timeline` is streamed in chunks
of :data:`CHUNK_ROWS` rows with DuckDB's memory capped (:data:`MEMORY_LIMIT`, spilling to a temporary
folder); a pandas DataFrame of timeline rows is cut in the same chunks; a dask DataFrame is evaluated
partition by partition with the same SQL (``map_partitions``).

A rule that cannot be converted or evaluated is reported with its reason and never stops the run.  The
result has one row per (rule, matched row); :func:`findings` groups them in bursts per rule and host.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from timeline.errors import ParserUnavailable, QueryError
from timeline.schema import to_pandas
from timeline.schema import UNKNOWN_HOST  # re-exported: the one placeholder of an unknown host

__all__ = ["FINDING_COLUMNS", "LEVELS", "RULES_ENV", "UNKNOWN_HOST", "SigmaRun", "default_rules", "findings",
           "load_rules", "run", "save", "saved"]

log = logging.getLogger(__name__)

LEVELS = ("informational", "low", "medium", "high", "critical")
RULES_ENV = "FORENSICS_SIGMA_RULES"  # folders of rules used when none are given (os.pathsep-separated)
CHUNK_ROWS = 200_000  # timeline rows read at once: bounds the memory a run holds outside DuckDB
MEMORY_LIMIT = "1GB"  # DuckDB's share of a run; past it DuckDB spills to a temporary folder
RULES_PER_QUERY = 64  # rules of one group evaluated by one UNION ALL query

# Sigma field -> timeline column (and its SQL type in the rows' table)
_BUILTIN = {"EventID": ("event_id", "INTEGER"), "Channel": ("channel", "VARCHAR"),
            "Provider_Name": ("provider", "VARCHAR"), "Computer": ("host", "VARCHAR")}
_RAW = "_raw"  # keywords: the row's message and fields, as one text
# Web server log fields (W3C names in SigmaHQ's webserver rules) -> the web collector's attrs keys
_WEB = {"cs-method": "method", "cs-uri-query": "query", "cs-uri-stem": "path", "cs-uri": "uri", "c-uri": "uri",
        "c-useragent": "user_agent", "cs-user-agent": "user_agent", "sc-status": "status", "cs-referer": "referer",
        "cs-host": "vhost", "c-ip": "client", "cs-username": "user", "cs-bytes": "bytes"}
# Which timeline sources a rule's log source can match.  Rules for log sources the case does not hold
# (cloud audit logs, proxies, network devices...) are not evaluated: they are listed as skipped.
PRODUCT_SOURCES = {"windows": ("EVTX",), "linux": ("SYSLOG", "SHELL", "LOGIN")}
CATEGORY_SOURCES = {"webserver": ("WEB",), "proxy": ("WEB",)}
SERVICE_SOURCES = {("linux", "auditd"): ("AUDIT",), ("linux", "auth"): ("SYSLOG",), ("linux", "syslog"): ("SYSLOG",),
                   ("linux", "sshd"): ("SYSLOG",), ("linux", "cron"): ("SYSLOG", "CRON"), ("linux", "sudo"): ("SYSLOG",),
                   ("linux", "vsftpd"): ("SYSLOG",), ("linux", "clamav"): ("SYSLOG",), ("linux", "guacamole"): ("SYSLOG",),
                   ("apache", None): ("WEB",), ("nginx", None): ("WEB",)}

# the timeline columns a run reads, and those a match carries
_READ = ("event_hash", "source", "event_id", "channel", "provider", "host", "message", "attrs")  # what is evaluated
_CARRY = ("timestamp", "host", "event_id", "message", "evidence_id", "evidence_path", "record_ref", "event_hash")
_MATCH_COLUMNS = ["rule_id", "title", "level", "tags", "timestamp", "local_time", "host", "event_id", "message",
                  "evidence_id", "evidence_path", "record_ref", "event_hash"]
FINDING_COLUMNS = ["timestamp", "host", "level", "technique", "techniques", "finding", "detector", "rule_id", "title",
                   "count", "first", "last", "evidence_id", "evidence_path", "record_ref"]


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
    rows: int = 0  # rows evaluated


def _require():
    try:
        import sigma.collection  # noqa: F401
        import sigma.pipelines.sysmon  # noqa: F401
        import sigma.pipelines.windows  # noqa: F401
        from sigma.modifiers import SigmaWideModifier, modifier_mapping
    except ImportError as exc:
        raise ParserUnavailable("Sigma needs pySigma: pip install 'forensics[sigma]'") from exc
    # the Sigma specification names UTF-16LE "utf16le" (alias "wide"); pySigma 1.5 knows only "wide"
    modifier_mapping.setdefault("utf16le", SigmaWideModifier)


def default_rules() -> list[Path]:
    """The rule folders named by ``$FORENSICS_SIGMA_RULES`` (``os.pathsep``-separated); [] when unset.
    Nothing is ever downloaded."""
    return [Path(p) for p in os.environ.get(RULES_ENV, "").split(os.pathsep) if p.strip()]


# --- loading ----------------------------------------------------------------------------------------

def _rule_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.rglob("*.yml")) if p.is_dir() else [p]
    return files


def load_rules(paths: str | Path | Iterable[str | Path]) -> tuple[list[Any], dict[str, str]]:
    """SigmaRule objects from files and folders (``*.yml``), and what could not be used: a file that could
    not be read (key: its path), a correlation rule (key: its id; correlations are not evaluated)."""
    _require()
    import yaml
    from sigma.collection import SigmaCollection
    from sigma.rule import SigmaRule
    from sigma.rule.base import SigmaYAMLLoader  # libyaml, as pySigma reads single rules; ~10x its collection loader

    rules, errors = [], {}
    for f in _rule_files(paths):
        try:
            docs = list(yaml.load_all(f.read_text(encoding="utf-8"), Loader=SigmaYAMLLoader))
            for r in SigmaCollection.from_dicts(docs).rules:
                if isinstance(r, SigmaRule):
                    rules.append(r)
                else:
                    errors[str(getattr(r, "id", None) or getattr(r, "title", f))] = (
                        f"{type(r).__name__}: correlation rules are not evaluated ({f})")
        except Exception as exc:  # a bad rule file is reported, not fatal
            errors[str(f)] = f"{type(exc).__name__}: {exc}"
    return rules, errors


def _pipeline():
    from sigma.pipelines.sysmon import sysmon_pipeline
    from sigma.pipelines.windows import windows_logsource_pipeline

    return sysmon_pipeline() + windows_logsource_pipeline()


# --- compiling: a rule's condition tree -> one SQL boolean expression ---------------------------------

class _Unsupported(Exception):
    """A Sigma construct this engine does not evaluate (reported per rule)."""


def _q(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lc(name: str) -> str:
    """The column holding the lower-cased copy of field ``name``."""
    return _ident("lc:" + name)


def _like(parts: list) -> str:
    """A LIKE pattern (ESCAPE '\\') from SigmaString parts: text literal, Sigma wildcards as % and _."""
    from sigma.types import SpecialChars

    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        elif p == SpecialChars.WILDCARD_MULTI:
            out.append("%")
        else:
            out.append("_")
    return "".join(out)


def _parts(s: Any, lower: bool) -> list:
    """A SigmaString's parts, adjacent text merged (lower-cased if asked); placeholders refused."""
    from sigma.types import SpecialChars

    out: list = []
    for p in s.s:
        if isinstance(p, str):
            p = p.lower() if lower else p
            if out and isinstance(out[-1], str):
                out[-1] += p
            else:
                out.append(p)
        elif isinstance(p, SpecialChars):
            out.append(p)
        else:
            raise _Unsupported(f"placeholder {getattr(p, 'name', p)!r} has no value here (expand modifier)")
    return out


def _text_match(col: str, parts: list) -> str:
    """``col`` (text) matches the Sigma string ``parts``."""
    from sigma.types import SpecialChars

    M = SpecialChars.WILDCARD_MULTI
    text = [p for p in parts if isinstance(p, str)]
    special = len(parts) - len(text)
    if not special:
        return f"{col} = {_q(text[0] if text else '')}"
    if parts == [M]:
        return f"{col} IS NOT NULL"
    if len(parts) == 3 and parts[0] == M and parts[2] == M and len(text) == 1:
        return f"contains({col}, {_q(text[0])})"
    if len(parts) == 2 and parts[1] == M and len(text) == 1:
        return f"starts_with({col}, {_q(text[0])})"
    if len(parts) == 2 and parts[0] == M and len(text) == 1:
        return f"ends_with({col}, {_q(text[0])})"
    return f"{col} LIKE {_q(_like(parts))} ESCAPE '\\'"


class _Compiler:
    """Sigma condition tree -> SQL over a table with one column per field (``"Image"``), a lower-cased copy
    where needed (``"lc:Image"``), the builtin columns and ``"lc:_raw"``.  ``col(field, lower)`` gives the SQL
    of a field; it records what the rule needs (``fields``: raw, ``lower``: lower-cased)."""

    def __init__(self, col: Callable[[str, bool], str] | None = None):
        self.fields: set[str] = set()
        self.lower: set[str] = set()
        self._col = col

    def col(self, name: str, lower: bool = False) -> str:
        if self._col is not None:
            return self._col(name, lower)
        (self.lower if lower else self.fields).add(name)
        return _lc(name) if lower else _ident(name)

    def cond(self, c: Any) -> str:
        from sigma.conditions import (ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR,
                                      ConditionValueExpression)

        if isinstance(c, ConditionOR):
            if all(isinstance(a, ConditionValueExpression) for a in c.args):  # a list of keywords: one search
                alts = [self.keyword_regex(a.value) for a in c.args]
                if all(x is not None for x in alts):
                    return f"regexp_matches({self.col(_RAW)}, {_q('(?is)(?:' + '|'.join(alts) + ')')})"
            return "(" + " OR ".join(self.cond(a) for a in c.args) + ")"
        if isinstance(c, ConditionAND):
            return "(" + " AND ".join(self.cond(a) for a in c.args) + ")"
        if isinstance(c, ConditionNOT):
            # Sigma: a selection that cannot match (field missing: SQL NULL) is false, so its negation is true
            return f"(NOT coalesce({self.cond(c.args[0])}, FALSE))"
        if isinstance(c, ConditionFieldEqualsValueExpression):
            return self.match(c.field, c.value)
        if isinstance(c, ConditionValueExpression):
            return self.keyword(c.value)
        raise _Unsupported(f"condition {type(c).__name__}")

    def match(self, name: str, v: Any) -> str:
        from sigma.types import (SigmaBool, SigmaCasedString, SigmaCIDRExpression, SigmaCompareExpression,
                                 SigmaExists, SigmaExpansion, SigmaFieldReference, SigmaNull, SigmaNumber,
                                 SigmaRegularExpression, SigmaString, SigmaTimestampPart)

        is_int = _BUILTIN.get(name, ("", ""))[1] == "INTEGER"
        if isinstance(v, SigmaExpansion):  # windash, base64offset...: any of the variants
            return "(" + " OR ".join(self.match(name, x) for x in v.values) + ")"
        if isinstance(v, SigmaString):
            cased = isinstance(v, SigmaCasedString)
            parts = _parts(v, lower=not cased)
            if is_int:
                if len(parts) == 1 and isinstance(parts[0], str) and parts[0].strip().lstrip("-").isdigit():
                    return f"{self.col(name)} = {int(parts[0])}"
                return _text_match(f"CAST({self.col(name)} AS VARCHAR)", parts)
            return _text_match(self.col(name, lower=not cased), parts)
        if isinstance(v, SigmaTimestampPart):
            raise _Unsupported("time-part modifiers (minute, hour, day...) are not evaluated")
        if isinstance(v, SigmaNumber):
            return f"{self.col(name)} = {v.number}" if is_int else f"{self.col(name)} = {_q(str(v.number))}"
        if isinstance(v, SigmaBool):
            return f"{self.col(name, lower=True)} = {_q(str(v.boolean).lower())}"
        if isinstance(v, SigmaNull):
            return f"{self.col(name)} IS NULL"
        if isinstance(v, SigmaExists):
            return f"{self.col(name)} IS {'NOT ' if v.exists else ''}NULL"
        if isinstance(v, SigmaRegularExpression):
            return self.regex(self.col(name), v)
        if isinstance(v, SigmaCIDRExpression):
            return self.cidr(name, v)
        if isinstance(v, SigmaCompareExpression):
            ops = {"LT": "<", "LTE": "<=", "GT": ">", "GTE": ">=", "NEQ": "<>"}
            return f"TRY_CAST({self.col(name)} AS DOUBLE) {ops[v.op.name]} {v.number.number}"
        if isinstance(v, SigmaFieldReference):
            a, b = self.col(name, lower=True), self.col(v.field, lower=True)
            if v.starts_with and v.ends_with:
                return f"contains({a}, {b})"
            if v.starts_with:  # fieldref|startswith: the field starts with the other field's value
                return f"starts_with({a}, {b})"
            if v.ends_with:
                return f"ends_with({a}, {b})"
            return f"{a} = {b}"
        raise _Unsupported(f"value type {type(v).__name__}")

    @staticmethod
    def regex(col: str, v: Any) -> str:
        flags = "".join(sorted(v.sigma_to_re_flag[f] for f in v.flags))
        pattern = (f"(?{flags})" if flags else "") + str(v.regexp)
        return f"regexp_matches({col}, {_q(pattern)})"

    def cidr(self, name: str, v: Any) -> str:
        import ipaddress

        from sigma.types import SigmaString

        net = v.network
        col = self.col(name, lower=True)
        ors = [_text_match(col, _parts(SigmaString(p), lower=True)) for p in v.expand("*")]
        if isinstance(net, ipaddress.IPv4Network):  # Windows writes IPv4 peers of dual-stack sockets as ::ffff:a.b.c.d
            ors += [_text_match(col, _parts(SigmaString("::ffff:" + p), lower=True)) for p in v.expand("*")]
        return "(" + " OR ".join(ors) + ")"

    def keyword(self, v: Any) -> str:
        """An unbound value: a case-insensitive search of the row's message and fields, as one RE2 search
        (``attrs`` is JSON, so a value with ``\\`` or ``"`` is also looked for as JSON writes it)."""
        body = self.keyword_regex(v)
        if body is None:  # a regular expression given as keyword: as written
            return self.regex(self.col(_RAW), v)
        return f"regexp_matches({self.col(_RAW)}, {_q('(?is)(?:' + body + ')')})"

    @staticmethod
    def keyword_regex(v: Any) -> str | None:
        """The RE2 alternatives a keyword value matches (None for a ``|re`` keyword)."""
        from sigma.types import SigmaExpansion, SigmaNumber, SigmaRegularExpression, SigmaString, SpecialChars

        if isinstance(v, SigmaExpansion):
            alts = [_Compiler.keyword_regex(x) for x in v.values]
            return None if any(a is None for a in alts) else "|".join(alts)
        if isinstance(v, SigmaRegularExpression):
            return None
        if isinstance(v, SigmaNumber):
            v = SigmaString(str(v.number))
        if not isinstance(v, SigmaString):
            raise _Unsupported(f"keyword of type {type(v).__name__}")
        parts = _parts(v, lower=False)
        variants = [parts]
        if any(isinstance(p, str) and ("\\" in p or '"' in p) for p in parts):
            variants.append([json.dumps(p, ensure_ascii=False)[1:-1] if isinstance(p, str) else p for p in parts])
        wild = {SpecialChars.WILDCARD_MULTI: ".*", SpecialChars.WILDCARD_SINGLE: "."}
        return "|".join("".join(_re_literal(p) if isinstance(p, str) else wild[p] for p in ps) for ps in variants)


def _re_literal(text: str) -> str:
    """``text`` as an RE2 literal."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


_COND_PREFIX = re.compile(r"^(_cond_[a-z]+) and \((.*)\)$", re.S)


def _prefilter(rule: Any) -> str:
    """The rule's log-source conditions (those the pipelines added) as SQL over the timeline's own columns,
    so a group's rows are chosen before any field is read from ``attrs``; TRUE when there are none."""
    from sigma.conditions import SigmaCondition

    names = None
    for c in rule.detection.parsed_condition:
        text, found = c.condition, []
        while m := _COND_PREFIX.match(text):
            found.append(m.group(1))
            text = m.group(2)
        if names is not None and found != names:
            return "TRUE"  # several conditions with different log-source conditions: no common filter
        names = found

    def base_col(name: str, lower: bool) -> str:
        if name not in _BUILTIN:
            raise _Unsupported(name)
        col = _BUILTIN[name][0]
        return f"__lc_{col}" if lower else col  # lower-cased once per chunk (_Evaluator.add)

    out = []
    for name in names or []:
        try:
            out.append(_Compiler(base_col).cond(SigmaCondition(name, rule.detection).parsed))
        except _Unsupported:
            continue  # a condition on a field read from attrs: left to the rule's own expression
    return " AND ".join(out) or "TRUE"


def _sources(rule: Any) -> tuple[str, ...] | None:
    ls = rule.logsource
    if ls.category in CATEGORY_SOURCES:
        return CATEGORY_SOURCES[ls.category]
    if (ls.product, ls.service) in SERVICE_SOURCES:
        return SERVICE_SOURCES[(ls.product, ls.service)]
    if ls.product == "linux" and ls.category:  # process_creation, file_event... on Linux: Sysmon for Linux, auditd
        return ("AUDIT", "EVTX") if ls.category == "process_creation" else None
    return PRODUCT_SOURCES.get(ls.product) if ls.product else None


def _event_ids(c: Any) -> frozenset[int] | None:
    """The EventIDs a row must have for condition ``c`` to hold; None when any may (sound, not tight: an
    AND needs what any of its terms needs, an OR what all of its terms need together)."""
    from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionOR
    from sigma.types import SigmaExpansion, SigmaNumber, SigmaString

    def value(v: Any) -> frozenset[int] | None:
        if isinstance(v, SigmaNumber) and isinstance(v.number, int):
            return frozenset([v.number])
        if isinstance(v, SigmaString) and not v.contains_special() and str(v).strip().isdigit():
            return frozenset([int(str(v))])
        if isinstance(v, SigmaExpansion):
            ids = [value(x) for x in v.values]
            return None if any(i is None for i in ids) else frozenset().union(*ids)
        return None

    if isinstance(c, ConditionFieldEqualsValueExpression):
        return value(c.value) if c.field == "EventID" else None
    if isinstance(c, ConditionAND):
        known = [i for i in map(_event_ids, c.args) if i is not None]
        return frozenset.intersection(*known) if known else None
    if isinstance(c, ConditionOR):
        ids = [_event_ids(a) for a in c.args]
        return None if any(i is None for i in ids) else frozenset().union(*ids)
    return None


@dataclass(frozen=True)
class _Rule:
    k: int  # index in the run
    rid: str
    title: str
    level: str | None
    tags: tuple[str, ...]
    sources: tuple[str, ...] | None
    prefilter: str
    expr: str
    fields: frozenset[str]  # fields read raw
    lower: frozenset[str]  # fields read lower-cased
    event_ids: frozenset[int] | None  # the EventIDs it can match (None: any)

    @property
    def raw(self) -> bool:
        return _RAW in self.fields or _RAW in self.lower


def _compile(rule: Any, k: int, pipeline: Any) -> _Rule:
    pipeline.apply(rule)
    comp = _Compiler()
    trees = [c.parsed for c in rule.detection.parsed_condition]
    exprs = [comp.cond(t) for t in trees]
    expr = exprs[0] if len(exprs) == 1 else "(" + " OR ".join(exprs) + ")"
    ids = [_event_ids(t) for t in trees]
    level = str(rule.level.name).lower() if rule.level else None
    return _Rule(k, str(rule.id or rule.title), str(rule.title), level, tuple(str(t) for t in (rule.tags or [])),
                 _sources(rule), _prefilter(rule), expr, frozenset(comp.fields), frozenset(comp.lower),
                 None if any(i is None for i in ids) else frozenset().union(*ids))


@dataclass(frozen=True)
class _Group:
    """Rules evaluated over the same rows: same timeline sources, log-source conditions and EventIDs."""

    sources: tuple[str, ...]
    prefilter: str
    event_ids: frozenset[int] | None
    rules: tuple[_Rule, ...]

    @property
    def raw(self) -> bool:
        """Keyword rules read the whole record: evaluated chunk by chunk, never kept."""
        return self.rules[0].raw

    @property
    def where(self) -> str:
        ids = self.event_ids
        by_id = "" if ids is None else f" AND event_id IN ({', '.join(map(str, sorted(ids)))})" if ids else " AND FALSE"
        return "source IN (" + ", ".join(map(_q, self.sources)) + f") AND ({self.prefilter}){by_id}"

    @property
    def fields(self) -> list[str]:
        return sorted(set().union(*(r.fields | r.lower for r in self.rules)))

    @property
    def lower(self) -> list[str]:
        return sorted(set().union(*(r.lower for r in self.rules)))


def _plan(rules: list[_Rule]) -> list[_Group]:
    groups: dict[tuple, list[_Rule]] = {}
    for r in rules:  # keyword rules apart: they read the whole record, the others only some fields
        ids = tuple(sorted(r.event_ids)) if r.event_ids is not None else None
        groups.setdefault((r.sources, r.prefilter, ids, r.raw), []).append(r)
    return [_Group(s, p, None if ids is None else frozenset(ids), tuple(rs))
            for (s, p, ids, _), rs in sorted(groups.items(), key=lambda kv: repr(kv[0]))]


# --- evaluating ----------------------------------------------------------------------------------------

def _fields_sql(group: _Group, rows: str) -> str:
    """SELECT over ``rows`` (the chunk's table) giving ``__row`` and one column per field of the group
    (and its lower-cased copy where a rule needs one).  All fields of a row come from one JSON parse of
    ``attrs`` (DuckDB's multi-path extraction); UserData is read only where the record has it."""
    attrs_fields = [f for f in group.fields if f not in _BUILTIN and f != _RAW]
    evtx = "EVTX" in group.sources
    other = any(s != "EVTX" for s in group.sources)
    audit = group.sources == ("AUDIT",)
    src = f"SELECT * FROM {rows} WHERE {group.where}"
    if audit:  # auditd rules describe one record of an event: match record by record
        src = (f"SELECT *, unnest(coalesce(json_extract(attrs, '$.records[*]'), [NULL::JSON])) AS __rec "
               f"FROM ({src})")
    paths: list[str] = []
    pick: dict[str, list[str]] = {f: [] for f in attrs_fields}
    if attrs_fields:
        for f in attrs_fields:
            key = f.replace('"', '\\"')
            if evtx:
                paths.append(f'$.Event.EventData."{key}"')
                pick[f].append(f"__e[{len(paths)}]")
                pick[f].append(f"__u[{attrs_fields.index(f) + 1}]")
            if other:
                paths.append('$."' + _WEB.get(f, f).replace('"', '\\"') + '"')
                pick[f].append(f"__e[{len(paths)}]")
        if evtx:
            paths.append("$.Event.UserData")
        plist = "[" + ", ".join(map(_q, paths)) + "]"
        ulist = "[" + ", ".join(_q('$."' + f.replace('"', '\\"') + '"') for f in attrs_fields) + "]"
        inner = f"SELECT *, json_extract_string(attrs, {plist}) AS __e FROM ({src})"
        if evtx:
            inner = (f"SELECT *, CASE WHEN __e[{len(paths)}] IS NOT NULL THEN json_extract_string("
                     f"json_extract(__e[{len(paths)}], '$.*')[1], {ulist}) END AS __u FROM ({inner})")
        if audit:
            inner = f"SELECT *, json_extract_string(__rec, {ulist}) AS __r FROM ({inner})"
            for i, f in enumerate(attrs_fields):
                pick[f].insert(0, f"__r[{i + 1}]")
        src = inner
    cols = ["__row"]
    for f in group.fields:
        if f in _BUILTIN:
            col, typ = _BUILTIN[f]
            sql = f"TRY_CAST({col} AS INTEGER)" if typ == "INTEGER" else col
        elif f == _RAW:
            sql = "concat_ws(' ', message, attrs)"
        else:
            sql = pick[f][0] if len(pick[f]) == 1 else f"coalesce({', '.join(pick[f])})"
        cols.append(f"{sql} AS {_ident(f)}")
    lower = [f"lower({_ident(f)}) AS {_lc(f)}" for f in group.lower]
    return f"SELECT *{', ' if lower else ''}{', '.join(lower)} FROM (SELECT {', '.join(cols)} FROM ({src}))"


def _union(rules: Iterable[_Rule], table: str) -> str:
    return " UNION ALL ".join(f"SELECT __row, {r.k} AS __k FROM {table} WHERE {r.expr}" for r in rules)


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _wide(rules: Iterable[_Rule], source: str) -> str:
    """One pass over ``source`` evaluating every rule (for rules over a chunk: its fields computed once)."""
    cases = ", ".join(f"CASE WHEN {r.expr} THEN {r.k} END" for r in rules)
    return f"SELECT __row, __k FROM (SELECT __row, unnest([{cases}]) AS __k FROM ({source})) WHERE __k IS NOT NULL"


class _Evaluator:
    """Rows in (chunk by chunk), matches out.  Each chunk's rows of each group are appended to the group's
    table, their fields read out of ``attrs`` once; at the end every rule runs once over its group's table
    (DuckDB's planning costs about 1 ms per rule, so it is paid once, not per chunk).  The tables hold only
    the fields the rules use; past :data:`MEMORY_LIMIT` DuckDB spills them to ``spill``.  Keyword rules,
    which read the whole record, are evaluated on each chunk as it comes and keep nothing."""

    def __init__(self, plan: list[_Group], spill: str, failed: dict[int, str]):
        import duckdb

        self.plan, self.failed = plan, failed
        self.con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": spill})
        self.rows = 0
        self._tables: set[int] = set()
        self._found: list[pa.Table] = []

    def _run(self, rules: list[_Rule], query: Callable[[list[_Rule]], str]) -> None:
        """Run ``query`` of the rules in batches; a failing batch is run rule by rule, and a rule that fails
        alone goes into ``failed`` (k -> reason) and is not run again."""
        rules = [r for r in rules if r.k not in self.failed]
        for i in range(0, len(rules), RULES_PER_QUERY):
            batch = rules[i:i + RULES_PER_QUERY]
            try:
                self._found.append(self.con.sql(query(batch)).to_arrow_table())
            except Exception:  # noqa: BLE001 - find the rule(s) at fault, keep the others
                for r in batch:
                    try:
                        self._found.append(self.con.sql(query([r])).to_arrow_table())
                    except Exception as exc:  # noqa: BLE001 - reported per rule
                        self.failed[r.k] = _first_line(exc)

    def add(self, batch: pa.Table) -> None:
        """Take one chunk of rows (columns :data:`_READ`)."""
        import pyarrow.compute as pc

        batch = batch.combine_chunks()  # one chunk: taking rows out of many small ones copies them all
        batch = batch.set_column(batch.column_names.index("event_id"), "event_id",
                                 pc.cast(batch.column("event_id"), pa.int32()))
        for col, typ in _BUILTIN.values():  # what the groups' log-source conditions compare, lower-cased once
            if typ == "VARCHAR":
                batch = batch.append_column(f"__lc_{col}", pc.utf8_lower(batch.column(col)))
        batch = batch.append_column("__row", pa.array(range(self.rows, self.rows + batch.num_rows), pa.int64()))
        first, self.rows = self.rows, self.rows + batch.num_rows
        # The groups choose their rows on the small columns; only those rows' records go to DuckDB (reading
        # a column of JSON records out of Arrow costs as much as the records weigh, for every query).
        small = [c for c in batch.column_names if c not in ("attrs", "message")]
        self.con.register("__chunk", batch.select(small))
        try:
            self.con.execute("CREATE OR REPLACE TEMP TABLE __small AS SELECT * FROM __chunk")
        finally:
            self.con.unregister("__chunk")
        # every group's rows in one pass: (group, row) pairs, by group then row
        cases = ", ".join(f"CASE WHEN {g.where} THEN {gi} END" for gi, g in enumerate(self.plan))
        sel = self.con.sql(f"SELECT __g, __row - {first} AS __i FROM (SELECT __row, unnest([{cases}]) AS __g "
                           f"FROM __small) WHERE __g IS NOT NULL ORDER BY __g, __i").to_arrow_table()
        groups = sel.column("__g").to_numpy()
        index = sel.column("__i").to_numpy()
        bounds = np.flatnonzero(np.diff(groups)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(groups)]):
            if lo == hi:
                continue
            gi, group = int(groups[lo]), self.plan[int(groups[lo])]
            rows = index[lo:hi]
            self.con.register("__rows", batch if len(rows) == batch.num_rows else batch.take(pa.array(rows)))
            try:
                sql = _fields_sql(group, "__rows")
                if group.raw:
                    self._run(list(group.rules), lambda rs, sql=sql: _wide(rs, sql))
                elif gi in self._tables:
                    self.con.execute(f"INSERT INTO __g{gi} {sql}")
                else:
                    self.con.execute(f"CREATE TEMP TABLE __g{gi} AS {sql}")
                    self._tables.add(gi)
            finally:
                self.con.unregister("__rows")

    def pairs(self) -> pd.DataFrame:
        """(``__row``, ``__k``) of every rule ``k`` matching row ``__row``, each pair once."""
        for gi in sorted(self._tables):
            table = f"__g{gi}"
            if self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
                self._run(list(self.plan[gi].rules), lambda rs, table=table: _union(rs, table))
            self.con.execute(f"DROP TABLE {table}")
        self._tables.clear()
        schema = pa.schema([("__row", pa.int64()), ("__k", pa.int32())])
        hits = [t.cast(schema) for t in self._found if t.num_rows]
        table = pa.concat_tables(hits).group_by(["__row", "__k"]).aggregate([]) if hits else schema.empty_table()
        return table.to_pandas().sort_values(["__row", "__k"]).reset_index(drop=True)

    def close(self) -> None:
        self.con.close()


def _chunks_of_timeline(tl: Any, spill: str) -> Iterator[pa.Table]:
    con, where = tl._con()
    try:
        con.execute(f"SET temp_directory = {_q(spill)}")
        con.execute("SET memory_limit = '256MB'")
        reader = con.sql(f"SELECT {', '.join(map(_ident, _READ))} FROM timeline_all WHERE {where}").to_arrow_reader(CHUNK_ROWS)
        pending: list[pa.RecordBatch] = []
        n = 0
        for batch in reader:
            pending.append(batch)
            n += batch.num_rows
            if n >= CHUNK_ROWS:
                yield pa.Table.from_batches(pending)
                pending, n = [], 0
        if pending:
            yield pa.Table.from_batches(pending)
    finally:
        con.close()


def _timeline_matches(tl: Any, plan: list[_Group], failed: dict[int, str], spill: str) -> tuple[pd.DataFrame, int]:
    """The matches of a Timeline (streamed in chunks), with the rows' carried columns, and the rows read."""
    ev = _Evaluator(plan, spill, failed)
    hashes: list[pa.Array] = []
    try:
        for chunk in _chunks_of_timeline(tl, spill):
            hashes.append(chunk.column("event_hash").combine_chunks())
            if plan:
                ev.add(chunk)
        pairs = ev.pairs()
    finally:
        ev.close()
    if not len(pairs):
        return pairs, ev.rows
    pairs["event_hash"] = pa.concat_arrays(hashes).take(pa.array(pairs["__row"], pa.int64())).to_pylist()
    con, where = tl._con()
    try:
        con.register("__hits", pa.table({"event_hash": sorted(set(pairs["event_hash"]))}))
        cols = ", ".join(f"t.{_ident(c)}" for c in _CARRY)
        rows = con.sql(f"SELECT {cols} FROM timeline_all t SEMI JOIN __hits h USING (event_hash) "
                       f"WHERE {where}").to_arrow_table()
        rows = to_pandas(rows)  # the timeline's dtypes (event_id Int32), as Timeline.to_pandas() and the dask engine
    finally:
        con.close()
    rows = rows.drop_duplicates("event_hash")
    return pairs[["event_hash", "__k"]].merge(rows, on="event_hash", how="inner"), ev.rows


def _arrow_of_frame(df: pd.DataFrame) -> pa.Table:
    part = df[list(_READ)].copy()
    for c in ("source", "channel", "provider", "host", "message", "attrs", "event_hash"):
        part[c] = part[c].astype(object)
    part["event_id"] = pd.to_numeric(part["event_id"], errors="coerce").astype("Int32")
    # explicit types: a chunk whose column is all null (a dask partition of web rows has no channel) stays text
    schema = pa.schema([(c, pa.int32() if c == "event_id" else pa.string()) for c in _READ])
    return pa.Table.from_pandas(part, schema=schema, preserve_index=False)


def _frame_matches(df: pd.DataFrame, plan: list[_Group], failed: dict[int, str]) -> pd.DataFrame:
    """The matches of a pandas DataFrame of timeline rows (evaluated in chunks), with the carried columns."""
    missing = [c for c in dict.fromkeys(_READ + _CARRY) if c not in df.columns]
    if missing:
        raise QueryError(f"sigma.run needs the timeline's columns; missing: {', '.join(missing)}")
    if not plan or not len(df):
        return pd.DataFrame({"__k": []})
    with tempfile.TemporaryDirectory(prefix="forensics-sigma-") as spill:
        ev = _Evaluator(plan, spill, failed)
        try:
            for i in range(0, len(df), CHUNK_ROWS):
                ev.add(_arrow_of_frame(df.iloc[i:i + CHUNK_ROWS]))
            pairs = ev.pairs()
        finally:
            ev.close()
    carried = [c for c in df.columns if c in _CARRY or c == "local_time"]
    out = df.iloc[pairs["__row"].to_numpy()][carried].reset_index(drop=True)
    out["__k"] = pairs["__k"].to_numpy()
    return out


def _partition_matches(part: pd.DataFrame, plan: list[_Group], failed: dict[int, str], meta: pd.DataFrame) -> pd.DataFrame:
    """One dask partition's matches (the same SQL as the other engines); a rule failing at run time comes
    back as a row with ``__error``."""
    errors: dict[int, str] = dict(failed)
    hits = _frame_matches(part, plan, errors).reindex(columns=meta.columns)
    new = {k: v for k, v in errors.items() if k not in failed}
    if new:
        extra = pd.DataFrame({"__k": list(new), "__error": list(new.values())})
        hits = pd.concat([hits, extra.reindex(columns=hits.columns)], ignore_index=True)
    return hits.astype(meta.dtypes.to_dict())


def _partition_meta(local_time: Any = None) -> pd.DataFrame:
    """The frame each dask partition returns: the carried columns, ``__k`` and ``__error``."""
    cols = {"timestamp": "datetime64[ns, UTC]", **({"local_time": local_time} if local_time is not None else {}),
            "host": object, "event_id": "Int32", "message": object, "evidence_id": object, "evidence_path": object,
            "record_ref": object, "event_hash": object, "__k": "Int32", "__error": object}
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in cols.items()})


def _is_dask(data: Any) -> bool:
    return type(data).__module__.startswith("dask") and hasattr(data, "map_partitions")


def _present_sources(data: Any) -> set[str]:
    from forensics.query import Timeline

    if isinstance(data, Timeline):
        t = data._query("DISTINCT source")
        return {str(s) for s in t.column(0).to_pylist()}
    if _is_dask(data):
        # each partition's distinct sources (no shuffle), read from the one column
        return {str(s) for s in data["source"].map_partitions(lambda s: s.drop_duplicates()).compute()}
    return {str(s) for s in data["source"].dropna().unique()}


def run(data: Any, rules: str | Path | Iterable[str | Path]) -> SigmaRun:
    """Apply Sigma rules to timeline rows: a :class:`forensics.Timeline` (all of it, or its filtered rows),
    a pandas DataFrame of timeline rows (as ``Timeline.to_pandas()`` returns) or a dask DataFrame
    (``forensics.open(case, engine="dask")``, evaluated partition by partition)."""
    from forensics.query import Timeline

    if not (isinstance(data, (Timeline, pd.DataFrame)) or _is_dask(data)):
        raise TypeError("sigma.run takes a forensics.Timeline, a DataFrame of timeline rows or a dask DataFrame")
    t0 = time.monotonic()
    loaded, errors = load_rules(rules)
    pipeline = _pipeline()
    compiled: list[_Rule] = []
    for rule in loaded:
        rid = str(rule.id or rule.title)
        try:
            compiled.append(_compile(rule, len(compiled), pipeline))
        except _Unsupported as exc:
            errors[rid] = f"unsupported: {exc}"
        except Exception as exc:  # noqa: BLE001 - a rule pySigma cannot convert: reported
            errors[rid] = f"{type(exc).__name__}: {exc}"
    res = SigmaRun(matches=pd.DataFrame(columns=_MATCH_COLUMNS), conversion_errors=errors,
                   rules_loaded=len(loaded) + sum(1 for e in errors.values() if e.startswith("SigmaCorrelationRule")),
                   rules_converted=len(compiled))
    present = _present_sources(data)
    usable = []
    for r in compiled:
        if r.sources and present.intersection(r.sources):
            usable.append(r)
        else:
            ls = next(x for x in loaded if str(x.id or x.title) == r.rid).logsource
            res.skipped[r.rid] = f"log source product={ls.product} category={ls.category} service={ls.service}: no such rows"
    plan = _plan(usable)
    failed: dict[int, str] = {}
    if _is_dask(data):
        import dask

        data = data[[c for c in (*dict.fromkeys(_READ + _CARRY), "local_time") if c in data.columns]]  # read no more
        meta = _partition_meta(data["local_time"].dtype if "local_time" in data.columns else None)
        lazy = data.map_partitions(_partition_matches, plan, failed, meta, meta=meta)
        found, rows = dask.compute(lazy, data.shape[0])  # one pass over the partitions
        for k, why in found[found["__error"].notna()][["__k", "__error"]].itertuples(index=False):
            failed.setdefault(int(k), why)
        found, res.rows = found[found["__error"].isna()], int(rows)
    elif isinstance(data, Timeline):
        with tempfile.TemporaryDirectory(prefix="forensics-sigma-") as spill:
            found, res.rows = _timeline_matches(data, plan, failed, spill)
    else:
        found, res.rows = _frame_matches(data, plan, failed), len(data)
    by_k = {r.k: r for r in compiled}
    for k, why in failed.items():
        res.evaluation_errors[by_k[k].rid] = why
    res.matches = _matches(found, by_k, data.tz if isinstance(data, Timeline) else None)
    res.rules_matched = res.matches["rule_id"].nunique() if len(res.matches) else 0
    res.seconds = time.monotonic() - t0
    log.debug("sigma: %d rules, %d rows, %d matches, %.1f s", len(compiled), res.rows, len(res.matches), res.seconds)
    return res


def _matches(found: pd.DataFrame, by_k: dict[int, _Rule], tz: str | None) -> pd.DataFrame:
    if not len(found):
        return pd.DataFrame(columns=_MATCH_COLUMNS)
    m = found.reset_index(drop=True)
    rules = [by_k[int(k)] for k in m["__k"]]
    m["rule_id"] = [r.rid for r in rules]
    m["title"] = [r.title for r in rules]
    m["level"] = [r.level for r in rules]
    m["tags"] = [[f"sigma:{r.rid}", *r.tags] for r in rules]
    m["timestamp"] = pd.to_datetime(m["timestamp"], utc=True)
    m["event_id"] = m["event_id"].astype("Int32")
    for c in ("rule_id", "title", "level", "host", "message", "evidence_id", "evidence_path", "record_ref", "event_hash"):
        m[c] = m[c].astype(object)  # the same dtype whatever the engine and pandas version
    if tz is not None or "local_time" not in m.columns:
        m["local_time"] = m["timestamp"].dt.tz_convert(tz or "UTC")
    m = m.drop_duplicates(["rule_id", "event_hash"])
    return m[_MATCH_COLUMNS].sort_values(["timestamp", "rule_id", "event_hash"]).reset_index(drop=True)


# --- findings: matches grouped in bursts, for the story --------------------------------------------------

_TECHNIQUE = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.I)


def _technique_ids(tags: Any) -> list[str]:
    """The ATT&CK technique ids of a rule's tags, in order (``attack.t1003.002`` -> ``T1003.002``)."""
    return [m.group(1).upper() for t in tags if (m := _TECHNIQUE.match(str(t)))]


def findings(run: SigmaRun, burst: str = "1h") -> pd.DataFrame:
    """One row per (rule, host, burst): a burst is a run of a rule's matches on one host with gaps shorter
    than ``burst``.  Columns: :data:`FINDING_COLUMNS` (provenance of the burst's first record)."""
    from forensics.query import _duration

    gap = pd.Timedelta(_duration(burst))
    m = run.matches
    if m is None or not len(m):
        return pd.DataFrame(columns=FINDING_COLUMNS)
    m = m.assign(host=m["host"].astype(object).where(m["host"].notna() & (m["host"].astype(str) != ""), UNKNOWN_HOST))
    m = m.sort_values(["rule_id", "host", "timestamp", "event_hash"], kind="stable").reset_index(drop=True)
    new = (m["rule_id"] != m["rule_id"].shift()) | (m["host"] != m["host"].shift()) | \
          (m["timestamp"] - m["timestamp"].shift() >= gap)
    m["__burst"] = new.cumsum()
    rows = []
    for _, b in m.groupby("__burst", sort=False):
        first = b.iloc[0]
        techniques = list(dict.fromkeys(_technique_ids(first["tags"])))
        n = len(b)
        rows.append({"timestamp": first["timestamp"], "host": first["host"],
                     "level": str(first["level"]).lower() if first["level"] else None,
                     "technique": techniques[0] if techniques else None, "techniques": techniques,
                     "finding": f"{first['title']} ({n} event{'s' if n != 1 else ''})", "detector": "sigma",
                     "rule_id": first["rule_id"], "title": first["title"], "count": n,
                     "first": first["timestamp"], "last": b["timestamp"].iloc[-1],
                     "evidence_id": first["evidence_id"], "evidence_path": first["evidence_path"],
                     "record_ref": first["record_ref"]})
    out = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    return out.sort_values(["timestamp", "host", "rule_id"], kind="stable").reset_index(drop=True)


# --- saving ----------------------------------------------------------------------------------------------

def save(timeline: Any, result: SigmaRun, rules: Any = None) -> dict[str, Any]:
    """Store a run's matches in the case (``detections/``, committed with a custody entry), so the rows'
    ``tags`` carry ``sigma:<rule id>`` and the rules' ATT&CK tags from then on."""
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


def saved(timeline: Any) -> SigmaRun:
    """The detections saved in the case (:func:`save`, ``forensics hunt --sigma ... --save``) on the rows of
    this view of the timeline, as a :class:`SigmaRun` whose ``matches`` are those of the runs saved (one row
    per rule and matched row); :func:`findings` and ``story(sigma=...)`` read it like a fresh run.  Empty when
    nothing was saved.  Needs no Sigma rules and no pySigma."""
    files = timeline._detection_files()
    if not files:
        return SigmaRun(matches=pd.DataFrame(columns=_MATCH_COLUMNS))
    con, where = timeline._con()
    try:
        cols = ", ".join(f"t.{_ident(c)}" for c in _CARRY)
        # the view's filters apply to the timeline's rows alone (a filter on tags reads the rows' merged tags)
        found = con.sql(f"SELECT d.rule_id, d.title, d.level, d.tags AS rule_tags, {cols} "
                        f"FROM (SELECT * FROM timeline_all WHERE {where}) t "
                        "JOIN detection_files d USING (event_hash)").to_arrow_table().to_pandas()
    except Exception as exc:  # duckdb's errors: one clear message
        raise QueryError(f"reading the saved detections failed: {exc}") from exc
    finally:
        con.close()
    if not len(found):
        return SigmaRun(matches=pd.DataFrame(columns=_MATCH_COLUMNS))
    m = found.assign(tags=[list(t) for t in found.pop("rule_tags")])
    m["timestamp"] = pd.to_datetime(m["timestamp"], utc=True)
    m["local_time"] = m["timestamp"].dt.tz_convert(timeline.tz)
    m["event_id"] = m["event_id"].astype("Int32")
    for c in ("rule_id", "title", "level", "host", "message", "evidence_id", "evidence_path", "record_ref", "event_hash"):
        m[c] = m[c].astype(object)
    m = m.drop_duplicates(["rule_id", "event_hash"])  # a rule saved by two runs matched each row once
    m = m[_MATCH_COLUMNS].sort_values(["timestamp", "rule_id", "event_hash"]).reset_index(drop=True)
    return SigmaRun(matches=m, rules_matched=int(m["rule_id"].nunique()), rows=len(timeline))
