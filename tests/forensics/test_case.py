"""A case end to end on real evidence: collect, idempotence, dedupe with provenance, custody, verify."""

from __future__ import annotations

import json
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from forensics import Case, EvidenceChanged, EvidenceNotFound, UnknownFormat
from timeline.store import CaseStore

SAMPLES = "omerbenamram-evtx/samples"


@pytest.fixture
def small_evidence(evidence, tmp_path):
    """A copy of three real EVTX files in a folder (copies: some tests change them)."""
    d = tmp_path / "evidence" / "Logs"
    d.mkdir(parents=True)
    for name in ("Security_short_selected.evtx", "new-user-security.evtx", "sysmon.evtx"):
        shutil.copy(evidence / SAMPLES / name, d / name)
    return d


def test_collect_writes_sorted_parquet_with_custody(small_evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([small_evidence], workers=1)
    assert (rep.records_read, rep.rows_written, rep.duplicates_dropped, rep.errors) == (369, 369, 0, 0)
    files = case.store.files("timeline")
    assert len(files) == 1
    meta = pq.read_metadata(files[0])
    assert meta.num_rows == 369
    ts = pq.read_table(files[0], columns=["timestamp"]).column(0)
    assert pc.all(pc.greater_equal(ts[1:], ts[:-1])).as_py()  # sorted by time
    stats = meta.row_group(0).column(0).statistics
    assert stats.has_min_max  # row groups carry min/max: time-window reads skip what they don't need
    entries = list(case.store.custody.entries())
    assert [e["action"] for e in entries] == ["case_created", "commit"]
    commit = entries[1]
    assert commit["records_read"] == 369 and commit["rows_written"] == 369
    ev = commit["evidence"][0]
    assert ev["path"] == str(small_evidence)
    assert sorted(f["path"] for f in ev["files"]) == ["Security_short_selected.evtx", "new-user-security.evtx", "sysmon.evtx"]
    for f in ev["files"]:
        assert len(f["sha256"]) == 64 and len(f["md5"]) == 32 and f["sha256_after"] == f["sha256"]
    assert commit["tool"]["forensics"] and commit["tool"]["evtx"]
    assert {f["path"].split("/")[0] for f in commit["files"]} == {"timeline", "sightings", "problems"}
    assert case.verify().ok


def test_collecting_the_same_evidence_twice_adds_nothing(small_evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    case.collect([small_evidence], workers=1)
    before = case.timeline().num_rows
    rep = case.collect([small_evidence], workers=1)
    assert rep.rows_written == 0 and len(rep.skipped) == 3 and rep.records_read == 0
    assert case.timeline().num_rows == before == 369
    assert case.sightings().num_rows == 369
    assert case.verify().ok


def test_the_same_log_found_twice_is_one_row_with_both_provenances(small_evidence, tmp_path):
    # a "shadow copy" of the Security log in another folder of the same evidence
    shadow = small_evidence.parent / "vss1"
    shadow.mkdir()
    shutil.copy(small_evidence / "new-user-security.evtx", shadow / "new-user-security.evtx")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([small_evidence.parent], workers=1)
    assert (rep.records_read, rep.rows_written, rep.duplicates_dropped) == (373, 369, 4)
    s = case.sightings()
    paths = s.filter(pc.is_in(s["event_hash"], case.timeline()["event_hash"]))
    per_hash = {}
    for h, p in zip(paths["event_hash"].to_pylist(), paths["evidence_path"].to_pylist()):
        per_hash.setdefault(h, set()).add(p)
    both = [v for v in per_hash.values() if len(v) == 2]
    assert len(both) == 4
    assert all(v == {"Logs/new-user-security.evtx", "vss1/new-user-security.evtx"} for v in both)


def test_corpus_duplicates_across_files_are_merged(corpus_case):
    case, rep = corpus_case
    # security.evtx (python-evtx) and security_bad_string_cache.evtx hold the same 2261 records;
    # issue_201.evtx and MSExchange_Management_wec.evtx are byte-identical.
    assert rep.duplicates_dropped == 2262
    assert rep.rows_written == 28286 - 2262 == case.timeline().num_rows
    info = case.info()
    # records read: 28,286 rows and 473 records counted lost in damaged frames (issue 16 section 9)
    assert info["rows"] == 26024 and info["records_read"] == 28759 and info["sightings"] == 28286
    assert info["first"] == "2010-11-21T03:55:59.626427100Z"
    assert info["errors"] == 473 and info["warnings"] == 61
    assert info["problems_by_kind"] == {"warning:damage": 44, "error:damaged_frames": 449, "warning:parser_error": 17,
                                        "error:undecodable_record": 24}
    assert info["artifacts"]["evtx:System"] == 10100 and info["artifacts"]["evtx:Security"] == 3319
    assert len(info["hosts"]) == 41


def test_damage_is_counted_in_the_custody_log(corpus_case):
    case, _ = corpus_case
    commit = [e for e in case.store.custody.entries() if e["action"] == "commit"][0]
    arts = {a["evidence_path"]: a for a in commit["artifacts"]}
    bad = arts["omerbenamram-evtx/samples/sample_with_a_bad_chunk_magic.evtx"]
    # records in damaged stretches of frames are counted lost (issue 16 section 9)
    assert (bad["rows"], bad["lost"], bad["warnings"]) == (301, 166, 7)
    trunc = arts["plaso/test_data/evtx/System2.evtx"]
    assert (trunc["rows"], trunc["lost"], trunc["warnings"]) == (284, 0, 5)
    assert commit["warnings"] == 61 and commit["errors"] == 473


def test_verify_fails_after_one_byte_of_a_timeline_file_changes(small_evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    case.collect([small_evidence], workers=1)
    f = case.store.files("timeline")[0]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    rep = case.verify()
    assert not rep.ok
    assert rep.problems == [f"timeline/{f.name}: SHA-256 differs from the custody log (file was altered)"]


def test_verify_fails_after_a_custody_entry_changes(small_evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    case.collect([small_evidence], workers=1)
    log = case.store.custody.path
    lines = log.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["rows_written"] -= 1
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    log.write_text("\n".join(lines) + "\n")
    assert Case(tmp_path / "case").verify().problems == [
        "custody entry #2: content does not match its hash (entry was altered)"]


def test_verify_fails_when_a_file_is_added_or_removed(small_evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    case.collect([small_evidence], workers=1)
    f = case.store.files("timeline")[0]
    shutil.copy(f, f.with_name("intruder.parquet"))
    f.unlink()
    problems = case.verify().problems
    assert "timeline/intruder.parquet: file is not recorded in the custody log" in problems
    assert f"timeline/{f.name}: recorded in the custody log but missing" in problems


def test_verify_rehashes_reachable_evidence(small_evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    case.collect([small_evidence], workers=1)
    (small_evidence / "sysmon.evtx").write_bytes(b"tampered")
    problems = case.verify().problems
    assert len(problems) == 1 and problems[0].startswith(f"evidence {small_evidence / 'sysmon.evtx'}: SHA-256")
    assert case.verify(check_evidence=False).ok


def test_evidence_is_not_modified_by_collection(small_evidence, tmp_path):
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_evidence.iterdir()}
    Case(tmp_path / "case", create=True).collect([small_evidence], workers=1)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_evidence.iterdir()}
    assert before == after


def test_evidence_changing_during_collection_commits_nothing(small_evidence, tmp_path, monkeypatch):
    import forensics.case as fc

    real = fc._collect_bin

    def tamper(*args):
        out = real(*args)
        with open(small_evidence / "sysmon.evtx", "ab") as fh:  # appended while we were reading
            fh.write(b"\0")
        return out

    monkeypatch.setattr(fc, "_collect_bin", tamper)
    case = Case(tmp_path / "case", create=True)
    with pytest.raises(EvidenceChanged, match="sysmon.evtx"):
        case.collect([small_evidence], workers=1)
    assert case.timeline().num_rows == 0
    assert [e["action"] for e in case.store.custody.entries()] == ["case_created", "aborted"]
    assert case.verify(check_evidence=False).ok


def test_missing_and_unknown_evidence(tmp_path):
    case = Case(tmp_path / "case", create=True)
    with pytest.raises(EvidenceNotFound):
        case.collect([tmp_path / "nope"])
    (tmp_path / "notes.txt").write_text("not a log")
    with pytest.raises(UnknownFormat, match="unknown format"):
        case.collect([tmp_path / "notes.txt"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(UnknownFormat, match="no recognised artifact"):
        case.collect([empty])


def test_a_corrupt_file_skips_that_file_not_the_run(small_evidence, tmp_path):
    (small_evidence / "garbage.evtx").write_bytes(b"ElfFile\x00" + b"\xff" * 5000)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([small_evidence], workers=1)
    assert rep.rows_written == 369
    garbage = [a for a in rep.artifacts if a["evidence_path"] == "garbage.evtx"][0]
    assert garbage["rows"] == 0
    assert case.verify().ok


def test_parallel_workers_give_the_same_rows(small_evidence, tmp_path):
    one = Case(tmp_path / "one", create=True)
    one.collect([small_evidence], workers=1)
    two = Case(tmp_path / "two", create=True)

    two.collect([small_evidence], workers=2, batch_rows=100)
    key = lambda c: sorted(c.timeline(["event_hash"]).column(0).to_pylist())  # noqa: E731
    assert key(one) == key(two)
    assert len(two.store.files("timeline")) > 1  # small batches: several sorted parts


def test_recovery_after_a_crash(small_evidence, tmp_path):
    case = Case(tmp_path / "case", create=True)
    store = case.store
    # a run that died before its commit leaves staged files: they are discarded and the discard recorded
    orphan = store.root / "staging" / "20260101T000000-deadbeef"  # its writer died: no live lock
    orphan.mkdir(parents=True)
    (orphan / "tl-00000-0000.parquet").write_bytes(b"partial")
    rep = case.collect([small_evidence], workers=1)
    assert rep.rows_written == 369
    actions = [e["action"] for e in store.custody.entries()]
    assert actions == ["case_created", "recovered", "commit"]
    assert not orphan.exists()
    assert case.verify().ok


def test_not_a_case(tmp_path):
    from forensics import CaseError

    with pytest.raises(CaseError, match="not a case directory"):
        Case(tmp_path)
    with pytest.raises(CaseError):
        CaseStore(tmp_path)


def test_units_keep_artifacts_of_the_same_size_together():
    from collectors.base import Artifact
    from forensics.case import _bins

    def task(name, size):
        return ("evtx", "evtx", Artifact("e", name, name, "0" * 64, size))

    mb = 1 << 20
    tasks = [task("a", 5 * mb), task("b", 3 * mb), task("a-copy", 5 * mb), task("c", 4 * mb), task("d", 1 * mb),
             task("big1", 20 * mb), task("big2", 20 * mb)]
    bins = [[t[2].evidence_path for t in b] for b in _bins(tasks, workers=2, bin_bytes=32 * mb)]
    # the two 20 MB logs would exceed a unit together: they are split; the two 5 MB logs share a unit
    assert sorted(map(sorted, bins)) == [["a", "a-copy", "big1"], ["b", "big2", "c", "d"]]
