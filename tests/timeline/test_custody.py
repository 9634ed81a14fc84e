import hashlib
import json
import os
import stat

import pytest

from timeline.custody import GENESIS, CustodyLog, hash_file, open_evidence, verify_chain
from timeline.errors import EvidenceNotFound


def test_hash_file_matches_hashlib_and_the_corpus_readme(evidence):
    path = evidence / "plaso/test_data/evtx/System2.evtx"
    h = hash_file(path)
    data = path.read_bytes()
    assert h.size == 200000
    assert h.sha256 == hashlib.sha256(data).hexdigest()
    assert h.md5 == hashlib.md5(data).hexdigest()
    # the corpus README lists this file's SHA-1: the bytes we hashed are the published ones
    assert hashlib.sha1(data).hexdigest() == "62dc041773670b4e0c2b8c307fde834acb0b30e6"
    assert hash_file(path, md5=False).md5 is None


def test_hash_file_streams_multi_block_files(tmp_path):
    p = tmp_path / "big.bin"
    data = os.urandom((3 << 20) + 17)  # several 1 MiB blocks and a tail
    p.write_bytes(data)
    h = hash_file(p)
    assert (h.size, h.sha256, h.md5) == (len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


def test_evidence_is_opened_read_only(tmp_path):
    p = tmp_path / "ro.evtx"
    p.write_bytes(b"x")
    p.chmod(stat.S_IRUSR)
    fd = open_evidence(p)
    try:
        with pytest.raises(OSError):
            os.write(fd, b"y")  # the descriptor is read-only
    finally:
        os.close(fd)
    with pytest.raises(EvidenceNotFound):
        open_evidence(tmp_path / "missing")


def test_chain_appends_and_verifies(tmp_path):
    log = CustodyLog(tmp_path / "custody.jsonl")
    e1 = log.append("case_created", case_id="c1")
    e2 = log.append("commit", files=[{"path": "timeline/a.parquet", "sha256": "ab"}])
    assert e1["seq"] == 1 and e1["prev"] == GENESIS
    assert e2["seq"] == 2 and e2["prev"] == e1["hash"]
    assert log.head() == (2, e2["hash"])
    assert verify_chain(log) == []


def test_chain_detects_an_edited_entry(tmp_path):
    log = CustodyLog(tmp_path / "custody.jsonl")
    log.append("case_created")
    log.append("commit", rows_written=10)
    log.append("commit", rows_written=20)
    lines = log.path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["rows_written"] = 11  # a forger changes a count but keeps the hash
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(lines) + "\n")
    problems = verify_chain(log)
    assert problems == ["custody entry #2: content does not match its hash (entry was altered)"]


def test_chain_detects_a_removed_entry(tmp_path):
    log = CustodyLog(tmp_path / "custody.jsonl")
    for i in range(3):
        log.append("commit", n=i)
    lines = log.path.read_text().splitlines()
    log.path.write_text(lines[0] + "\n" + lines[2] + "\n")
    problems = verify_chain(log)
    assert "custody entry #3: expected sequence number 2" in problems
    assert "custody entry #3: does not chain to the previous entry (prev hash mismatch)" in problems


def test_chain_reports_garbage_lines(tmp_path):
    log = CustodyLog(tmp_path / "custody.jsonl")
    log.append("case_created")
    with open(log.path, "a") as fh:
        fh.write("{not json\n")
    assert verify_chain(log) == ["custody log line 2 is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"]
