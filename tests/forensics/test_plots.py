"""Figures: the numbers drawn are the numbers in the timeline; PNGs are written by the CLI."""

from __future__ import annotations

import forensics
from forensics import plots
from forensics.cli import main


def test_activity_heatmap_counts(corpus_case):
    case, _ = corpus_case
    tl = forensics.open(case.path).between("2017-12-26", "2017-12-29", tz="UTC")
    fig = plots.activity_heatmap(tl, freq="6h")
    ax = fig.axes[0]
    data = ax.images[0].get_array()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["DESKTOP-2KGM189"]
    assert int(data.sum()) == len(tl) == 207
    assert data.shape == (1, 8)  # 2017-12-26 12:00 .. 2017-12-28 06:00, empty buckets included
    assert data.tolist() == [[168, 0, 0, 0, 0, 0, 0, 39]]


def test_story_timeline_and_cli_png(corpus_case, tmp_path, capsys):
    case, _ = corpus_case
    st = forensics.open(case.path).story()
    fig = plots.story_timeline(st)
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(st) == 161
    out = tmp_path / "story.png"
    assert main(["plot", str(case.path), "--kind", "story", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    out2 = tmp_path / "activity.png"
    assert main(["-q", "plot", str(case.path), "--freq", "1D", "-o", str(out2)]) == 0
    assert out2.read_bytes()[:4] == b"\x89PNG"
