"""The case report: one self-contained HTML file for people who will not run Python.

``forensics report CASE -o report.html`` (or :func:`write_report`) writes the case summary (evidence
items and their hashes, hosts, time range, collection counts and errors: the numbers of
``forensics info``), the attack story in local and UTC time, the activity and story figures, the key
findings (logons, services, lateral movement, encryption burst) and the custody log.

The file fetches nothing: no script, no stylesheet or font from elsewhere; figures are PNGs embedded
as ``data:`` URIs, and a Content-Security-Policy forbids any other load.  Every value that comes from
the evidence is HTML-escaped: evidence is hostile.  The report is recorded in the custody log with its
SHA-256 (``forensics verify`` re-checks it while it exists).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from forensics.case import Case, tool_versions
from forensics.query import Timeline, _output_path, record_output
from timeline.errors import OutputError, ParserUnavailable
from timeline.store import file_sha256

__all__ = ["render_report", "write_report", "MAX_TABLE_ROWS"]

log = logging.getLogger(__name__)

MAX_TABLE_ROWS = 200  # rows shown per findings table; the total is always stated

_CSS = """
:root { --ink: #1a1a1a; --muted: #555; --line: #c8c8c8; --head: #eef1f5; --accent: #8a1c1c; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Noto Sans", "Noto Sans Bengali", "Noto Sans Devanagari", Arial, sans-serif;
       color: var(--ink); margin: 24px auto; max-width: 1400px; padding: 0 16px; font-size: 13px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 2px solid var(--accent);
       padding-bottom: 3px; } h3 { font-size: 14px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 12px; } .note { color: var(--muted); font-size: 12px; margin: 4px 0; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 10px; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
td.kw { overflow-wrap: normal; }
th { background: var(--head); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .utc { color: var(--muted); }
td.nw { white-space: nowrap; font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 11px; }
.mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 11px; }
table.kv { width: auto; min-width: 50%; } table.kv th { width: 16em; }
nav ul { columns: 3; list-style: none; padding: 0; margin: 6px 0; } nav a { color: var(--accent); }
figure { margin: 8px 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
.bad { color: var(--accent); font-weight: 600; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 9pt; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  thead { display: table-header-group; }
  tr, figure { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _e(value: Any) -> str:
    """Escaped text of a value (evidence is hostile); None and NaN as empty."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return ""
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{int(value):,}"


def _t(ts: Any, tz: str | None = None) -> str:
    """A time as ISO 8601 (nanoseconds kept), in ``tz`` when given, else UTC."""
    if ts is None or ts is pd.NaT or (isinstance(ts, float) and ts != ts):
        return ""
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return t.tz_convert(tz or "UTC").isoformat()


def _tt(ts: Any, tz: str) -> tuple[str]:
    """A time cell: local time, then UTC on a second line (once when the zone is UTC)."""
    local, utc = _t(ts, tz), _t(ts)
    return (_e(local) if local == utc else f'{_e(local)}<br><span class="utc">{_e(utc)}</span>',)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], num: Sequence[int] = (), cls: str = "",
           attrs: Sequence[str] | None = None, nowrap: Sequence[int] = (), keep: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped here unless given as (``html``,) 1-tuples of trusted markup.
    ``num``: right-aligned number columns; ``nowrap``: columns kept on one line (times, ATT&CK ids);
    ``keep``: columns broken between words only (host names, record references)."""
    classes = ["num" if i in num else "nw" if i in nowrap else "kw" if i in keep else "" for i in range(len(headers))]
    out = [f'<table class="{cls}"><thead><tr>']
    out += [f'<th class="{classes[i]}">{_e(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        out.append(f"<tr{attrs[r] if attrs else ''}>")
        for i, v in enumerate(row):
            text = v[0] if isinstance(v, tuple) else _e(v)
            out.append(f'<td class="{classes[i]}">{text}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _frame(df: pd.DataFrame, columns: list[str], tz: str, limit: int = MAX_TABLE_ROWS) -> str:
    """A findings DataFrame as a table: time columns in local and UTC time, at most ``limit`` rows."""
    if df is None or df.empty:
        return '<p class="note">none found</p>'
    shown = df.head(limit)
    headers, getters, nowrap = [], [], []
    for c in columns:
        if c not in shown.columns:
            continue
        if pd.api.types.is_datetime64_any_dtype(shown[c]):
            nowrap.append(len(headers))
            headers.append(f"{c} ({tz} / UTC)" if tz != "UTC" else f"{c} (UTC)")
            getters.append(lambda r, c=c: _tt(r[c], tz))
        else:
            headers.append(c)
            getters.append(lambda r, c=c: r[c])
    rows = [[g(r) for g in getters] for _, r in shown.iterrows()]
    num = [i for i, h in enumerate(headers) if h in ("count", "files", "directories", "notes", "attempts", "logon_type", "event_id")]
    note = (f'<p class="note">{_n(len(df))} rows; the first {_n(limit)} are shown (the full table: '
            f'<span class="mono">forensics.open(CASE).&lt;helper&gt;()</span>).</p>' if len(df) > limit
            else f'<p class="note">{_n(len(df))} rows.</p>')
    keep = [i for i, h in enumerate(headers) if h in ("host", "record_ref", "outcome", "source", "destination", "extension")]
    return note + _table(headers, rows, num=num, nowrap=nowrap, keep=keep)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    with warnings.catch_warnings():  # host names in scripts the plot font lacks (Bengali...) draw as boxes
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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
    out = [f'<figure><img alt="activity per host, rows per {_e(freq)} bucket" src="{activity}">'
           f"<figcaption>Activity: timeline rows per host per {_e(freq)} (local time, {_e(tl.tz)}; "
           f"logarithmic colour scale).{note}</figcaption></figure>"]
    if story_png:
        out.append(f'<figure><img alt="the story: findings per host over time" src="{story_png}">'
                   "<figcaption>The story: one mark per finding, coloured by ATT&amp;CK technique.</figcaption></figure>")
    return "".join(out)


def _custody_summary(e: dict[str, Any]) -> str:
    a = e.get("action")
    if a == "commit":
        s = (f"run {e.get('run')}: {e.get('rows_written', 0):,} rows written, {e.get('duplicates_dropped', 0):,} duplicates, "
             f"{len(e.get('files', []))} file(s)")
        if "records_read" in e:
            s += f"; {e['records_read']:,} records read, {e.get('errors', 0):,} errors, {e.get('warnings', 0):,} warnings"
        if e.get("action_detail"):
            s += f" ({e['action_detail']})"
        return s
    if a in ("export", "report"):
        o = e.get("output", {})
        what = f"{e.get('format')}, {e.get('rows', 0):,} rows" if a == "export" else "HTML report"
        s = f"{o.get('path')} ({what}) sha256 {o.get('sha256')}"
        if e.get("filters"):
            s += "; filters: " + " AND ".join(e["filters"])
        return s
    rest = {k: v for k, v in e.items() if k not in ("seq", "time", "actor", "action", "prev", "hash")}
    return json.dumps(rest, ensure_ascii=False, sort_keys=True)[:400]


def render_report(case_dir: str | os.PathLike, tz: str | None = None) -> str:
    """The HTML report of a case (a string); :func:`write_report` writes and records it."""
    case = Case(case_dir)
    info = case.info()
    tl = Timeline(case_dir, tz=tz)
    zone = tl.tz
    commits = case.store.commits()
    custody = list(case.store.custody.entries())
    story = tl.story()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def kv(rows: list[tuple[str, str, Any, bool]]) -> str:
        """(label, key, value, is_number) rows: each value cell carries data-info=key for checking."""
        cells = []
        for label, key, value, is_num in rows:
            shown = _n(value) if is_num else _e(value)
            raw = _e(value)
            cells.append(f'<tr><th>{_e(label)}</th><td class="{"num" if is_num else "mono"}" data-info="{_e(key)}" '
                         f'data-value="{raw}">{shown}</td></tr>')
        return '<table class="kv"><tbody>' + "".join(cells) + "</tbody></table>"

    first_local = _t(pd.Timestamp(info["first"]), zone) if info["first"] else ""
    last_local = _t(pd.Timestamp(info["last"]), zone) if info["last"] else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Case report: {_e(info['case'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Case report</h1><p class=\"meta\">case <span class=\"mono\">{_e(info['case'])}</span> · id "
        f"<span class=\"mono\">{_e(info['case_id'])}</span> · local times in {_e(zone)} · generated {_e(now)} by "
        f"forensics {_e(tool_versions()['forensics'])}</p>",
        '<nav><ul><li><a href="#summary">Case summary</a></li><li><a href="#evidence">Evidence</a></li>'
        '<li><a href="#collections">Collections</a></li><li><a href="#story">Attack story</a></li>'
        '<li><a href="#activity">Activity</a></li><li><a href="#logons">Logons</a></li>'
        '<li><a href="#services">Services</a></li><li><a href="#lateral">Lateral movement</a></li>'
        '<li><a href="#encryption">Encryption burst</a></li><li><a href="#custody">Custody log</a></li></ul></nav>',
        '<h2 id="summary">Case summary</h2>',
        kv([
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
        "<h3>Hosts</h3>",
        _table(["host", "rows"], [[h, _n(n)] for h, n in info["hosts"].items()], num=[1],
               attrs=[f' data-host="{_e(h)}" data-value="{n}"' for h, n in info["hosts"].items()]),
        "<h3>Artifacts</h3>",
        _table(["artifact", "rows"], [[a, _n(n)] for a, n in info["artifacts"].items()], num=[1],
               attrs=[f' data-artifact="{_e(a)}" data-value="{n}"' for a, n in info["artifacts"].items()]),
        "<h3>Errors and warnings by kind</h3>",
        _table(["kind", "count"], [[k, _n(n)] for k, n in info["problems_by_kind"].items()], num=[1],
               attrs=[f' data-problem="{_e(k)}" data-value="{n}"' for k, n in info["problems_by_kind"].items()])
        if info["problems_by_kind"] else '<p class="note">none</p>',
        '<h2 id="evidence">Evidence</h2>',
        _table(["evidence id", "path", "files", "bytes"], [[e["evidence_id"], e["path"], _n(e["files"]), _n(e["bytes"])]
                                                         for e in info["evidence"]], num=[2, 3],
               attrs=[f' data-evidence="{_e(e["evidence_id"])}" data-files="{e["files"]}" data-bytes="{e["bytes"]}"'
                      for e in info["evidence"]]),
        "<h3>Evidence files and their hashes</h3>",
        '<p class="note">SHA-256 and MD5 before parsing, SHA-256 again after (they must match).</p>',
    ]
    files, seen = [], set()
    for c in commits:
        for ev in c.get("evidence", []):
            for f in ev.get("files", []):
                key = (ev["evidence_id"], f["path"], f["sha256"])
                if key in seen:
                    continue
                seen.add(key)
                after = f.get("sha256_after")
                mark = "" if after in (None, f["sha256"]) else ' <span class="bad">differs</span>'
                files.append([ev["evidence_id"], f["path"], _n(f["size"]), (f'<span class="mono">{_e(f["sha256"])}</span>',),
                              (f'<span class="mono">{_e(f.get("md5"))}</span>',),
                              (f'<span class="mono">{_e(after)}</span>{mark}',)])
    parts.append(_table(["evidence id", "file", "bytes", "SHA-256", "MD5", "SHA-256 after"], files, num=[2]))
    parts.append('<h2 id="collections">Collections</h2>')
    parts.append(_table(
        ["custody #", "time (UTC)", "by", "run", "records read", "rows written", "duplicates merged", "errors", "warnings"],
        [[c.get("seq"), c.get("time"), c.get("actor"), c.get("run"), _n(c.get("records_read", 0)), _n(c.get("rows_written", 0)),
          _n(c.get("duplicates_dropped", 0)), _n(c.get("errors", 0)), _n(c.get("warnings", 0))] for c in commits],
        num=[0, 4, 5, 6, 7, 8]))
    parts.append('<h2 id="story">Attack story</h2>')
    if story.empty:
        parts.append('<p class="note">no findings</p>')
    else:
        parts.append(f'<p class="note">{_n(len(story))} findings, in time order; each with the evidence file and record it '
                     "comes from.</p>")
        parts.append(_table(
            [f"time ({zone} / UTC)" if zone != "UTC" else "time (UTC)", "host", "ATT&CK", "finding", "evidence", "record"],
            [[_tt(r.timestamp, zone), r.host, r.technique, r.finding, r.evidence_path, r.record_ref]
             for r in story.itertuples()], nowrap=[0, 2], keep=[1, 5]))
    parts.append('<h2 id="activity">Activity</h2>')
    parts.append(_figures(tl, story))
    parts.append('<h2 id="logons">Logons</h2>')
    lg = tl.logons()
    if not lg.empty:
        g = lg.assign(**{c: lg[c].astype(object).where(lg[c].notna(), "") for c in ("user", "src_ip", "method", "outcome")})
        lg = (g.groupby(["host", "outcome", "method", "user", "src_ip"], sort=False)["timestamp"]
               .agg(first="min", last="max", count="size").reset_index().sort_values(["first", "host"]))
        parts.append('<p class="note">Logons and attempts grouped by host, outcome, method, account and source.</p>')
    parts.append(_frame(lg, ["host", "outcome", "method", "user", "src_ip", "count", "first", "last"], zone))
    parts.append('<h2 id="services">Services installed</h2>')
    parts.append(_frame(tl.service_installs(), ["timestamp", "host", "service_name", "image_path", "account", "user",
                                                "event_id", "evidence_path", "record_ref"], zone))
    parts.append('<h2 id="lateral">Lateral movement</h2>')
    parts.append(_frame(tl.lateral_movement(), ["source", "destination", "method", "user", "count", "first", "last"], zone))
    parts.append('<h2 id="encryption">Encryption burst</h2>')
    parts.append(_frame(tl.encryption_burst(), ["host", "extension", "first", "last", "files", "directories", "notes",
                                                "first_note", "evidence_path", "record_ref"], zone))
    parts.append('<h2 id="custody">Custody log</h2>')
    parts.append(f'<p class="note">{_n(len(custody))} entries, hash-chained (each entry\'s prev is the previous entry\'s '
                 "hash). This report is recorded as the next entry, with its SHA-256; "
                 "<span class=\"mono\">forensics verify</span> re-checks the chain and the files.</p>")
    parts.append(_table(["#", "time (UTC)", "by", "action", "what", "hash"],
                        [[e.get("seq"), e.get("time"), e.get("actor"), e.get("action"), _custody_summary(e),
                          (f'<span class="mono">{_e(e.get("hash"))}</span>',)] for e in custody], num=[0]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(case_dir: str | os.PathLike, path: str | os.PathLike, tz: str | None = None,
                 command: list[str] | None = None) -> dict[str, Any]:
    """Write the HTML report to ``path`` and record it in the custody log; returns the custody entry."""
    out = _output_path(Path(case_dir), path)
    text = render_report(case_dir, tz=tz)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    case = Case(case_dir)
    return record_output(case.store, "report", out, file_sha256(out), command=command, format="html",
                         tz=tz or case.store.meta.get("tz") or "UTC", scope="whole case")
