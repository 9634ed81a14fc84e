"""Sigma over the timeline: every SigmaHQ regression sample fires its rule; no rule crashes the run."""

from __future__ import annotations

import collections

import pytest
import yaml

import forensics
from forensics import sigma

RULE_DIRS = ["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-dfir"]


@pytest.fixture(scope="module")
def regression(sigma_dir, tmp_path_factory):
    case = forensics.Case(tmp_path_factory.mktemp("sigma") / "case", create=True)
    rep = case.collect([sigma_dir / "regression_data"], workers=1)
    run = sigma.run(forensics.open(case.path), [sigma_dir / d for d in RULE_DIRS])
    return case, rep, run


def test_every_regression_sample_fires_its_rule(sigma_dir, regression):
    case, rep, run = regression
    assert rep.records_read == 120 and rep.errors == 0
    # an event found in two samples is one timeline row with two sightings: look at every sighting
    sightings = case.sightings().to_pandas()
    seen_in = sightings.groupby("event_hash")["evidence_path"].apply(set).to_dict()
    fired = collections.defaultdict(set)
    for rid, h in zip(run.matches["rule_id"], run.matches["event_hash"]):
        fired[rid] |= seen_in[h]
    samples = sorted((sigma_dir / "regression_data").rglob("info.yml"))
    assert len(samples) == 96
    missed = []
    for info in samples:
        meta = yaml.safe_load(info.read_text())
        rid = meta["rule_metadata"][0]["id"]
        path = meta["regression_tests_info"][0]["path"].removeprefix("regression_data/")
        if path not in fired.get(rid, set()):
            missed.append((rid, meta["rule_metadata"][0]["title"]))
    assert missed == []


def test_all_rules_run_without_crashing_and_report_what_they_could_not_do(regression):
    _, _, run = regression
    assert run.rules_loaded > 3700
    assert run.rules_converted + len([k for k in run.conversion_errors if not k.endswith(".yml")]) == run.rules_loaded
    # unsupported features are reported per rule, with the reason
    reasons = collections.Counter(v.split(":")[0] for v in run.conversion_errors.values())
    assert set(reasons) <= {"unsupported", "SigmaError", "SigmaValueError", "SigmaConfigurationError",
                            "SigmaCorrelationRule"}
    # only the two rules whose values are placeholders for the analyst's own lists (|expand) are left out
    assert sorted(v for v in run.conversion_errors.values() if v.startswith("unsupported")) == [
        "unsupported: placeholder 'known_cdcs' has no value here (expand modifier)"] * 2
    assert all(isinstance(v, str) and v for v in run.evaluation_errors.values())
    m = run.matches
    assert {"rule_id", "title", "level", "tags", "timestamp", "host", "evidence_path", "record_ref"} <= set(m.columns)
    assert all(t[0] == f"sigma:{rid}" for t, rid in zip(m["tags"], m["rule_id"]))
    assert any(tag.startswith("attack.t") for tags in m["tags"] for tag in tags)


def test_sigma_respects_the_timeline_filters(sigma_dir, regression):
    case, _, _ = regression
    rules = sigma_dir / "rules/windows/process_access"
    everything = sigma.run(forensics.open(case.path), rules)
    assert everything.rules_loaded == 23 and everything.rules_matched >= 1
    hosts = set(everything.matches["host"])
    only = sigma.run(forensics.open(case.path).where(host=sorted(hosts)[0]), rules)
    assert set(only.matches["host"]) == {sorted(hosts)[0]}
    none = sigma.run(forensics.open(case.path).where(host="no-such-host"), rules)
    assert none.matches.empty and none.rules_converted == 23


def test_saved_matches_tag_the_rows_and_are_in_custody(sigma_dir, regression, tmp_path):
    case, _, run = regression
    rid = "387df17d-3b04-448f-8669-9e7fd5e5fd8c"
    hit = run.matches[run.matches["rule_id"] == rid]["event_hash"].iloc[0]
    tl = forensics.open(case.path)
    assert tl.where(event_hash=hit).to_pandas()["tags"].iloc[0].tolist() == []
    entry = sigma.save(tl, run, [str(sigma_dir / "rules")])
    assert entry["rows_tagged"] == run.matches["event_hash"].nunique()
    tags = forensics.open(case.path).where(event_hash=hit).to_pandas()["tags"].iloc[0].tolist()
    assert f"sigma:{rid}" in tags and any(t.startswith("attack.") for t in tags)
    assert len(forensics.open(case.path)) == len(tl)  # tagging adds no rows
    assert case.verify().ok


def test_dask_engine_on_a_cluster_gives_exactly_the_duckdb_matches(sigma_dir, regression):
    """``sigma.run`` on ``forensics.open(case, engine="dask")``: each partition evaluated by the same SQL
    on a dask.distributed cluster; the matches are those of the DuckDB engine, row for row."""
    distributed = pytest.importorskip("distributed")
    case, _, _ = regression
    rules = sigma_dir / "rules" / "windows"
    by_duckdb = sigma.run(forensics.open(case.path), rules)
    ddf = forensics.open(case.path, engine="dask").repartition(npartitions=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        by_dask = sigma.run(ddf, rules)
    assert by_dask.rows == by_duckdb.rows == 119
    assert by_dask.evaluation_errors == by_duckdb.evaluation_errors == {}
    assert by_dask.skipped == by_duckdb.skipped
    assert len(by_dask.matches) == len(by_duckdb.matches) > 100
    assert by_dask.matches.equals(by_duckdb.matches)


def test_rows_whose_text_columns_are_all_null_are_evaluated(evidence, sigma_dir, tmp_path):
    """A DataFrame (or dask partition) of web rows has no channel at all: Arrow would type those
    columns ``null``, on which no string function exists; the run must evaluate them as text."""
    case = forensics.Case(tmp_path / "case", create=True)
    case.collect([evidence / "plaso" / "test_data" / "apache_access.log"], workers=1)
    df = forensics.open(case.path).to_pandas()
    assert len(df) == 15 and df["channel"].isna().all()
    run = sigma.run(df, sigma_dir / "rules" / "web")
    assert run.rows == 15 and run.evaluation_errors == {}
    assert run.matches.equals(sigma.run(forensics.open(case.path), sigma_dir / "rules" / "web").matches)
