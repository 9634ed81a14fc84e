"""EVTX loss accounting under damage (issue 16, section 9): over byte-flipped copies of a real log, the records
missing (against an independent count: python-evtx's own chunk reader on the intact file, chunk by chunk) equal
the records counted as errors; a damaged frame never hides an intact record with the same number."""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

import pytest

from collectors.base import Artifact
from collectors.evtx import EvtxCollector

SAMPLE = "omerbenamram-evtx/samples/system.evtx"
_OFF = re.compile(r"record=(\d+)(?: offset=0x([0-9a-f]+))?$")


def _load_fuzz_trust():
    """benchmarks/fuzz_trust.py, whose ``_evtx_reference`` is the independent count both use."""
    spec = importlib.util.spec_from_file_location("fuzz_trust", Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_trust.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# offset -> record number of every record of the intact file, by python-evtx's chunk reader, chunk after chunk
# (not trusting the file header's chunk count)
_reference = _load_fuzz_trust()._evtx_reference


def _collect(path) -> tuple[list[str], object]:
    c = EvtxCollector()
    art = Artifact("e", "x.evtx", str(path), "", 0)
    refs = [r for t in list(c.collect(art)) + list(c.finish()) for r in t["record_ref"].to_pylist()]
    return refs, c.report(art)


def _read(refs: list[str], ref: dict[int, int]) -> set[int]:
    """The reference records (by offset) that rows stand for: by the offset of the row's frame, or by number for
    a row read from a damaged stretch (no frame)."""
    by_number = {n: o for o, n in ref.items()}
    got = set()
    for r in refs:
        m = _OFF.match(r)
        if m.group(2):
            got.add(int(m.group(2), 16))
        elif int(m.group(1)) in by_number:
            got.add(by_number[int(m.group(1))])
    return got


@pytest.fixture(scope="module")
def sample(evidence):
    buf = (evidence / SAMPLE).read_bytes()
    ref = _reference(buf)
    assert len(ref) == 1881
    return buf, ref


def test_a_damaged_number_never_hides_an_intact_record(sample, tmp_path):
    buf, ref = sample
    b = bytearray(buf)
    b[0x4F588] ^= 0x12  # the record number of the frame at 0x4f580 becomes that of the record at 0x51a20
    path = tmp_path / "flipped.evtx"
    path.write_bytes(b)
    refs, rep = _collect(path)
    assert "record=573 offset=0x51a20" in refs and "record=573 offset=0x4f580" in refs
    assert len(refs) == 1881 and rep.errors == []
    assert any("carried by frames of different content" in w.message for w in rep.warnings)


def test_records_missing_equal_errors_counted_over_50_flipped_copies(sample, tmp_path):
    buf, ref = sample
    rng = random.Random(20261202)
    missing_all = counted_all = 0
    for i in range(50):
        b = bytearray(buf)
        for _ in range(rng.choice([1, 4, 16, 64, 256])):
            p = rng.randrange(0x1000, len(b))
            b[p] ^= 1 << rng.randrange(8)
        path = tmp_path / f"copy{i}.evtx"
        path.write_bytes(b)
        refs, rep = _collect(path)
        missing = len(set(ref) - _read(refs, ref))
        counted = sum(e.count for e in rep.errors)
        assert missing == counted, (i, missing, counted, [e.as_dict() for e in rep.errors][:5])
        missing_all += missing
        counted_all += counted
        path.unlink()
    assert missing_all == counted_all > 0


def test_a_zeroed_chunk_is_counted(sample, tmp_path):
    buf, ref = sample
    b = bytearray(buf)
    b[0x51000:0x61000] = bytes(0x10000)  # chunk 5 (records 572..701) zeroed
    path = tmp_path / "zeroed.evtx"
    path.write_bytes(b)
    refs, rep = _collect(path)
    assert len(refs) == 1881 - 130
    assert [(e.kind, e.count) for e in rep.errors] == [("damaged_frames", 130)]
    assert "records 572..701" in rep.errors[0].message


def test_a_record_whose_damaged_data_has_an_empty_field_name_keeps_its_row():
    """Found by benchmarks/fuzz_trust.py (seed 3): an empty EventData name (a damaged record) raised IndexError in
    the field extraction, and the whole file was lost."""
    from collectors.evtx_events import extract

    s = {"Provider": "P", "EventID": 1, "TimeCreated": None, "EventRecordID": 1, "Channel": "System",
         "Computer": "h", "UserID": None}
    assert extract(s, {"": "x", "Name": "value"})["message"] == "1 P: =x; Name=value"
