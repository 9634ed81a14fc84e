"""Scale-out: units of work committed one by one (resume after SIGKILL), a real Dask cluster on
loopback, and the timeline as a dask DataFrame."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import forensics
from forensics import Case, hunt

EVTX = ["omerbenamram-evtx/samples", "python-evtx/tests/data", "plaso/test_data/evtx"]


@pytest.fixture(scope="module")
def multi_host(evidence: Path) -> list[Path]:
    """Real EVTX of many hosts (three folders of the corpus) and plaso's syslog folder."""
    return [evidence / p for p in EVTX] + [evidence / "plaso" / "test_data" / "syslog"]


@pytest.fixture(scope="module")
def clean(multi_host, tmp_path_factory):
    case = Case(tmp_path_factory.mktemp("clean") / "case", create=True)
    rep = case.collect(multi_host, workers=1)
    return case, rep


def _hashes(case: Case) -> list[str]:
    return sorted(case.timeline(["event_hash"]).column("event_hash").to_pylist())


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "forensics", "-q", *args]


def test_units_are_committed_one_by_one(multi_host, clean, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect(multi_host, workers=1, unit_bytes=4 << 20)
    commits = case.store.commits()
    assert len(commits) == commits[0]["units"] > 3
    assert {c["collection"] for c in commits} == {rep.run_id}
    assert _hashes(case) == _hashes(clean[0]) and rep.records_read == clean[1].records_read


def test_a_killed_collection_resumes_to_the_same_timeline(multi_host, clean, tmp_path):
    case_dir = tmp_path / "case"
    cmd = _cli("collect", *map(str, multi_host), "--case", str(case_dir), "--workers", "1", "--unit-mb", "2")
    proc = subprocess.Popen(cmd, start_new_session=True)
    custody = case_dir / "custody.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it once two units are committed, mid-run
        if custody.exists() and custody.read_text().count('"action":"commit"') >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("collection finished before it could be killed; lower --unit-mb")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    case = Case(case_dir)
    partial = len(_hashes(case))
    assert 0 < partial < len(_hashes(clean[0]))
    assert subprocess.run(cmd, timeout=600).returncode == 0
    case = Case(case_dir)
    assert _hashes(case) == _hashes(clean[0])  # same rows, no duplicates
    assert case.info()["records_read"] == clean[1].records_read
    actions = [e["action"] for e in case.store.custody.entries()]
    assert "interrupted" in actions
    assert case.verify().ok


def test_collection_through_a_dask_cluster_equals_a_local_run(multi_host, clean, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        case = Case(tmp_path / "case", create=True)
        rep = case.collect(multi_host, client=client, unit_bytes=8 << 20)
        workers = {a for a in client.run(os.getpid).values()}
    assert len(workers) == 2
    assert _hashes(case) == _hashes(clean[0])
    assert rep.records_read == clean[1].records_read and rep.errors == clean[1].errors
    assert case.verify().ok


def test_the_cli_takes_a_scheduler_address(evidence, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        r = subprocess.run(_cli("collect", str(evidence / "plaso" / "test_data" / "syslog"), "--case", str(tmp_path / "c"),
                                "--scheduler", cluster.scheduler_address), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert Case(tmp_path / "c").info()["rows"] > 0


def test_the_timeline_as_a_dask_dataframe(clean):
    case, _ = clean
    ddf = forensics.open(case.path, engine="dask")
    tl = forensics.open(case.path)
    assert int(ddf[ddf.event_id == 4624].shape[0].compute()) == len(tl.where(event_id=4624))
    assert int(ddf.shape[0].compute()) == len(tl)
    lazy = hunt.logons(ddf)
    got = lazy.compute().sort_values(["timestamp", "evidence_path", "record_ref"]).reset_index(drop=True)
    want = hunt.logons(tl).sort_values(["timestamp", "evidence_path", "record_ref"]).reset_index(drop=True)
    assert len(got) == len(want) > 0
    cols = ["timestamp", "user", "src_ip", "outcome", "method", "evidence_path", "record_ref"]
    assert got[cols].astype(str).values.tolist() == want[cols].astype(str).values.tolist()
    assert str(got["local_time"].dt.tz) == tl.tz
