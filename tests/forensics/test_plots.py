"""Figures: the numbers drawn are the numbers in the timeline; PNGs are written by the CLI.

Real figures (matplotlib Agg) from real cases: the corpus's EVTX, the sample case collected, and a real web
log (crowdsec-hub's http_dos_bypass_cache.log) with one genuine ``01/Jan/1970`` line appended to a copy.
The assertions read the figure's data (image arrays, x-limits, colours, label positions), not pixels.
"""

from __future__ import annotations

import datetime
import json
import shutil

import matplotlib.colors as mcolors
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest

import forensics
from forensics import plots, sample
from forensics.cli import main
from timeline.schema import conform
from timeline.store import CaseStore, write_parquet

LINE_1970 = '127.4.3.2 - - [01/Jan/1970:00:00:00 +0000] "GET /?cache=1970 HTTP/1.1" 200 10701 "-" "Mozilla/5.0"\n'


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
    assert [mdates.num2date(x).replace(tzinfo=None) for x in ax.get_xlim()] == [
        datetime.datetime(2017, 12, 26, 12), datetime.datetime(2017, 12, 28, 12)]


def test_story_timeline_and_cli_png(corpus_case, tmp_path, capsys):
    case, _ = corpus_case
    st = forensics.open(case.path).story()
    fig = plots.story_timeline(st)
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(st) == 162
    out = tmp_path / "story.png"
    assert main(["plot", str(case.path), "--kind", "story", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    out2 = tmp_path / "activity.png"
    assert main(["-q", "plot", str(case.path), "--freq", "1D", "-o", str(out2)]) == 0
    assert out2.read_bytes()[:4] == b"\x89PNG"


# --- a real web log with a genuine 01/Jan/1970 line ---------------------------------------------


@pytest.fixture
def web_1970(evidence, tmp_path):
    """A case (zone Asia/Kolkata) of a copy of a real access log (355 requests on 2023-10-10 08:32 UTC) with
    one genuine 01/Jan/1970 line appended."""
    src = evidence / "crowdsec-hub" / ".tests" / "http-dos-bypass-cache" / "http_dos_bypass_cache.log"
    (tmp_path / "ev").mkdir()
    log = tmp_path / "ev" / "access.log"
    shutil.copyfile(src, log)
    with open(log, "a") as fh:
        fh.write("\n" + LINE_1970)  # the file ends without a newline
    forensics.Case(tmp_path / "case", create=True, tz="Asia/Kolkata").collect([tmp_path / "ev"], workers=1)
    tl = forensics.open(tmp_path / "case")
    assert len(tl) == 357 and str(tl.time_range()[0]) == "1970-01-01 00:00:00+00:00"
    return tmp_path / "case"


def _xlim(ax):
    return [mdates.num2date(x).replace(tzinfo=None) for x in ax.get_xlim()]


def test_a_1970_line_does_not_stretch_the_heatmap(web_1970):
    tl = forensics.open(web_1970)
    fig = plots.activity_heatmap(tl, freq="1h")
    ax = fig.axes[0]
    data = ax.images[0].get_array()
    # 1970 .. 2023 in hours would be positions for ~positions 469,000 buckets; the line is left out, and said so
    assert data.shape == (1, 1) and data.tolist() == [[356]]
    assert _xlim(ax) == [datetime.datetime(2023, 10, 10, 14), datetime.datetime(2023, 10, 10, 15)]  # IST
    # the collection flagged it (attrs.time_flag, timeline.schema.flag_times): the figure says so
    assert ax.get_title(loc="left") == "1 row left out of the time axis: 1 flagged by their parser (epoch ×1)"
    assert ax.get_xlabel() == "time (Asia/Kolkata), 1 bucket of 1h"
    assert [t.get_text() for t in ax.get_yticklabels()] == [plots.NO_HOST]
    act = plots.activity_counts(tl)  # no size given: the span of the kept rows decides
    assert act.freq == "1min" and act.counts.shape == (1, 1) and act.left_out == {"flagged by their parser (epoch ×1)": 1}
    assert int(act.counts.to_numpy().sum()) + sum(act.left_out.values()) == act.rows == len(tl)  # every row told


def test_a_1970_finding_is_left_out_of_the_story_figure(evidence, tmp_path):
    """A real Apache log (plaso's test data) with a genuine 01/Jan/1970 scanner line: the story has a finding
    dated 1970 and one in 2016; the figure keeps the 2016 one on its axis and says what it left out."""
    (tmp_path / "ev").mkdir()
    log = tmp_path / "ev" / "access.log"
    shutil.copyfile(evidence / "plaso" / "test_data" / "apache_access.log", log)
    with open(log, "a") as fh:
        fh.write('10.0.0.9 - - [01/Jan/1970:00:00:00 +0000] "GET /wp-login.php HTTP/1.1" 404 209 "-" "curl/7.47.0"\n')
    forensics.Case(tmp_path / "case", create=True).collect([tmp_path / "ev"], workers=1)
    st = forensics.open(tmp_path / "case").story()
    assert [str(t) for t in st["timestamp"]] == ["1970-01-01 00:00:00+00:00", "2016-01-13 17:31:20+00:00"]
    ax = plots.story_timeline(st).axes[0]
    assert ax.get_title(loc="left") == "1 finding left out of the time axis: 1 before 1990"
    assert [t.get_text() for t in ax.texts] == ["T1505.003 ×4"]  # the web shell's finding stands for 4 requests
    lo, hi = _xlim(ax)
    assert lo < datetime.datetime(2016, 1, 13, 17, 31, 20) < hi and hi - lo < datetime.timedelta(minutes=10)
    only_1970 = plots.story_timeline(st.iloc[:1]).axes[0]
    assert only_1970.get_title(loc="left") == "1 finding left out of the time axis: 1 before 1990"
    assert [t.get_text() for t in only_1970.texts] == ["no finding with a plausible time"]


def test_flagged_times_are_left_out_and_named(web_1970, tmp_path):
    """attrs.time_flag (set by the collectors on implausible times) leaves a row out with its flag named,
    read in DuckDB for a Timeline and from attrs for a DataFrame."""
    table = forensics.open(web_1970).to_arrow()
    attrs = table.column("attrs").to_pylist()
    flagged = [json.dumps({**json.loads(a), "time_flag": "epoch"}) if a and "01/Jan/1970" in a else a for a in attrs]
    assert sum(a != b for a, b in zip(attrs, flagged)) == 1
    store = CaseStore.create(tmp_path / "flagged", tz="Asia/Kolkata")
    staging = store.staging_dir("r")
    write_parquet(conform(table.set_column(table.schema.get_field_index("attrs"), "attrs", [flagged])),
                  staging / "tl-0.parquet")
    store.commit("r", [staging / "tl-0.parquet"], [])
    tl = forensics.open(tmp_path / "flagged")
    for data in (tl, tl.to_pandas()):
        act = plots.activity_counts(data, "1h")
        assert act.left_out == {"flagged by their parser (epoch ×1)": 1}
        assert act.note == "1 row left out of the time axis: 1 flagged by their parser (epoch ×1)"
        assert act.counts.to_numpy().tolist() == [[356]]


# --- the sample case ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory, mke2fs):
    base = tmp_path_factory.mktemp("sample")
    sample.build(base / "evidence", seed=7, mke2fs=mke2fs)
    case = forensics.Case(base / "case", create=True, tz="Asia/Kolkata")
    case.collect([base / "evidence"], workers=1)
    return base / "case"


def test_sample_case_heatmap_range_and_scales(sample_case, tmp_path):
    tl = forensics.open(sample_case)
    old = tl.sql("SELECT count(*) AS n FROM timeline WHERE timestamp < TIMESTAMPTZ '2022-11-18 00:00:00+00'")["n"][0]
    assert old == 8  # /etc/hostname and /etc/timezone of ehosp-app01's image, 2021-03-02: 20 months before the rest
    fig = plots.activity_heatmap(tl, freq="1h")
    ax = fig.axes[0]
    data = np.asarray(ax.images[0].get_array())
    # the bulk: the rows' 1st and 99th percentile (nearest rank, in whole minutes), widened by its width
    n = len(tl)

    def nth(k):
        return pd.Timestamp(tl.sql(f"SELECT timestamp FROM timeline ORDER BY timestamp LIMIT 1 OFFSET {k}")
                            ["timestamp"][0]).floor("min")

    lo, hi = nth(int(0.01 * (n - 1))), nth(int(np.ceil(0.99 * (n - 1))))
    a, b = lo - (hi - lo), hi + (hi - lo) + pd.Timedelta("1min")
    assert (a.strftime("%Y-%m-%d %H:%M"), b.strftime("%Y-%m-%d %H:%M")) == ("2022-11-18 11:55", "2022-11-25 15:26")
    assert ax.get_title(loc="left") == ("8 rows left out of the time axis: 8 far from the bulk of the rows "
                                        "(outside 2022-11-18 11:55 – 2022-11-25 15:26 UTC)")
    assert data.shape == (4, 61) and int(data.sum()) == len(tl) - 8 == 19617
    assert _xlim(ax) == [datetime.datetime(2022, 11, 21, 0), datetime.datetime(2022, 11, 23, 13)]  # IST
    hosts = [t.get_text() for t in ax.get_yticklabels()]
    assert hosts == ["ehosp-app01", "ehosp-db01", "FS01.hosp.local", "DC01.hosp.local"]
    # the same counts computed by DuckDB: rows per host per hour of Indian wall-clock time
    want = tl.sql("SELECT host, date_trunc('hour', timezone('Asia/Kolkata', timestamp)) AS b, count(*) AS n "
                  "FROM timeline WHERE timestamp >= TIMESTAMPTZ '2022-11-18 00:00:00+00' GROUP BY ALL")
    start = pd.Timestamp("2022-11-21 00:00")
    expected = np.zeros((4, 61))
    for h, b, n in want.itertuples(index=False):
        expected[hosts.index(h), int((pd.Timestamp(b) - start) / pd.Timedelta("1h"))] = n
    assert np.array_equal(data, expected)
    assert isinstance(ax.images[0].norm, mcolors.Normalize) and ax.images[0].norm.vmax == data.max() == 2004
    # log scale: the same counts, empty buckets masked (blank), a logarithmic norm from the quietest bucket
    log = plots.activity_heatmap(tl, freq="1h", log_scale=True).axes[0].images[0]
    arr = log.get_array()
    assert isinstance(log.norm, mcolors.LogNorm) and log.norm.vmin == 1 and log.norm.vmax == 2004
    assert int(np.ma.getmaskarray(arr).sum()) == int((data == 0).sum()) > 0
    assert np.array_equal(arr.filled(0), data)
    # per host: each host's busiest bucket is 1
    per = np.asarray(plots.activity_heatmap(tl, freq="1h", per_host=True).axes[0].images[0].get_array())
    assert per.max(axis=1).tolist() == [1.0] * 4
    assert np.allclose(per * data.max(axis=1, keepdims=True), data)
    # a bucket size that would need too many columns is widened, and the figure says so
    act = plots.activity_counts(tl, "1min")
    # 2022-11-21 00:00 .. 2022-11-23 12:00 IST: 3,601 minutes (MAX_BUCKETS 1,000), 721 five-minute buckets
    assert act.freq == "5min" and act.counts.shape[1] == 721
    assert act.note.endswith("buckets of 1min would make 3,601 columns: 5min used")
    out = tmp_path / "act.png"
    assert main(["-q", "plot", str(sample_case), "--log-scale", "--per-host", "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def _marks(ax):
    """(technique, facecolour, x, y) of every mark of a story figure."""
    out = []
    for c in ax.collections:
        for (x, y), fc in zip(c.get_offsets(), np.broadcast_to(c.get_facecolors(), (len(c.get_offsets()), 4))):
            out.append((c.get_label(), mcolors.to_hex(fc), float(x), float(y)))
    return out


def test_sample_story_colours_labels_and_stacking(sample_case):
    tl = forensics.open(sample_case)
    st = tl.story()
    assert len(st) == 15
    fig = plots.story_timeline(st)
    ax = fig.axes[0]
    marks = _marks(ax)
    assert len(marks) == 15
    # the same technique has the same colour in another figure with other techniques (no order of appearance)
    later = plots.story_timeline(st[st["technique"].isin(["T1486", "T1490", "T1070.001"])])
    colours = {t: c for t, c, _, _ in marks}
    assert {t: c for t, c, _, _ in _marks(later.axes[0])} == {t: colours[t] for t in ("T1486", "T1490", "T1070.001")}
    assert all(c == plots.technique_colour(t) for t, c in colours.items())
    # every finding labelled; findings seconds apart stacked within their host's lane, labels never overlapping
    labels = [t for t in ax.texts if t.get_text().startswith("T")]
    assert sorted(t.get_text() for t in labels) == sorted(t + (f" ×{n}" if n > 1 else "") for t, n in zip(st["technique"], st["count"]))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
    ys = {(t, round(x, 9), y) for t, _, x, y in marks}
    same_time = st[st["technique"] == "T1490"]  # vssadmin twice, 3 ms apart, on FS01
    assert len(same_time) == 2 and len({y for t, _, _, y in marks if t == "T1490"}) == 2
    assert len(ys) == 15
    xs = {round(x, 6) for _, _, x, _ in marks}
    assert min(xs) == round(mdates.date2num(pd.Timestamp("2022-11-23 07:00:03")), 6)  # local time on the axis
    assert ax.get_xlabel() == "time (Asia/Kolkata)"


def test_story_with_and_without_the_detection_columns(sample_case):
    """The story may carry level, detector, rule_id, count, first, last (Sigma findings): the figure uses level
    (mark size) and count (label) when present, and works without them; pandas 2's None host as well."""
    st = forensics.open(sample_case).story()
    extra = st.assign(level=["critical", "high"] + [None] * (len(st) - 2), detector="hunt", rule_id=None,
                      count=[240] + [1] * (len(st) - 1), first=st["timestamp"], last=st["timestamp"])
    extra["host"] = extra["host"].astype(object)
    extra.loc[3, "host"] = None  # pandas 2.2: object column with None; pandas 3: str column with NaN
    fig = plots.story_timeline(extra)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "T1110 ×240" in texts and texts.count("T1110") == 0
    assert plots.NO_HOST in [t.get_text() for t in ax.get_yticklabels()]
    sizes = {c.get_label(): list(c.get_sizes()) for c in ax.collections}
    assert sizes["T1110"] == [90] and sizes["T1110.003"] == [70] and sizes["T1486"] == [44, 44]
    bare = st[["timestamp", "host", "technique", "finding"]].copy()
    bare["host"] = pd.Series([None] * len(bare), dtype=object)
    fig = plots.story_timeline(bare, tz="UTC")
    assert fig.axes[0].get_xlabel() == "time (UTC)" and sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 15


def test_stacks_higher_than_the_lane_end_in_a_count_not_in_hiding():
    t0 = pd.Timestamp("2022-11-23 01:30:00", tz="UTC")
    st = pd.DataFrame({"timestamp": [t0 + pd.Timedelta(milliseconds=i) for i in range(plots.MAX_STACK + 10)],
                       "host": "FS01", "technique": "T1486", "finding": "x"})
    ax = plots.story_timeline(st).axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == plots.MAX_STACK + 10
    assert [t.get_text() for t in ax.texts].count("T1486") == plots.MAX_STACK
    assert "+10 more" in [t.get_text() for t in ax.texts]


def test_technique_colours_are_stable():
    # from a SHA-256 of the id, not Python's per-process salted hash() nor the order of appearance
    assert plots.technique_colour("T1003.001") == plots.technique_colour("t1003.001") == "#1fd951"
    h = [mcolors.rgb_to_hsv(mcolors.to_rgb(plots.technique_colour(t)))[0] for t in ("T1003", "T1003.001", "T1003.006")]
    assert max(h) - min(h) < 1e-2  # one family, one hue; the sub-technique changes the lightness
    assert plots.technique_colour("T1003") != plots.technique_colour("T1003.001")
    assert plots.technique_colour(None) == plots.technique_colour("?") == plots.technique_colour(float("nan"))
