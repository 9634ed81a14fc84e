"""Figures for notebooks and reports: activity per host over time, and the story as a timeline.

Both take a timeline DataFrame or a :class:`forensics.Timeline` and return a matplotlib
``Figure`` (``fig.savefig("x.png")`` writes it).  matplotlib is an optional extra:
``pip install '.[plots]'``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from timeline.errors import ParserUnavailable

__all__ = ["activity_heatmap", "story_timeline"]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ParserUnavailable("plots need matplotlib: pip install 'forensics[plots]'") from exc
    return plt


def _local(data: Any, columns: list[str]) -> tuple[pd.DataFrame, str]:
    from forensics.query import Timeline

    if isinstance(data, Timeline):
        return data.to_pandas(columns), data.tz
    df = data
    tz = str(df["local_time"].dt.tz) if "local_time" in df and len(df) else "UTC"
    return df, tz


def activity_heatmap(data: Any, freq: str = "1h", max_hosts: int = 30):
    """Rows per host per time bucket (``freq``, in the case's local time), as a heatmap."""
    plt = _plt()
    df, tz = _local(data, ["host"])
    fig, ax = plt.subplots(figsize=(12, 0.4 * min(max(df["host"].nunique(), 1), max_hosts) + 2), constrained_layout=True)
    if df.empty:
        ax.set_title("no rows")
        return fig
    t = df["local_time"] if "local_time" in df else df["timestamp"]
    top = df["host"].fillna("?").value_counts().index[:max_hosts]
    counts = (df.assign(host=df["host"].fillna("?"), bucket=t.dt.floor(freq))
                .loc[lambda x: x["host"].isin(top)]
                .groupby(["host", "bucket"]).size().unstack(fill_value=0).reindex(top))
    # every bucket between the first and the last, empty ones included: time reads left to right evenly
    full = pd.date_range(counts.columns.min(), counts.columns.max(), freq=freq)
    counts = counts.reindex(columns=full, fill_value=0).fillna(0)
    im = ax.imshow(counts.values, aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_yticks(range(len(counts.index)), labels=list(counts.index), fontsize=8)
    n = len(counts.columns)
    step = max(1, n // 12)
    ax.set_xticks(range(0, n, step), labels=[c.strftime("%Y-%m-%d %H:%M") for c in counts.columns[::step]],
                  rotation=45, ha="right", fontsize=8)
    ax.set_xlabel(f"time ({tz}), buckets of {freq}")
    ax.set_title("activity per host (rows per bucket)")
    fig.colorbar(im, ax=ax, label="rows")
    return fig


def story_timeline(story: pd.DataFrame, tz: str | None = None):
    """The story (``forensics.hunt.story``) as a timeline: one lane per host, one mark per finding,
    coloured by ATT&CK technique."""
    plt = _plt()
    hosts = list(dict.fromkeys(story["host"].fillna("?"))) if len(story) else []
    fig, ax = plt.subplots(figsize=(12, 0.5 * max(len(hosts), 1) + 2.5), constrained_layout=True)
    if story.empty:
        ax.set_title("no findings")
        return fig
    t = story["local_time"] if "local_time" in story else story["timestamp"]
    if tz:
        t = story["timestamp"].dt.tz_convert(tz)
    techniques = sorted(story["technique"].fillna("?").unique())
    cmap = plt.get_cmap("tab10" if len(techniques) <= 10 else "tab20")
    lane = {h: i for i, h in enumerate(hosts)}
    for k, tech in enumerate(techniques):
        sel = story["technique"].fillna("?") == tech
        ax.scatter(t[sel].dt.tz_localize(None), story.loc[sel, "host"].fillna("?").map(lane), s=40,
                   color=cmap(k % cmap.N), label=tech, edgecolors="black", linewidths=0.3, zorder=3)
    ax.set_yticks(range(len(hosts)), labels=hosts, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"time ({tz or (str(t.dt.tz) if hasattr(t, 'dt') else 'UTC')})")
    ax.set_title("the story: findings per host")
    ax.legend(title="ATT&CK", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.autofmt_xdate()
    return fig
