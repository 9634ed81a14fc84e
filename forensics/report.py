"""The case report: one self-contained HTML file for people who will not run Python.

``forensics report CASE -o report.html [--from T] [--to T] [--host H]`` (or :func:`write_report`) writes,
in this order:

1. a short summary: the case, the time range of the events in scope (local zone and UTC), the hosts, the
   findings per level, the first and the last finding;
2. the attack story: the curated findings of :func:`forensics.hunt.story` and the Sigma detections saved in
   the case (``forensics hunt CASE --sigma RULES --save``, grouped in bursts per rule and host), in time
   order, with their level, and each with its provenance (evidence id, evidence file, record) in a
   details cell;
3. the activity and story figures;
4. one section per family: logons and brute force, lateral movement, credential access, persistence
   (services, scheduled tasks, accounts, groups), PowerShell, log clearing and recovery inhibition, web
   attacks, encryption, Sigma detections grouped by rule;
5. the case's numbers (those of ``forensics info``), the evidence and its hashes, the collections and the
   custody log.

``--from``/``--to`` (either alone too) and ``--host`` (repeatable) limit the report to a time window and to
hosts; the custody entry records them.  Long tables show their first rows and keep the rest in a
collapsed ``<details>`` (at most :data:`MAX_TABLE_ROWS` rows per table, the total always stated).

The file fetches nothing: no script, no stylesheet or font from elsewhere; figures are PNGs embedded as
``data:`` URIs, and a Content-Security-Policy forbids any other load.  Every value that comes from the
evidence is HTML-escaped once (evidence is hostile); missing values are empty cells, a missing host is
:data:`forensics.sigma.UNKNOWN_HOST`.  The report is recorded in the custody log with its SHA-256
(``forensics verify`` re-checks it while it exists).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import io
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from forensics.case import Case, tool_versions
from forensics.query import Timeline, _output_path, _utc, publish_output
from forensics import sigma
from forensics.sigma import LEVELS, UNKNOWN_HOST
from timeline.errors import OutputError, ParserUnavailable, QueryError

__all__ = ["render_report", "write_report", "MAX_TABLE_ROWS", "STORY_COLUMNS"]

log = logging.getLogger(__name__)

MAX_TABLE_ROWS = 200  # rows written per findings table; the total is always stated
MAX_STORY_ROWS = 2000  # findings written in the story table
INLINE_ROWS = 10  # rows of a findings table shown open; the rest in a collapsed <details>
STORY_INLINE_ROWS = 100  # findings of the story shown open
TEXT_CHARS = 600  # longest text shown in a cell (PowerShell script blocks...); the length is stated
STORY_COLUMNS = ["timestamp", "local_time", "host", "level", "technique", "finding", "detector", "rule_id", "count",
                 "first", "last", "evidence_id", "evidence_path", "record_ref"]
PROVENANCE = ["evidence_id", "evidence_path", "record_ref"]
_LEVEL_RANK = {lv: i for i, lv in enumerate(reversed(LEVELS))}  # critical 0 ... informational 4
_HOST_COLUMNS = ("host", "destination")

_CSS = """
:root { --ink: #1a1a1a; --muted: #5a5a5a; --line: #cfd3d8; --head: #eef1f5; --accent: #8a1c1c; --zebra: #f8f9fb; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Noto Sans", "Noto Sans Bengali", "Noto Sans Devanagari", Arial, sans-serif;
       color: var(--ink); margin: 16px auto; max-width: 1400px; padding: 0 16px; font-size: 13px; line-height: 1.35; }
h1 { font-size: 20px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 22px 0 6px; border-bottom: 2px solid var(--accent); padding-bottom: 2px; }
h3 { font-size: 13.5px; margin: 14px 0 4px; }
.meta { color: var(--muted); margin: 0 0 6px; font-size: 12px; } .note { color: var(--muted); font-size: 12px; margin: 3px 0; }
.scope { margin: 0 0 6px; padding: 4px 8px; background: #fff6e0; border: 1px solid #e6c873; display: inline-block; }
nav { margin: 0 0 4px; font-size: 12px; } nav a { color: var(--accent); margin-right: 12px; white-space: nowrap; }
.wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 2px 0 6px; table-layout: fixed; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
th { background: var(--head); font-weight: 600; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.time { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 10.5px; overflow-wrap: normal; }
td .utc { color: var(--muted); }
.mono, td.mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 11px; }
table.kv { width: auto; table-layout: auto; min-width: 60%; } table.kv th { width: 13em; }
table.kv td { overflow-wrap: normal; }
.lv { display: inline-block; padding: 0 5px; border-radius: 3px; font-size: 11px; font-weight: 600; white-space: nowrap;
      -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.lv-critical { background: #6d0f0f; color: #fff; } .lv-high { background: #c0392b; color: #fff; }
.lv-medium { background: #e67e22; color: #fff; } .lv-low { background: #f1d36b; color: #222; }
.lv-informational { background: #d5dbe1; color: #222; }
details.src summary { cursor: pointer; color: var(--accent); font-family: "DejaVu Sans Mono", "Liberation Mono", monospace;
                      font-size: 11px; }
details.src div { font-size: 11px; margin-top: 2px; }
details.more > summary, details.group > summary { cursor: pointer; color: var(--accent); margin: 2px 0 4px; }
figure { margin: 6px 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figure .frame { max-height: 860px; overflow-y: auto; }  /* a tall figure (many hosts) scrolls in its frame */
figcaption { color: var(--muted); font-size: 12px; }
.bad { color: var(--accent); font-weight: 600; }
@page { size: A4 landscape; margin: 12mm; }
@media print {  /* on paper nothing is collapsed */
  details::details-content { content-visibility: visible; display: block; }
  details > summary { list-style: none; } details.src > summary { display: none; }
  figure .frame { max-height: none; overflow: visible; }
  body { margin: 0; max-width: none; zoom: 0.74; }  /* the 1,400 px layout on an A4 landscape page */
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  thead { display: table-header-group; }
  tr, figure { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

# column widths (px) of the fixed table layout, by kind of column; "text" columns share the rest
_WIDTH = {"time": 240, "host": 190, "num": 92, "flag": 92, "short": 104, "level": 104, "source": 150, "addr": 140,
          "name": 170, "text": None}
_TEXT_MIN = 140  # below this a text column scrolls sideways instead of squeezing
_NUM_COLUMNS = {"count", "files", "directories", "notes", "attempts", "max_in_window", "users", "logon_type", "event_id",
                "requests", "matches", "bursts", "hosts", "rows"}
_SHORT_COLUMNS = {"technique", "ATT&CK", "outcome", "action", "change", "start_type", "status", "extension",
                  "detector", "by", "method"}
_ADDR_COLUMNS = {"src_ip", "source", "dst_ip"}
_NAME_COLUMNS = {"user", "flags", "log", "account", "service_name", "task", "process", "member", "group", "rule_id"}
_FLAG_COLUMNS = {"success_after", "download", "encoded", "obfuscated"}


# --- cells -----------------------------------------------------------------------------------------------

def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value)) if pd.api.types.is_scalar(value) else False
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str:
    """The text of a value as the report shows it: missing values empty, whole floats without ``.0``,
    booleans yes/no, lists joined."""
    if _missing(value):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return ", ".join(_text(v) for v in value if not _missing(v))
    return str(value)


def _e(value: Any) -> str:
    """Escaped text of a value (evidence is hostile): escaped here, once."""
    return html.escape(_text(value), quote=True)


def _long(value: Any, limit: int = TEXT_CHARS) -> str:
    """Escaped text, cut at ``limit`` characters with the full length stated."""
    text = _text(value)
    if len(text) <= limit:
        return html.escape(text, quote=True)
    return html.escape(text[:limit], quote=True) + f' <span class="note">… ({len(text):,} characters)</span>'


def _host(value: Any) -> str:
    text = _text(value)
    return text if text else UNKNOWN_HOST


def _n(value: int) -> str:
    return f"{int(value):,}"


def _t(ts: Any, tz: str | None = None) -> str:
    """A time as ISO 8601 (nanoseconds kept), in ``tz`` when given, else UTC."""
    if _missing(ts):
        return ""
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return t.tz_convert(tz or "UTC").isoformat()


def _tt(ts: Any, tz: str) -> str:
    """A time cell's markup: local time, then UTC on a second line (once when the zone is UTC)."""
    local, utc = _t(ts, tz), _t(ts)
    return _e(local) if local == utc else f'{_e(local)}<br><span class="utc">{_e(utc)}</span>'


def _level(value: Any) -> str:
    lv = _text(value).lower()
    return f'<span class="lv lv-{html.escape(lv)}">{html.escape(lv)}</span>' if lv in _LEVEL_RANK else html.escape(lv)


def _source(r: Any) -> str:
    """The provenance cell: the record in the summary, the evidence file and id when opened."""
    ref, path, eid = _text(r.get("record_ref")), _text(r.get("evidence_path")), _text(r.get("evidence_id"))
    if not (ref or path or eid):
        return ""
    label = ref.split()[0] if ref else (path.replace("\\", "/").rsplit("/", 1)[-1] or eid)
    return (f'<details class="src"><summary>{html.escape(label)}</summary><div>'
            f'file <span class="mono">{html.escape(path)}</span><br>record <span class="mono">{html.escape(ref)}</span>'
            f'<br>evidence <span class="mono">{html.escape(eid)}</span></div></details>')


@dataclass
class _Col:
    header: str
    kind: str  # a key of _WIDTH
    cell: Callable[[Any], str]  # row (a mapping) -> trusted markup


def _col_for(name: str, df: pd.DataFrame, zone: str) -> _Col:
    if name == "source (provenance)":
        return _Col("source", "source", _source)
    s = df[name] if name in df.columns else None
    if s is not None and pd.api.types.is_datetime64_any_dtype(s):
        head = f"{name} ({zone} / UTC)" if zone != "UTC" else f"{name} (UTC)"
        return _Col(head, "time", lambda r, c=name: _tt(r.get(c), zone))
    if name in _HOST_COLUMNS:
        return _Col(name, "host", lambda r, c=name: html.escape(_host(r.get(c))))
    if name == "level":
        return _Col(name, "level", lambda r: _level(r.get("level")))
    if name in _NUM_COLUMNS:
        return _Col(name, "num", lambda r, c=name: _e(r.get(c)))
    if name in _FLAG_COLUMNS:
        return _Col(name, "flag", lambda r, c=name: _e(r.get(c)))
    if name in _SHORT_COLUMNS:
        return _Col(name, "short", lambda r, c=name: _e(r.get(c)))
    if name in _ADDR_COLUMNS:
        return _Col(name, "addr", lambda r, c=name: _e(r.get(c)))
    if name in _NAME_COLUMNS:
        return _Col(name, "name", lambda r, c=name: _long(r.get(c)))
    return _Col(name, "text", lambda r, c=name: _long(r.get(c)))


def _table_html(cols: Sequence[_Col], rows: Iterable[Any], cls: str = "", row_attrs: Callable[[Any], str] | None = None,
                tid: str = "") -> str:
    """A fixed-layout table: each column's width comes from its kind, text columns share the rest (and the
    table scrolls sideways rather than squeeze them below ``_TEXT_MIN``)."""
    fixed = sum(_WIDTH[c.kind] for c in cols if _WIDTH[c.kind])
    texts = sum(1 for c in cols if not _WIDTH[c.kind])
    out = [f'<div class="wrap"><table{f" id={chr(34)}{tid}{chr(34)}" if tid else ""} class="{cls}" '
           f'style="min-width:{fixed + texts * _TEXT_MIN}px"><colgroup>']
    out += [f'<col style="width:{_WIDTH[c.kind]}px">' if _WIDTH[c.kind] else "<col>" for c in cols]
    out.append("</colgroup><thead><tr>")
    out += [f'<th class="{"num" if c.kind == "num" else ""}">{html.escape(c.header)}</th>' for c in cols]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append(f"<tr{row_attrs(r) if row_attrs else ''}>")
        for c in cols:
            cls_ = {"num": "num", "time": "time"}.get(c.kind, "")
            out.append(f'<td class="{cls_}">{c.cell(r)}</td>' if cls_ else f"<td>{c.cell(r)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.to_dict("records")


def _grid(df: pd.DataFrame | None, columns: Sequence[str], zone: str, what: str = "rows", inline: int = INLINE_ROWS,
          limit: int = MAX_TABLE_ROWS, api: str = "", row_attrs: Callable[[Any], str] | None = None,
          tid: str = "", cls: str = "") -> str:
    """A findings DataFrame as a table: its first ``inline`` rows open, the next ones (up to ``limit``) in a
    collapsed ``<details>``; the provenance columns become one details cell; the total is stated."""
    if df is None or df.empty:
        return '<p class="note">none found</p>'
    names = [c for c in columns if c in df.columns and c not in PROVENANCE]
    if any(c in df.columns for c in PROVENANCE):
        names.append("source (provenance)")
    cols = [_col_for(c, df, zone) for c in names]
    shown = _records(df.head(limit))
    total = len(df)
    note = f"{_n(total)} {what}"
    if total > limit:
        note += (f"; the first {_n(limit)} are in this report (all of them: "
                 f'<span class="mono">{html.escape(api or "forensics.open(CASE)")}</span>)')
    out = [f'<p class="note">{note}.</p>', _table_html(cols, shown[:inline], cls, row_attrs, tid)]
    if len(shown) > inline:
        out.append(f'<details class="more"><summary>show {_n(len(shown) - inline)} more {what}</summary>'
                   + _table_html(cols, shown[inline:], cls, row_attrs) + "</details>")
    return "".join(out)


def _kv(rows: list[tuple[str, str, Any, bool]]) -> str:
    """(label, key, value, is_number) rows: each value cell carries data-info=key for checking."""
    cells = []
    for label, key, value, is_num in rows:
        shown = _n(value) if is_num else _e(value)
        cells.append(f'<tr><th>{_e(label)}</th><td class="{"num" if is_num else "mono"}" data-info="{_e(key)}" '
                     f'data-value="{_e(value)}">{shown}</td></tr>')
    return '<table class="kv"><tbody>' + "".join(cells) + "</tbody></table>"


def _simple(headers: Sequence[str], rows: Iterable[Sequence[Any]], num: Sequence[int] = (),
            attrs: Sequence[str] | None = None, widths: Sequence[int | None] | None = None) -> str:
    """A small table of trusted cells: (``html``,) 1-tuples are markup, anything else is escaped."""
    cols = [_Col(h, "num" if i in num else "text", lambda r, i=i: r[i][0] if isinstance(r[i], tuple) else _e(r[i]))
            for i, h in enumerate(headers)]
    rows = list(rows)
    if widths:
        out = ['<div class="wrap"><table><colgroup>']
        out += [f'<col style="width:{w}px">' if w else "<col>" for w in widths]
        out.append("</colgroup><thead><tr>")
    else:
        out = ['<div class="wrap"><table style="table-layout:auto"><thead><tr>']
    out += [f'<th class="{"num" if c.kind == "num" else ""}">{html.escape(c.header)}</th>' for c in cols]
    out.append("</tr></thead><tbody>")
    for k, r in enumerate(rows):
        out.append(f"<tr{attrs[k] if attrs else ''}>")
        out += [f'<td class="{"num" if c.kind == "num" else ""}">{c.cell(r)}</td>' for c in cols]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


# --- scope -----------------------------------------------------------------------------------------------

@dataclass
class Scope:
    """What a report covers: a time window (either end may be open) and hosts; the whole case by default."""

    start: _dt.datetime | None = None  # UTC, included
    end: _dt.datetime | None = None  # UTC, excluded
    hosts: list[str] = field(default_factory=list)

    @property
    def whole_case(self) -> bool:
        return self.start is None and self.end is None and not self.hosts

    def describe(self, zone: str) -> str:
        if self.whole_case:
            return "whole case"
        parts = []
        if self.start is not None:
            parts.append(f"from {_t(self.start, zone)}" + (f" ({_t(self.start)})" if zone != "UTC" else ""))
        if self.end is not None:
            parts.append(f"to {_t(self.end, zone)}" + (f" ({_t(self.end)})" if zone != "UTC" else "") + " (excluded)")
        if self.hosts:
            parts.append("hosts " + ", ".join(self.hosts))
        return "; ".join(parts)


def _scoped(case_dir: str | os.PathLike, tz: str | None, start: Any, end: Any,
            host: str | Sequence[str] | None, known_hosts: Iterable[str]) -> tuple[Timeline, Scope]:
    """The case's timeline narrowed to the window and the hosts.  Times without a zone are read in ``tz`` or
    the case's zone; :data:`UNKNOWN_HOST` selects the rows without a host; a host the case does not hold is
    a QueryError (a typo would otherwise give an empty report)."""
    tl = Timeline(case_dir, tz=tz)
    scope = Scope()
    if start is not None and str(start).strip():
        scope.start = _utc(start, tl.zone)
        tl = tl._with("timestamp >= ?", scope.start)
    if end is not None and str(end).strip():
        scope.end = _utc(end, tl.zone)
        tl = tl._with("timestamp < ?", scope.end)
    if scope.start is not None and scope.end is not None and scope.end <= scope.start:
        raise QueryError(f"--to {end!r} is not after --from {start!r}")
    hosts = [host] if isinstance(host, str) else list(host or [])
    hosts = list(dict.fromkeys(h for h in hosts if h is not None and str(h) != ""))
    if hosts:
        known = set(known_hosts)
        unknown = [h for h in hosts if h not in known and h != UNKNOWN_HOST]
        if unknown:
            raise QueryError(f"no host {', '.join(map(repr, unknown))} in the case; its hosts are: "
                             + ", ".join(sorted(known)) + f" (rows without a host: {UNKNOWN_HOST!r})")
        named = [h for h in hosts if h != UNKNOWN_HOST]
        clauses, params = [], []
        if named:
            clauses.append(f"host IN ({', '.join('?' for _ in named)})")
            params += named
        if UNKNOWN_HOST in hosts:
            clauses.append("host IS NULL OR host = ''")
        tl = tl._with("(" + " OR ".join(clauses) + ")", *params)
        scope.hosts = hosts
    return tl, scope


# --- the story and the Sigma detections -----------------------------------------------------------------

def _story(tl: Timeline, run: Any) -> pd.DataFrame:
    """:func:`forensics.hunt.story` of this view with the Sigma run given (the detections saved in the case),
    with the columns :data:`STORY_COLUMNS`, level "" when none, hosts as the report shows them."""
    from forensics import hunt

    out = hunt.story(tl, sigma=run).reindex(columns=STORY_COLUMNS)
    if not len(out):
        return out
    out["level"] = out["level"].map(lambda v: _text(v).lower())
    out["detector"] = out["detector"].map(lambda v: _text(v) or "hunt")
    out["host"] = out["host"].map(_host)
    return out.reset_index(drop=True)


def _figures(tl: Timeline, story: pd.DataFrame) -> str:
    try:
        from forensics import plots

        act = plots.activity_counts(tl)  # ~200 buckets over the case's plausible times
        freq = act.freq
        activity = _png(plots.activity_heatmap(act, log_scale=True))
        story_png = _png(plots.story_timeline(story)) if not story.empty else None
    except ParserUnavailable as exc:
        return f'<p class="note">figures omitted: {_e(exc)}</p>'
    note = f" {_e(act.note)}." if act.note else ""
    out = [f'<figure><div class="frame"><img alt="activity per host, rows per {_e(freq)} bucket" src="{activity}"></div>'
           f"<figcaption>Activity: timeline rows per host per {_e(freq)} (local time, {_e(tl.tz)}; "
           f"logarithmic colour scale).{note}</figcaption></figure>"]
    if story_png:
        out.append(f'<figure><div class="frame"><img alt="the story: findings per host over time" src="{story_png}"></div>'
                   "<figcaption>The story: one mark per finding, coloured by ATT&amp;CK technique.</figcaption></figure>")
    return "".join(out)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    with warnings.catch_warnings():  # host names in scripts the plot font lacks (Bengali...) draw as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _custody_summary(e: dict[str, Any]) -> str:
    a = e.get("action")
    if a == "commit":
        s = (f"run {e.get('run')}: {e.get('rows_written', 0):,} rows written, {e.get('duplicates_dropped', 0):,} duplicates, "
             f"{len(e.get('files', []))} file(s)")
        if "records_read" in e:
            s += f"; {e['records_read']:,} records read, {e.get('errors', 0):,} errors, {e.get('warnings', 0):,} warnings"
        if e.get("action_detail") == "sigma":
            s += (f"; Sigma: {e.get('rules_loaded', 0):,} rules loaded, {e.get('rules_matched', 0):,} matched, "
                  f"{e.get('rows_tagged', 0):,} rows tagged")
        elif e.get("action_detail"):
            s += f" ({e['action_detail']})"
        return s
    if a in ("export", "report"):
        o = e.get("output", {})
        what = f"{e.get('format')}, {e.get('rows', 0):,} rows" if a == "export" else "HTML report"
        s = f"{o.get('path')} ({what}) sha256 {o.get('sha256')}"
        if a == "report" and e.get("scope") and e.get("scope") != "whole case":
            s += f"; scope: {e['scope']}"
        if e.get("filters"):
            s += "; filters: " + " AND ".join(e["filters"])
        return s
    rest = {k: v for k, v in e.items() if k not in ("seq", "time", "actor", "action", "prev", "hash")}
    return json.dumps(rest, ensure_ascii=False, sort_keys=True)[:400]


# --- sections --------------------------------------------------------------------------------------------

def _section(sid: str, title: str, body: Sequence[str]) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>' + "".join(body) + "</section>"


def _h3(text: str) -> str:
    return f"<h3>{html.escape(text)}</h3>"


def _logon_sections(tl: Timeline, zone: str) -> list[str]:
    from forensics import hunt

    lg = hunt.logons(tl)
    bf = hunt.brute_force(tl)
    out = [_h3("Brute force: failed-logon bursts"),
           _grid(bf, ["first", "host", "source", "attempts", "users", "last", "success_after", "first_success"], zone,
                 "bursts", api="forensics.open(CASE).brute_force()")]
    if not lg.empty:
        g = lg.assign(**{c: lg[c].astype(object).where(lg[c].notna(), "") for c in ("user", "src_ip", "method", "outcome")},
                      host=lg["host"].map(_host))
        lg = (g.groupby(["host", "outcome", "method", "user", "src_ip"], sort=False)["timestamp"]
               .agg(first="min", last="max", count="size").reset_index().sort_values(["first", "host"]))
    out += [_h3("Logons and attempts, by host, outcome, method, account and source"),
            _grid(lg, ["first", "host", "outcome", "method", "user", "src_ip", "count", "last"], zone, "groups",
                  api="forensics.open(CASE).logons()")]
    return out


def _powershell(tl: Timeline, zone: str) -> list[str]:
    from forensics import hunt

    ps = hunt.powershell(tl)
    if ps.empty:
        return ['<p class="note">no PowerShell events (4103/4104 script blocks and pipelines, 400/800)</p>']
    flags = ps[["download", "encoded", "obfuscated"]].astype(bool)
    ps = ps.assign(flags=flags.apply(lambda r: ", ".join(k for k in r.index if r[k]), axis=1),
                   text=ps["command_line"].astype(object).where(ps["command_line"].notna(), ps.get("path")))
    flagged = ps[flags.any(axis=1)]
    cols = ["timestamp", "host", "user", "event_id", "flags", "text"]
    return [f'<p class="note">{_n(len(ps))} PowerShell events; {_n(len(flagged))} flagged (download cradle, encoded '
            "command, obfuscation).</p>",
            _h3("Flagged"), _grid(flagged, cols, zone, "flagged events", api="forensics.open(CASE).powershell()"),
            f'<details class="group"><summary>all {_n(len(ps))} PowerShell events</summary>'
            + _grid(ps, cols, zone, "events", api="forensics.open(CASE).powershell()") + "</details>"]


def _sigma_section(matches: pd.DataFrame, sigma_findings: pd.DataFrame, runs: list[dict[str, Any]], zone: str) -> list[str]:
    if not runs:
        return ['<p class="note">no Sigma detections saved in this case (<span class="mono">forensics hunt CASE '
                "--sigma RULES --save</span> stores them; the report then shows them here and in the story).</p>"]
    out = ['<p class="note">' + "; ".join(
        f"custody entry #{_e(r.get('seq'))} ({_e(r.get('time'))}): {_n(r.get('rules_loaded', 0))} rules loaded, "
        f"{_n(r.get('rules_matched', 0))} matched, {_n(r.get('rows_tagged', 0))} rows tagged"
        + (f", {_n(r['conversion_errors'])} not convertible" if r.get("conversion_errors") else "")
        + (f", {_n(r['evaluation_errors'])} failed to evaluate" if r.get("evaluation_errors") else "")
        for r in runs) + ".</p>"]
    if matches.empty:
        out.append('<p class="note">no saved detection in this report\'s scope</p>')
        return out
    m = matches.assign(host=matches["host"].map(_host))
    bursts = sigma_findings.groupby("rule_id").size()
    rules = []
    for rid, g in m.groupby("rule_id", sort=False):
        lv = _text(g["level"].iloc[0]).lower()
        tech = sigma_findings.loc[sigma_findings["rule_id"] == rid, "techniques"]
        techniques = ", ".join(dict.fromkeys(t for ts in tech for t in (ts or [])))
        rules.append({"level": lv, "title": g["title"].iloc[0], "rule_id": rid, "technique": techniques,
                      "matches": len(g), "bursts": int(bursts.get(rid, 0)), "hosts": g["host"].nunique(),
                      "first": g["timestamp"].min(), "last": g["timestamp"].max(), "_rank": _LEVEL_RANK.get(lv, 9)})
    rt = pd.DataFrame(rules).sort_values(["_rank", "matches", "title"], ascending=[True, False, True])
    levels = rt.groupby("level")["matches"].sum()
    out.append(f'<p class="note">{_n(len(m))} matched rows, {_n(len(rt))} rules; by level: '
               + ", ".join(f"{lv} {_n(levels[lv])}" for lv in sorted(levels.index, key=lambda x: _LEVEL_RANK.get(x, 9)))
               + ".</p>")
    out.append(_grid(rt, ["level", "title", "technique", "matches", "bursts", "hosts", "first", "last", "rule_id"], zone,
                     "rules", inline=25, api="forensics.sigma.run(...)", tid="sigma-rules"))
    out.append(_h3("Bursts, by rule"))
    for r in rt.head(MAX_TABLE_ROWS).itertuples():
        f = sigma_findings[sigma_findings["rule_id"] == r.rule_id]
        out.append(f'<details class="group"><summary>{_level(r.level)} {_e(r.title)}: {_n(r.matches)} match'
                   f'{"es" if r.matches != 1 else ""} in {_n(len(f))} burst{"s" if len(f) != 1 else ""} on '
                   f'{_n(r.hosts)} host{"s" if r.hosts != 1 else ""}</summary>'
                   + _grid(f, ["timestamp", "host", "count", "last", *PROVENANCE], zone, "bursts")
                   + "</details>")
    return out


def _summary(case_name: str, tl: Timeline, scope: Scope, story: pd.DataFrame, zone: str,
             info: dict[str, Any]) -> str:
    lo, hi = tl.time_range()
    t = tl._query("host, count(*) AS n", "GROUP BY host")
    hosts: dict[str, int] = {}
    for h, n in zip(t.column("host").to_pylist(), t.column("n").to_pylist()):
        hosts[_host(h)] = hosts.get(_host(h), 0) + int(n)
    rows_in_scope = sum(hosts.values()) if hosts else 0
    if not scope.whole_case:
        rows_in_scope = len(tl)

    def when(ts: Any) -> tuple[str]:
        return (_tt(ts, zone).replace("<br>", " · ") if not _missing(ts) else "",)

    top = sorted(hosts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    shown = ", ".join(f"{html.escape(h)} ({_n(n)})" for h, n in top[:8])
    more = f", and {_n(len(top) - 8)} more (see Case data)" if len(top) > 8 else ""
    levels = story["level"].value_counts() if len(story) else pd.Series(dtype=int)
    by_level = " ".join(f'{_level(lv)} {_n(levels[lv])}' for lv in sorted(levels.index, key=lambda x: _LEVEL_RANK.get(x, 9))
                        if lv)
    unlevelled = int(levels.get("", 0)) if len(levels) else 0
    if unlevelled:
        by_level += (" · " if by_level else "") + f"{_n(unlevelled)} without a level (curated findings)"
    by_level = by_level or "none"

    def finding(r: Any) -> str:
        return (f"{when(r['timestamp'])[0]} — {html.escape(_host(r['host']))} — "
                f"{_e(r['technique'])} {_long(r['finding'], 200)}")

    rows = [("case", (f'<span class="mono">{_e(case_name)}</span> · id <span class="mono">{_e(info["case_id"])}</span>',)),
            ("scope", (_e(scope.describe(zone)),)),
            (f"events ({zone} · UTC)" if zone != "UTC" else "events (UTC)", (f"{when(lo)[0]} → {when(hi)[0]}" if lo is not None else "no events",)),
            ("rows", (f'<span data-summary="rows">{_n(rows_in_scope)}</span>'
                      + (f" of {_n(info['rows'])} in the case" if not scope.whole_case else ""),)),
            (f"hosts ({_n(len(top))})", (shown + more or "none",)),
            (f"findings ({_n(len(story))})", (by_level,)),
            ("first finding", (finding(story.iloc[0]) if len(story) else "",)),
            ("last finding", (finding(story.iloc[-1]) if len(story) else "",))]
    body = "".join(f'<tr><th>{html.escape(k)}</th><td data-summary-row="{html.escape(k.split(" ")[0])}">{v[0]}</td></tr>'
                   for k, v in rows)
    return f'<table class="kv" id="summary-table"><tbody>{body}</tbody></table>'


# --- the report ----------------------------------------------------------------------------------------

def render_report(case_dir: str | os.PathLike, tz: str | None = None, *, start: Any = None, end: Any = None,
                  host: str | Sequence[str] | None = None, figures: bool = True) -> str:
    """The HTML report of a case (a string); :func:`write_report` writes and records it.

    ``start``/``end`` (``end`` excluded; either may be left out) and ``host`` (one name or several;
    ``forensics.sigma.UNKNOWN_HOST`` for rows without a host) limit it; times without a zone are read in
    ``tz`` or the case's zone.  ``figures=False`` leaves the figures out (a faster, text-only report).

    >>> html = render_report("case", start="2022-11-23 06:00", host="DC01")  # doctest: +SKIP
    """
    return _render(case_dir, tz, start, end, host, figures)[0]


def _render(case_dir: str | os.PathLike, tz: str | None, start: Any, end: Any,
            host: str | Sequence[str] | None, figures: bool = True) -> tuple[str, Scope, Timeline]:
    from forensics import hunt

    case = Case(case_dir)
    info = case.info()
    tl, scope = _scoped(case_dir, tz, start, end, host, info["hosts"])
    zone = tl.tz
    commits = case.store.commits()
    custody = list(case.store.custody.entries())
    run = sigma.saved(tl)
    matches, sig = run.matches, sigma.findings(run)
    story = _story(tl, run)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    sigma_runs = [c for c in commits if c.get("action_detail") == "sigma"]

    sections = [("story", "Attack story"), ("activity", "Activity"), ("logons", "Logons and brute force"),
                ("lateral", "Lateral movement"), ("credentials", "Credential access"),
                ("persistence", "Persistence: services and tasks"), ("powershell", "PowerShell"),
                ("logs", "Log clearing and recovery inhibition"), ("web", "Web attacks"), ("encryption", "Encryption"),
                ("sigma", "Sigma detections"), ("case-data", "Case data"), ("evidence", "Evidence and hashes"),
                ("custody", "Custody log")]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Case report: {_e(info['case'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Case report: {_e(info['case'])}</h1><p class=\"meta\">local times in {_e(zone)} (UTC beside them) · "
        f"generated {_e(now)} by forensics {_e(tool_versions()['forensics'])}</p>",
        "" if scope.whole_case else f'<p class="scope" id="scope">Limited to: {_e(scope.describe(zone))}</p>',
        "<nav>" + " ".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t in [("summary", "Summary")] + sections)
        + "</nav>",
        '<section id="summary">',
        _summary(info["case"], tl, scope, story, zone, info),
        "</section>",
    ]

    # the story
    story_cols = [_Col(f"time ({zone} / UTC)" if zone != "UTC" else "time (UTC)", "time",
                       lambda r: _tt(r["timestamp"], zone)),
                  _Col("host", "host", lambda r: html.escape(_host(r["host"]))),
                  _Col("level", "level", lambda r: _level(r["level"])),
                  _Col("ATT&CK", "short", lambda r: _e(r["technique"])),
                  _Col("finding", "text", lambda r: _long(r["finding"])),
                  _Col("by", "short", lambda r: _e(r["detector"])),
                  _Col("count", "num", lambda r: _e(r["count"])),
                  _Col("source", "source", _source)]
    if story.empty:
        story_html = '<p class="note">no findings</p>'
    else:
        recs = _records(story.head(MAX_STORY_ROWS))

        def story_attrs(r: dict[str, Any]) -> str:
            return (f' data-level="{_e(r["level"])}" data-detector="{_e(r["detector"])}" '
                    f'data-utc="{_e(_t(r["timestamp"]))}" data-story-host="{_e(_host(r["host"]))}"')

        story_html = (f'<p class="note">{_n(len(story))} findings, in time order ({_n(int((story["detector"] == "sigma").sum()))} '
                      "from saved Sigma detections, grouped in bursts per rule and host); open a source for the "
                      "evidence file and record.</p>"
                      + _table_html(story_cols, recs[:STORY_INLINE_ROWS], "story", story_attrs, "story-table"))
        if len(recs) > STORY_INLINE_ROWS:
            story_html += (f'<details class="more"><summary>show {_n(len(recs) - STORY_INLINE_ROWS)} more findings'
                           "</summary>" + _table_html(story_cols, recs[STORY_INLINE_ROWS:], "story", story_attrs)
                           + "</details>")
        if len(story) > MAX_STORY_ROWS:
            story_html += (f'<p class="note">the first {_n(MAX_STORY_ROWS)} findings are in this report; all of them: '
                           '<span class="mono">forensics hunt CASE -o csv</span></p>')
    parts.append(_section("story", "Attack story", [story_html]))
    parts.append(_section("activity", "Activity", [_figures(tl, story) if figures else
                                                   '<p class="note">figures left out (--no-figures)</p>']))

    parts.append(_section("logons", "Logons and brute force", _logon_sections(tl, zone)))
    parts.append(_section("lateral", "Lateral movement", [
        '<p class="note">Who moved where, how: RDP, SMB/PsExec (pipes and services), network logons, SSH.</p>',
        _grid(hunt.lateral_movement(tl), ["first", "source", "destination", "method", "user", "count", "last"], zone,
              "edges", api="forensics.open(CASE).lateral_movement()")]))
    parts.append(_section("credentials", "Credential access", [
        '<p class="note">LSASS memory read, dump tools and commands, Kerberoasting (RC4 service tickets), password '
        "spraying.</p>",
        _grid(hunt.credential_access(tl), ["timestamp", "host", "technique", "finding", "user", "process", "src_ip",
                                           *PROVENANCE], zone, "findings",
              api="forensics.open(CASE).credential_access()")]))
    st = hunt.scheduled_tasks(tl)
    parts.append(_section("persistence", "Persistence: services and tasks", [
        _h3("Services installed"),
        _grid(hunt.service_installs(tl), ["timestamp", "host", "service_name", "image_path", "account", "user",
                                          "event_id", *PROVENANCE], zone, "services",
              api="forensics.open(CASE).service_installs()"),
        _h3("Scheduled tasks"),
        _grid(st, ["timestamp", "host", "action", "task", "command_line", "user", "event_id", *PROVENANCE], zone,
              "task events", api="forensics.open(CASE).scheduled_tasks()"),
        _h3("Accounts created"),
        _grid(hunt.accounts_created(tl), ["timestamp", "host", "account", "user", *PROVENANCE], zone, "accounts",
              api="forensics.open(CASE).accounts_created()"),
        _h3("Group membership changes"),
        _grid(hunt.group_changes(tl), ["timestamp", "host", "change", "member", "group", "user", *PROVENANCE], zone,
              "changes", api="forensics.open(CASE).group_changes()")]))
    parts.append(_section("powershell", "PowerShell", _powershell(tl, zone)))
    parts.append(_section("logs", "Log clearing and recovery inhibition", [
        _h3("Logs cleared or silenced"),
        _grid(hunt.log_cleared(tl), ["timestamp", "host", "log", "user", "event_id", "message", *PROVENANCE], zone,
              "events", api="forensics.open(CASE).log_cleared()"),
        _h3("Recovery inhibited (shadow copies, backups, boot recovery)"),
        _grid(hunt.shadow_copy_deletion(tl), ["timestamp", "host", "process", "command_line", "user", *PROVENANCE],
              zone, "commands", api="forensics.open(CASE).shadow_copy_deletion()")]))
    parts.append(_section("web", "Web attacks", [
        _grid(hunt.web_attacks(tl), ["timestamp", "host", "finding", "url", "src_ip", "requests", "detail",
                                     *PROVENANCE], zone, "findings", api="forensics.open(CASE).web_attacks()")]))
    parts.append(_section("encryption", "Encryption", [
        _grid(hunt.encryption_burst(tl), ["first", "host", "extension", "files", "directories", "notes", "last",
                                          "first_note", *PROVENANCE], zone, "bursts",
              api="forensics.open(CASE).encryption_burst()")]))
    parts.append(_section("sigma", "Sigma detections", _sigma_section(matches, sig, sigma_runs, zone)))

    # case data, evidence, custody: at the end
    first_local = _t(pd.Timestamp(info["first"]), zone) if info["first"] else ""
    last_local = _t(pd.Timestamp(info["last"]), zone) if info["last"] else ""
    host_rows = list(info["hosts"].items())
    hosts_table = _simple(["host", "rows"], [[_host(h), _n(n)] for h, n in host_rows], num=[1], widths=[None, 120],
                          attrs=[f' data-host="{_e(_host(h))}" data-value="{n}"' for h, n in host_rows])
    case_data = [
        '<p class="note">The whole case, whatever the report\'s scope: the numbers of <span class="mono">forensics '
        "info</span>.</p>",
        _kv([
            ("case", "case", info["case"], False),
            ("case id", "case_id", info["case_id"], False),
            ("timeline rows (distinct events)", "rows", info["rows"], True),
            ("records read", "records_read", info["records_read"], True),
            ("sightings", "sightings", info["sightings"], True),
            ("evidence items", "evidence_items", len(info["evidence"]), True),
            ("collections", "collections", info["collections"], True),
            ("errors (records lost)", "errors", info["errors"], True),
            ("warnings (damage noticed, nothing lost)", "warnings", info["warnings"], True),
            ("first event (UTC)", "first", info["first"] or "", False),
            *([(f"first event ({zone})", "first_local", first_local, False)] if zone != "UTC" else []),
            ("last event (UTC)", "last", info["last"] or "", False),
            *([(f"last event ({zone})", "last_local", last_local, False)] if zone != "UTC" else []),
            ("custody head (before this report)", "custody_head", info["custody_head"], False),
        ]),
        _h3(f"Hosts ({_n(len(host_rows))})"),
        hosts_table if len(host_rows) <= 15 else
        f'<details class="more"><summary>{_n(len(host_rows))} hosts</summary>{hosts_table}</details>',
        _h3("Artifacts"),
        _simple(["artifact", "rows"], [[a, _n(n)] for a, n in info["artifacts"].items()], num=[1], widths=[None, 120],
                attrs=[f' data-artifact="{_e(a)}" data-value="{n}"' for a, n in info["artifacts"].items()]),
        _h3("Errors and warnings by kind"),
        _simple(["kind", "count"], [[k, _n(n)] for k, n in info["problems_by_kind"].items()], num=[1], widths=[None, 120],
                attrs=[f' data-problem="{_e(k)}" data-value="{n}"' for k, n in info["problems_by_kind"].items()])
        if info["problems_by_kind"] else '<p class="note">none</p>',
        _h3("Collections"),
        _simple(["custody #", "time (UTC)", "by", "run", "records read", "rows written", "duplicates merged", "errors",
                 "warnings"],
                [[c.get("seq"), c.get("time"), c.get("actor"), c.get("run"), _n(c.get("records_read", 0)),
                  _n(c.get("rows_written", 0)), _n(c.get("duplicates_dropped", 0)), _n(c.get("errors", 0)),
                  _n(c.get("warnings", 0))] for c in commits],
                num=[0, 4, 5, 6, 7, 8], widths=[92, 250, 110, None, 100, 100, 100, 92, 92]),
    ]
    parts.append(_section("case-data", "Case data", case_data))

    files, seen, differ = [], set(), []
    for c in commits:
        for ev in c.get("evidence", []):
            for f in ev.get("files", []):
                key = (ev["evidence_id"], f["path"], f["sha256"])
                if key in seen:
                    continue
                seen.add(key)
                after = f.get("sha256_after")
                mark = "" if after in (None, f["sha256"]) else ' <span class="bad">differs</span>'
                row = [ev["evidence_id"], f["path"], _n(f["size"]), (f'<span class="mono">{_e(f["sha256"])}</span>',),
                       (f'<span class="mono">{_e(f.get("md5"))}</span>',), (f'<span class="mono">{_e(after)}</span>{mark}',)]
                files.append(row)
                if mark:
                    differ.append(row)
    hash_headers = ["evidence id", "file", "bytes", "SHA-256", "MD5", "SHA-256 after"]
    hash_widths = [140, None, 100, 250, 150, 250]
    evidence = [
        _simple(["evidence id", "path", "files", "bytes"], [[e["evidence_id"], e["path"], _n(e["files"]), _n(e["bytes"])]
                                                          for e in info["evidence"]], num=[2, 3], widths=[160, None, 100, 140],
                attrs=[f' data-evidence="{_e(e["evidence_id"])}" data-files="{e["files"]}" data-bytes="{e["bytes"]}"'
                       for e in info["evidence"]]),
        _h3("Evidence files and their hashes"),
        '<p class="note">SHA-256 and MD5 before parsing, SHA-256 again after (they must match): '
        + (f'<span class="bad">{_n(len(differ))} file(s) differ</span>.' if differ else f"all {_n(len(files))} match.")
        + "</p>",
    ]
    if differ:
        evidence.append(_simple(hash_headers, differ, num=[2], widths=hash_widths))
    evidence.append(f'<details class="more" id="hashes"><summary>{_n(len(files))} evidence files with their hashes'
                    f"</summary>{_simple(hash_headers, files, num=[2], widths=hash_widths)}</details>")
    parts.append(_section("evidence", "Evidence and hashes", evidence))

    custody_rows = [[e.get("seq"), e.get("time"), e.get("actor"), e.get("action"), _custody_summary(e),
                     (f'<span class="mono">{_e(e.get("hash"))}</span>',)] for e in custody]
    custody_table = _simple(["#", "time (UTC)", "by", "action", "what", "hash"], custody_rows, num=[0],
                            widths=[92, 250, 110, 100, None, 250])
    parts.append(_section("custody", "Custody log", [
        f'<p class="note">{_n(len(custody))} entries, hash-chained (each entry\'s prev is the previous entry\'s hash); '
        f'head <span class="mono">{_e(info["custody_head"])}</span>. This report is recorded as the next entry, with '
        'its SHA-256; <span class="mono">forensics verify</span> re-checks the chain and the files.</p>',
        custody_table if len(custody_rows) <= 20 else
        f'<details class="more"><summary>{_n(len(custody_rows))} custody entries</summary>{custody_table}</details>']))
    parts.append("</body></html>\n")
    return "\n".join(parts), scope, tl


def write_report(case_dir: str | os.PathLike, path: str | os.PathLike, tz: str | None = None,
                 command: list[str] | None = None, force: bool = False, *, start: Any = None, end: Any = None,
                 host: str | Sequence[str] | None = None, figures: bool = True) -> dict[str, Any]:
    """Write the HTML report to ``path`` and record it in the custody log (with its scope and filters);
    returns the custody entry.  ``start``/``end``/``host``/``figures`` as for :func:`render_report`.  ``path`` may not
    be evidence of the case, nor an existing file unless ``force``."""
    out = _output_path(Path(case_dir), path, force)
    case = Case(case_dir)
    case.store.check_writable()  # the report is recorded in the custody log: a read-only case fails first
    text, scope, tl = _render(case_dir, tz, start, end, host, figures)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
        fields: dict[str, Any] = {"format": "html", "tz": tl.tz, "scope": scope.describe("UTC")}
        if not scope.whole_case:
            fields["filters"] = list(tl._where)
        return publish_output(case.store, "report", tmp, out, command=command, **fields)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
