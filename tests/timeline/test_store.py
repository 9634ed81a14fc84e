"""The case store: atomic parts, commit protocol, recovery, concurrent collectors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from forensics import Case
from timeline.schema import RowBuilder
from timeline.store import CaseStore, write_parquet


def _table(hashes, ts0=0):
    rb = RowBuilder()
    for i, h in enumerate(hashes):
        rb.add(timestamp=ts0 + 10 - i, timestamp_desc="Event Logged", source="EVTX", artifact="evtx:System",
               message=f"m{i}", attrs="{}", tags=[], tz_source="source_utc", evidence_id="e", evidence_path="p",
               record_ref=f"record={i}", parser="test", event_hash=h)
    return rb.to_table()


def test_write_parquet_sorts_and_leaves_no_temporary(tmp_path):
    t = _table(["a" * 32, "b" * 32, "c" * 32])
    p = tmp_path / "part.parquet"
    write_parquet(t, p)
    assert [x.name for x in tmp_path.iterdir()] == ["part.parquet"]
    back = pq.read_table(p)
    ns = back.column("timestamp").cast("int64").to_pylist()
    assert ns == sorted(ns) == [8, 9, 10]


def test_commit_deduplicates_within_the_run_and_against_the_case(tmp_path):
    store = CaseStore.create(tmp_path / "case")
    staging = store.staging_dir("run1")
    write_parquet(_table(["a" * 32, "b" * 32, "a" * 32]), staging / "tl-1.parquet")
    write_parquet(_table(["b" * 32, "c" * 32]), staging / "tl-2.parquet")
    e = store.commit("run1", [staging / "tl-1.parquet", staging / "tl-2.parquet"], [])
    assert (e["rows_written"], e["duplicates_dropped"]) == (3, 2)
    staging = store.staging_dir("run2")
    write_parquet(_table(["c" * 32, "d" * 32]), staging / "tl-3.parquet")
    e = store.commit("run2", [staging / "tl-3.parquet"], [])
    assert (e["rows_written"], e["duplicates_dropped"]) == (1, 1)
    hashes = sorted(h for f in store.files() for h in pq.read_table(f, columns=["event_hash"]).column(0).to_pylist())
    assert hashes == ["a" * 32, "b" * 32, "c" * 32, "d" * 32]
    assert not (tmp_path / "case" / "staging" / "run1").exists()


def test_commit_tells_apart_events_whose_64_bit_keys_collide(tmp_path):
    # the commit holds only the hashes' first 64 bits; rows whose keys repeat are compared by full hash
    p = "0123456789abcdef"
    a, b, c, d = p + "0" * 16, p + "1" * 16, p + "2" * 16, "f" * 32
    store = CaseStore.create(tmp_path / "case")
    staging = store.staging_dir("run1")
    write_parquet(_table([a, b, a, d]), staging / "tl-1.parquet")
    write_parquet(_table([d, b, c]), staging / "tl-2.parquet")
    e = store.commit("run1", [staging / "tl-1.parquet", staging / "tl-2.parquet"], [])
    assert (e["rows_written"], e["duplicates_dropped"]) == (4, 3)
    staging = store.staging_dir("run2")
    write_parquet(_table([c, p + "3" * 16, b]), staging / "tl-3.parquet")
    e = store.commit("run2", [staging / "tl-3.parquet"], [])
    assert (e["rows_written"], e["duplicates_dropped"]) == (1, 2)
    hashes = sorted(h for f in store.files() for h in pq.read_table(f, columns=["event_hash"]).column(0).to_pylist())
    assert hashes == sorted([a, b, c, d, p + "3" * 16])


def test_a_run_committed_but_not_moved_is_rolled_forward(tmp_path, monkeypatch):
    store = CaseStore.create(tmp_path / "case")
    staging = store.staging_dir("run1")
    write_parquet(_table(["a" * 32]), staging / "tl-1.parquet")
    import timeline.store as ts

    real_replace = ts.os.replace
    calls = {"n": 0}

    def crash_on_move(src, dst):
        if str(src).startswith(str(staging)):
            calls["n"] += 1
            raise KeyboardInterrupt("power cut")  # dies right after the commit point
        return real_replace(src, dst)

    monkeypatch.setattr(ts.os, "replace", crash_on_move)
    with pytest.raises(KeyboardInterrupt):
        store.commit("run1", [staging / "tl-1.parquet"], [])
    monkeypatch.setattr(ts.os, "replace", real_replace)
    ts.os.close(store._runs.pop("run1"))  # the process "dies": its run lock goes with it
    assert store.files() == [] and calls["n"] == 1
    with store.lock():
        notes = store.recover()
    assert notes == ["run run1: committed before an interruption; 1 file(s) moved into place"]
    assert len(store.files()) == 1
    assert Case(tmp_path / "case").verify().ok


def test_two_collectors_writing_at_once(evidence, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(evidence / "plaso/test_data/evtx/System.evtx", a / "System.evtx")
    shutil.copy(evidence / "python-evtx/tests/data/security.evtx", b / "security.evtx")
    shutil.copy(evidence / "omerbenamram-evtx/samples/security_bad_string_cache.evtx", b / "security_copy.evtx")
    Case(tmp_path / "case", create=True)
    procs = [subprocess.Popen([sys.executable, "-m", "forensics", "-q", "collect", str(d), "--case", str(tmp_path / "case"),
                               "--workers", "1"]) for d in (a, b)]
    assert [p.wait(120) for p in procs] == [0, 0]
    case = Case(tmp_path / "case")
    assert case.timeline().num_rows == 7270
    assert [e["action"] for e in case.store.custody.entries()] == ["case_created", "commit", "commit"]
    assert case.verify().ok


def test_hash_index_and_first_sightings():
    import numpy as np
    import pyarrow as pa

    from timeline.store import HashIndex, first_sightings

    a = "0123456789abcdef" + "0" * 16
    b = "0123456789abcdef" + "1" * 16  # the same first 64 bits as a
    c = "f" * 32
    d = "0123456789ABCDEF" + "2" * 16  # upper-case hex: its own event
    idx = HashIndex()
    assert idx.contains(np.array([a.encode()], dtype="S32")).tolist() == [False]
    keep = first_sightings(pa.array([a, c, a, b]), idx)
    assert keep.tolist() == [True, True, False, True]
    keep = first_sightings(pa.chunked_array([[b, d], [c, "e" * 32, d]]), idx)
    assert keep.tolist() == [False, True, False, True, False]
    probe = np.array([x.encode() for x in (a, b, c, d, "e" * 32, "0123456789abcdef" + "3" * 16)], dtype="S32")
    assert idx.contains(probe).tolist() == [True, True, True, True, True, False]
    assert len(idx) == 5


def test_add_committed_reads_each_timeline_file_once_up_to_a_limit(tmp_path):
    import numpy as np

    from timeline.store import TIMELINE_DIR, HashIndex, add_committed

    store = CaseStore.create(tmp_path / "case")
    write_parquet(_table(["a" * 32, "b" * 32]), store.root / TIMELINE_DIR / "run1-tl-0.parquet")
    write_parquet(_table(["c" * 32]), store.root / TIMELINE_DIR / "run2-tl-0.parquet")
    probe = np.array([b"a" * 32, b"c" * 32, b"d" * 32], dtype="S32")
    idx = add_committed(store.root, HashIndex(), limit=2)
    assert idx.files == {"run1-tl-0.parquet"} and idx.contains(probe).tolist() == [True, False, False]
    add_committed(store.root, idx)
    assert len(idx) == 3 and idx.contains(probe).tolist() == [True, True, False]
