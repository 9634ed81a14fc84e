"""Figures for notebooks and reports: activity per host over time, and the story as a timeline.

Both take a timeline DataFrame or a :class:`forensics.Timeline` and return a matplotlib
``Figure`` (``fig.savefig("x.png")`` writes it).  matplotlib is an optional extra:
``pip install '.[plots]'``.

Time axis.  One impossible time (a web-log line dated ``01/Jan/1970``, a FILETIME of 0) would stretch
the axis over decades of empty buckets.  Rows are left out of a figure's time axis when their time is
flagged by their parser (``attrs.time_flag``), before :data:`PLAUSIBLE_FROM`, in the future (later than
now plus a day), or far from the dense bulk of the rows (more than the bulk's width, at least a day,
beyond its 1st-99th percentile); the figure says how many and why.  The heatmap's bucket size grows
when the given one would need more than :data:`MAX_BUCKETS` columns, and says so.

Colours.  A technique has the same colour in every figure: its hue comes from a hash of its
parent technique (``T1003`` for ``T1003.001``), its lightness from the sub-technique
(:func:`technique_colour`).
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from timeline.errors import ParserUnavailable, QueryError
from timeline.schema import FUTURE_SLACK_NS, PLAUSIBLE_FROM_NS, UNKNOWN_HOST

__all__ = ["Activity", "Window", "activity_counts", "activity_heatmap", "story_timeline", "technique_colour",
           "time_window"]

# the one definition of implausible times (timeline.schema): earlier ones are read errors, later than now + the slack
# the future (a skewed clock stays in)
PLAUSIBLE_FROM = pd.Timestamp(PLAUSIBLE_FROM_NS, tz="UTC")
FUTURE_SLACK = pd.Timedelta(FUTURE_SLACK_NS, "ns")
BULK = (0.01, 0.99)  # the dense bulk of the rows: between these quantiles of their times (nearest rank)
BULK_MIN_WIDTH = pd.Timedelta("1D")
MAX_BUCKETS = 1000  # columns of the heatmap at most (a 12-inch figure is ~1,000 pixels wide)
AUTO_BUCKETS = 200  # the bucket size chosen when none is given gives at most this many columns
_FREQS = ("1min", "5min", "15min", "30min", "1h", "3h", "6h", "12h", "1D", "7D", "30D", "365D")
_FLAG_SQL = """CASE WHEN contains(attrs, '"time_flag"') THEN json_extract_string(attrs, '$.time_flag') END"""
_LEVEL_SIZE = {"critical": 90, "high": 70, "medium": 50, "low": 36, "informational": 30}
_GREY = "#9e9e9e"
NO_HOST = UNKNOWN_HOST  # the lane of rows without a host (timeline.schema.UNKNOWN_HOST, defined there once)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ParserUnavailable("plots need matplotlib: pip install 'forensics[plots]'") from exc
    return plt


def technique_colour(technique: Any) -> str:
    """The colour (``#rrggbb``) of an ATT&CK technique, the same in every figure: the hue from a hash of the
    parent technique id, the lightness from the sub-technique.  Anything else (no technique) is grey."""
    m = re.search(r"T(\d{4})(?:\.(\d{3}))?", str(technique).upper()) if not pd.isna(technique) else None
    if not m:
        return _GREY
    hue = int.from_bytes(hashlib.sha256(f"T{m.group(1)}".encode()).digest()[:4], "big") / 2**32
    sub = int(m.group(2) or 0)
    light = 0.45 if not sub else 0.30 + 0.30 * ((sub * 0.618034) % 1)
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


# --- the time axis ------------------------------------------------------------------------------

_MINUTE = 60_000_000_000  # ns: the time axis is decided on whole minutes (every bound below is one)


@dataclass
class Window:
    """Which rows a figure's time axis keeps (``keep``, a boolean per row: not flagged and
    ``start <= time < end``, UTC) and why the others are left out (``left_out``: reason -> rows)."""

    keep: np.ndarray
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    left_out: dict[str, int] = field(default_factory=dict)
    note: str = ""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _floor_minute(ns: np.ndarray) -> np.ndarray:
    return ns - ns % _MINUTE


def time_window(times: Any, flags: Any = None, weights: Any = None, what: str = "row") -> Window:
    """The rows whose time belongs on a figure's axis (see the module's doc).  ``times``: zone-aware times
    (or UTC nanoseconds); ``flags``: the rows' ``attrs.time_flag`` (None/NaN where not flagged); ``weights``:
    how many rows each entry stands for (aggregated input), 1 each by default.  Every bound is a whole minute,
    so rows aggregated per minute give the same answer as the rows themselves."""
    if isinstance(times, np.ndarray) and times.dtype == np.int64:
        ns = times
    else:
        ns = pd.to_datetime(pd.Series(times), utc=True).to_numpy(dtype="datetime64[ns]").astype("int64")
    minute = _floor_minute(ns)
    w = np.ones(len(ns), dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    keep = np.ones(len(ns), dtype=bool)
    left: dict[str, int] = {}

    def drop(mask: np.ndarray, reason: str) -> None:
        mask = mask & keep
        if mask.any():
            left[reason] = int(w[mask].sum())
            keep[mask] = False

    if flags is not None:
        f = pd.Series(flags).astype(object)
        f = f.where(f.notna(), None).to_numpy()
        flagged = np.array([v is not None and str(v).lower() not in ("", "false", "0", "null") for v in f], dtype=bool)
        if flagged.any():
            kinds = pd.Series(w[flagged], index=pd.Series(f[flagged]).astype(str)).groupby(level=0).sum()
            drop(flagged, "flagged by their parser (" + ", ".join(f"{k} ×{n:,}" for k, n in
                                                               kinds.sort_values(ascending=False).items()) + ")")
    start = PLAUSIBLE_FROM.value
    end = _floor_minute(np.int64((pd.Timestamp.now(tz="UTC") + FUTURE_SLACK).value)) + _MINUTE
    drop(minute < start, f"before {PLAUSIBLE_FROM:%Y}")
    drop(minute >= end, f"after {pd.Timestamp(end, tz='UTC'):%Y-%m-%d} (the future)")
    total = int(w[keep].sum())
    if total >= 2:
        order = np.argsort(minute[keep], kind="stable")
        v, cum = minute[keep][order], np.cumsum(w[keep][order])
        lo = v[np.searchsorted(cum, int(BULK[0] * (total - 1)), side="right")]
        hi = v[np.searchsorted(cum, int(np.ceil(BULK[1] * (total - 1))), side="right")]
        width = max(hi - lo, BULK_MIN_WIDTH.value)
        a, b = lo - width, hi + width + _MINUTE
        drop((minute < a) | (minute >= b), f"far from the bulk of the {what}s (outside "
             f"{pd.Timestamp(a, tz='UTC'):%Y-%m-%d %H:%M} – {pd.Timestamp(b, tz='UTC'):%Y-%m-%d %H:%M} UTC)")
        start, end = max(start, a), min(end, b)
    note = ""
    if left:
        note = (f"{_plural(sum(left.values()), what)} left out of the time axis: "
                + "; ".join(f"{n:,} {reason}" for reason, n in left.items()))
    return Window(keep, pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"), left, note)


def _auto_freq(first: pd.Timestamp, last: pd.Timestamp, at_most: int) -> str:
    span = (last - first) / pd.Timedelta(1, "ns")
    for freq in _FREQS:
        if span / pd.Timedelta(freq).value < at_most:
            return freq
    return _FREQS[-1]


# --- activity -------------------------------------------------------------------------------------


@dataclass
class Activity:
    """Rows per host per time bucket: what :func:`activity_heatmap` draws.

    ``counts``: hosts (busiest first) x bucket starts (naive wall clock in ``tz``, every bucket between the
    first and the last, empty ones included); ``freq`` the bucket size used; ``left_out`` rows left out
    of the time axis by reason; ``note`` what the figure says about both."""

    counts: pd.DataFrame
    freq: str
    tz: str
    rows: int
    left_out: dict[str, int]
    note: str


def _per_minute(data: Any) -> tuple[pd.DataFrame, str]:
    """Rows per host, UTC minute and time flag (``host``, ``minute`` in ns, ``flag``, ``n``).  A Timeline is
    aggregated by DuckDB (attrs reduced to its time_flag there): memory follows the host-minutes, not the rows."""
    from forensics.query import Timeline

    if isinstance(data, Timeline):
        agg = data.sql(f"SELECT host, epoch_ns(timestamp) - ((epoch_ns(timestamp) % {_MINUTE}) + {_MINUTE}) % {_MINUTE} "
                       f"AS minute, {_FLAG_SQL} AS flag, count(*) AS n FROM timeline GROUP BY ALL")
        return agg, data.tz
    df = data
    tz = str(df["local_time"].dt.tz) if "local_time" in df and len(df) else "UTC"
    flags = pd.Series(None, index=df.index, dtype=object)
    if "time_flag" in df:
        flags = df["time_flag"].astype(object)
    elif "attrs" in df:
        import orjson

        attrs = df["attrs"].astype(object)
        has = attrs.where(attrs.notna(), "").astype(str).str.contains('"time_flag"', regex=False).to_numpy()
        for i in np.flatnonzero(has):
            doc = orjson.loads(attrs.iloc[i])
            flags.iloc[i] = doc.get("time_flag") if isinstance(doc, dict) else None
    ns = pd.to_datetime(df["timestamp"], utc=True).to_numpy(dtype="datetime64[ns]").astype("int64")
    frame = pd.DataFrame({"host": df["host"].astype(object).to_numpy() if "host" in df else None,
                          "minute": _floor_minute(ns), "flag": flags.to_numpy()})
    agg = frame.groupby(["host", "minute", "flag"], dropna=False, sort=False).size().rename("n").reset_index()
    return agg, tz


def activity_counts(data: Any, freq: str | None = None, max_hosts: int = 30) -> Activity:
    """Rows per host per time bucket of ``freq`` (whole minutes: ``"15min"``, ``"1h"``, ``"1D"``...; None: a
    size giving at most ~200 buckets) in the case's local time, over the time window of :func:`time_window`."""
    agg, tz = _per_minute(data)
    n = int(agg["n"].sum()) if len(agg) else 0
    if n == 0:
        return Activity(pd.DataFrame(), freq or "1h", tz, 0, {}, "")
    window = time_window(agg["minute"].to_numpy(dtype=np.int64), agg["flag"], agg["n"].to_numpy())
    kept = agg.loc[window.keep]
    notes = [window.note] if window.note else []
    if kept.empty:
        return Activity(pd.DataFrame(), freq or "1h", tz, n, window.left_out, "; ".join(notes))
    wall = pd.to_datetime(kept["minute"].to_numpy(dtype=np.int64), utc=True).tz_convert(tz).tz_localize(None)
    wall_ns = wall.asi8  # the wall clock: a DST fall-back hour is one bucket, not an error
    first, last = pd.Timestamp(wall_ns.min()), pd.Timestamp(wall_ns.max())
    if freq is None:
        freq = _auto_freq(first, last, AUTO_BUCKETS)
    try:
        step = pd.Timedelta(freq).value
    except ValueError as exc:
        raise QueryError(f"bucket size {freq!r}: a duration is needed (e.g. 15min, 1h, 1D)") from exc
    if step <= 0 or step % _MINUTE:
        raise QueryError(f"bucket size {freq!r} must be a whole number of minutes")
    columns = (last.value // step - first.value // step) + 1
    if columns > MAX_BUCKETS:
        wider = _auto_freq(first, last, MAX_BUCKETS)
        notes.append(f"buckets of {freq} would make {columns:,} columns: {wider} used")
        freq, step = wider, pd.Timedelta(wider).value
    hosts = kept["host"].astype(object).where(kept["host"].notna(), NO_HOST).astype(str).to_numpy()
    per = pd.DataFrame({"host": hosts, "bucket": wall_ns // step * step, "n": kept["n"].to_numpy()})
    order = per.groupby("host")["n"].sum()
    order = order.iloc[np.lexsort((order.index.to_numpy(dtype=str), -order.to_numpy()))]  # busiest, then by name
    top = list(order.index[:max_hosts])
    if len(order) > max_hosts:
        notes.append(f"{len(order) - max_hosts:,} quieter hosts not drawn ({int(order.iloc[max_hosts:].sum()):,} rows)")
    counts = (per[per["host"].isin(top)].groupby(["host", "bucket"])["n"].sum().unstack(fill_value=0).reindex(top))
    full = np.arange(counts.columns.min(), counts.columns.max() + 1, step)
    counts = counts.reindex(columns=full, fill_value=0).fillna(0).astype("int64")
    counts.columns = pd.to_datetime(full)
    return Activity(counts, freq, tz, n, window.left_out, "; ".join(notes))


def activity_heatmap(data: Any, freq: str | None = None, max_hosts: int = 30, *, log_scale: bool = False,
                     per_host: bool = False):
    """Rows per host per time bucket as a heatmap (``data``: a Timeline, a timeline DataFrame or an
    :class:`Activity`).  ``log_scale``: a logarithmic colour scale (one busy week no longer hides the
    rest; empty buckets stay blank); ``per_host``: each host's row as a share of its own busiest bucket."""
    plt = _plt()
    from matplotlib import colors, dates as mdates

    act = data if isinstance(data, Activity) else activity_counts(data, freq, max_hosts)
    counts = act.counts
    fig, ax = plt.subplots(figsize=(12, 0.4 * max(len(counts.index), 1) + 2.2), constrained_layout=True)
    fig.suptitle("activity per host (rows per bucket)" if not per_host else
                 "activity per host (share of each host's busiest bucket)")
    if act.note:
        ax.set_title(act.note, fontsize=8, loc="left", wrap=True)
    if counts.empty:
        ax.text(0.5, 0.5, "no rows" if not act.rows else "no row with a plausible time", ha="center",
                transform=ax.transAxes)
        return fig
    values = counts.to_numpy(dtype=float)
    if per_host:
        values = values / values.max(axis=1, keepdims=True)
    cmap = plt.get_cmap("viridis")
    if log_scale:
        cmap = cmap.with_extremes(bad="#f2f2f2")  # empty buckets
        shown = np.ma.masked_less_equal(values, 0)
        top = float(shown.max())
        norm = colors.LogNorm(vmin=min(float(shown.min()), top / 10), vmax=top)
    else:
        shown, norm = values, colors.Normalize(vmin=0, vmax=max(values.max(), 1e-12))
    step = pd.Timedelta(act.freq)
    x0, x1 = mdates.date2num(counts.columns[0]), mdates.date2num(counts.columns[-1] + step)
    im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                   extent=(x0, x1, len(counts.index) - 0.5, -0.5))
    ax.xaxis_date()
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_yticks(range(len(counts.index)), labels=list(counts.index), fontsize=8)
    ax.set_xlabel(f"time ({act.tz}), {_plural(len(counts.columns), 'bucket')} of {act.freq}")
    label = "share of the host's busiest bucket" if per_host else "rows"
    fig.colorbar(im, ax=ax, label=label + (" (log scale)" if log_scale else ""))
    return fig


# --- the story ------------------------------------------------------------------------------------

_FIG_WIDTH_PT = 12 * 72 * 0.8  # the story axes' width, in points (the legend takes the rest)
_LABEL_PT = 7  # font size of a marker's label
MAX_STACK = 40  # rows of stacked markers per host at most; more findings there become one "+N more" label


def _label(row: Any, has_count: bool) -> str:
    tech = "?" if pd.isna(row.technique) else str(row.technique)
    if has_count and not pd.isna(row.count):
        try:
            if int(row.count) > 1:
                return f"{tech} ×{int(row.count)}"
        except (TypeError, ValueError, OverflowError):  # a count that is no number: the label is the technique
            pass
    return tech


def _pack(x: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Row (0, 1, ...) for each mark at axis position ``x`` (sorted) taking ``widths`` to its right: the
    lowest row where it overlaps no mark already placed (interval packing)."""
    ends: list[float] = []
    rows = np.zeros(len(x), dtype=int)
    for i, (a, w) in enumerate(zip(x, widths)):
        for r, end in enumerate(ends):
            if a >= end:
                ends[r] = a + w
                rows[i] = r
                break
        else:
            rows[i] = len(ends)
            ends.append(a + w)
    return rows


def story_timeline(story: pd.DataFrame, tz: str | None = None):
    """The story (``forensics.hunt.story``) as a timeline: one lane per host, one labelled mark per finding,
    coloured by ATT&CK technique (the same colour in every figure).  Findings too close to sit side by side
    are stacked in their host's lane.  Uses ``level`` (mark size) and ``count`` (label) when the story
    has them."""
    plt = _plt()
    from matplotlib import dates as mdates
    from matplotlib.lines import Line2D

    st = story.reset_index(drop=True)
    window = time_window(st["timestamp"], st["time_flag"] if "time_flag" in st else None, what="finding")
    st = st.loc[window.keep].reset_index(drop=True)
    if st.empty:
        fig, ax = plt.subplots(figsize=(12, 2.5), constrained_layout=True)
        fig.suptitle("the story: findings per host")
        ax.set_title(window.note or "no findings", fontsize=8, loc="left", wrap=True)
        ax.text(0.5, 0.5, "no findings" if not len(story) else "no finding with a plausible time", ha="center",
                transform=ax.transAxes)
        return fig
    zone = tz or (str(st["local_time"].dt.tz) if "local_time" in st else "UTC")
    t = pd.to_datetime(st["timestamp"], utc=True).dt.tz_convert(zone).dt.tz_localize(None)
    hosts = st["host"].astype(object).where(st["host"].notna(), NO_HOST).astype(str) if "host" in st else \
        pd.Series(NO_HOST, index=st.index)
    techniques = st["technique"].astype(object).where(st["technique"].notna(), "?").astype(str) \
        if "technique" in st else pd.Series("?", index=st.index)
    has_count = "count" in st
    labels = [_label(r, has_count) for r in st.assign(technique=techniques).itertuples()]
    # where each finding sits: x as a fraction of the axis, a row within its host's lane
    lo, hi = t.min(), t.max()
    span = max(hi - lo, pd.Timedelta("2min"))
    label_w = np.array([(10 + len(s) * 0.6 * _LABEL_PT) / _FIG_WIDTH_PT for s in labels])  # mark + text
    right = float(label_w.max()) if len(label_w) else 0.0
    pad = span * 0.03
    x0, x1 = lo - pad, hi + pad + span * (right / max(1e-9, 1 - right))
    frac = ((t - x0) / (x1 - x0)).to_numpy(dtype=float)
    order = list(dict.fromkeys(hosts))
    row = np.zeros(len(st), dtype=int)
    for h in order:
        idx = np.flatnonzero((hosts == h).to_numpy())
        idx = idx[np.argsort(frac[idx], kind="stable")]
        row[idx] = _pack(frac[idx], label_w[idx])
    over = row >= MAX_STACK
    lane_rows = {h: int(min(row[(hosts == h).to_numpy()].max() + 1, MAX_STACK)) for h in order}
    base, y0 = {}, 0
    for h in order:
        base[h] = y0
        y0 += lane_rows[h]
    y = np.array([base[h] + min(r, MAX_STACK - 1) for h, r in zip(hosts, row)], dtype=float)
    fig, ax = plt.subplots(figsize=(12, 0.24 * y0 + 0.25 * len(order) + 2.5), constrained_layout=True)
    fig.suptitle("the story: findings per host")
    if window.note:
        ax.set_title(window.note, fontsize=8, loc="left", wrap=True)
    levels = st["level"].astype(object).where(st["level"].notna(), "").astype(str).str.lower() if "level" in st else None
    size = (levels.map(_LEVEL_SIZE).fillna(44).to_numpy() if levels is not None else np.full(len(st), 44.0))
    tn = mdates.date2num(t)
    for tech in sorted(set(techniques)):
        sel = (techniques == tech).to_numpy() & ~over
        if sel.any():
            ax.scatter(tn[sel], y[sel], s=size[sel], color=technique_colour(tech), label=tech,
                       edgecolors="black", linewidths=0.3, zorder=3)
    for i in np.flatnonzero(~over):
        ax.annotate(labels[i], (tn[i], y[i]), xytext=(5, 0), textcoords="offset points", va="center",
                    fontsize=_LABEL_PT, clip_on=True)
    for h in order:  # findings past the stack's height: one mark and a count, never hidden
        sel = np.flatnonzero(over & (hosts == h).to_numpy())
        if len(sel):
            yy = base[h] + MAX_STACK - 1
            ax.annotate(f"+{len(sel)} more", (tn[sel].min(), yy), xytext=(5, 0), textcoords="offset points",
                        va="center", fontsize=_LABEL_PT, color="#b00020")
            ax.scatter(tn[sel], np.full(len(sel), yy), s=size[sel], color=[technique_colour(techniques[i]) for i in sel],
                       edgecolors="black", linewidths=0.3, zorder=2)
    ax.set_xlim(mdates.date2num(x0), mdates.date2num(x1))
    ax.set_ylim(y0 - 0.5, -0.5)
    ax.set_yticks([base[h] + (lane_rows[h] - 1) / 2 for h in order], labels=order, fontsize=8)
    for h in order[1:]:
        ax.axhline(base[h] - 0.5, color="#cccccc", linewidth=0.6)
    ax.xaxis_date()
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"time ({zone})")
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor=technique_colour(k), markeredgecolor="black",
                      markeredgewidth=0.3, label=k) for k in sorted(set(techniques))]
    ax.legend(handles=handles, title="ATT&CK", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
