"""The custody log under faults: a full disk, short writes, a crash in the middle of an append, a changed
case.json, a chain cut or extended behind the analyst's back.

Full-disk tests run on a real 20 MB tmpfs filled with fallocate (root only; they skip otherwise); the same faults
are also injected at the OS boundary (``os.write``, Parquet writes) so that they run everywhere."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil

import pytest

import forensics
from timeline import custody as custody_mod
from timeline import store as store_mod
from timeline.custody import CustodyLog, verify_chain
from timeline.errors import CaseWriteError

SYSTEM = "plaso/test_data/evtx/System.evtx"  # 5009 records
SECURITY = "python-evtx/tests/data/security.evtx"  # 2261 records
SYSTEM2 = "plaso/test_data/evtx/System2.evtx"  # 284 records


def _copy(evidence, rel, dest):
    dest.mkdir(parents=True, exist_ok=True)
    return shutil.copy(evidence / rel, dest / os.path.basename(rel))


# --- whole or absent appends ---------------------------------------------------------------------------------


def test_a_short_write_is_completed(tmp_path, monkeypatch):
    log = CustodyLog(tmp_path / "custody.jsonl")
    log.append("case_created")
    real = os.write
    calls = []

    def short(fd, data):  # the kernel may write less than asked (a signal, a nearly full disk)
        calls.append(len(data))
        return real(fd, bytes(data[:max(1, len(data) // 3)]))

    with monkeypatch.context() as m:
        m.setattr(custody_mod.os, "write", short)
        entry = log.append("commit", files=["x" * 500])
    assert len(calls) > 1  # it took several writes
    assert log.path.read_bytes().endswith(b"\n") and log.torn() == b""
    assert verify_chain(log) == []
    assert [e["action"] for e in log.entries()] == ["case_created", "commit"]
    assert log.head() == (2, entry["hash"])


def test_a_full_disk_mid_append_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    log = CustodyLog(tmp_path / "custody.jsonl")
    log.append("case_created")
    before = log.path.read_bytes()
    real = os.write
    state = {"n": 0}

    def enospc(fd, data):  # 100 bytes go, then the disk is full
        state["n"] += 1
        if state["n"] == 1:
            return real(fd, bytes(data[:100]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(custody_mod.os, "write", enospc)
        with pytest.raises(CaseWriteError, match="No space left on device; nothing was recorded"):
            log.append("commit", files=["x" * 500])
    assert log.path.read_bytes() == before  # cut back: the append is absent, not torn
    assert verify_chain(log) == []
    log.append("commit")  # and the log goes on
    assert [e["action"] for e in log.entries()] == ["case_created", "commit"]


def test_full_disk_recollect_never_tears_the_log(evidence, tmp_path, tmpfs, fill, cli):
    """The trial's case: re-running a collect whose evidence is already in, on a full disk, exited 0 and left a
    torn line; from then on verify, info and collect exited 7, even after space was freed."""
    mnt = tmpfs("20m")
    ev = _copy(evidence, SYSTEM, tmp_path / "ev")
    case = mnt / "case"
    assert cli("-q", "collect", ev, "--case", str(case), "--workers", "1").returncode == 0
    filler = fill(mnt)
    codes = []
    for _ in range(6):  # each empty run appends a commit entry until the log's last page is full
        r = cli("-q", "collect", ev, "--case", str(case), "--workers", "1")
        codes.append(r.returncode)
        assert r.returncode in (0, 12), r.stderr
        assert "Traceback" not in r.stderr
        assert (case / "custody.jsonl").read_bytes().endswith(b"\n")
        if r.returncode == 12:
            assert r.stderr.strip().splitlines() == [
                f"forensics: error: cannot append to the custody log {case / 'custody.jsonl'}: No space left on "
                "device; nothing was recorded (free some space or make the case writable, then run the command again)"]
        for cmd in (("verify", str(case)), ("info", str(case))):  # the case stays usable while the disk is full
            assert cli(*cmd).returncode == 0
    assert 12 in codes  # the disk was really full for the custody log
    filler.unlink()
    assert cli("-q", "collect", ev, "--case", str(case), "--workers", "1").returncode == 0
    assert cli("verify", str(case)).returncode == 0
    info = json.loads(cli("info", str(case), "--json").stdout)
    assert (info["rows"], info["records_read"], info["sightings"]) == (5009, 5009, 5009)


def test_collect_on_a_full_disk_while_parsing_is_a_clear_error(evidence, tmp_path, tmpfs, fill, cli):
    """Worker processes that cannot write their parts: one line, exit 12, no _RemoteTraceback; the case verifies
    and the next collection, with space, reads what was not committed."""
    mnt = tmpfs("20m")
    folder = tmp_path / "ev"
    for rel in (SECURITY, SYSTEM2):
        _copy(evidence, rel, folder)
    case = mnt / "case"
    forensics.Case(case, create=True)
    filler = fill(mnt, leave=64 << 10)
    r = cli("collect", str(folder), "--case", str(case), "--workers", "2")
    assert r.returncode == 12, r.stderr
    assert "Traceback" not in r.stderr and "_RemoteTraceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("forensics: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert cli("verify", str(case)).returncode == 0
    filler.unlink()
    assert cli("-q", "collect", str(folder), "--case", str(case), "--workers", "2").returncode == 0
    assert cli("verify", str(case)).returncode == 0
    info = json.loads(cli("info", str(case), "--json").stdout)
    assert (info["records_read"], info["sightings"], info["errors"]) == (2261 + 284, 2261 + 284, 0)


def test_a_write_that_fails_in_a_unit_stops_the_run_instead_of_failing_the_file(evidence, tmp_path, monkeypatch):
    """A part that cannot be written is not a corrupt evidence file: the run stops (nothing committed) rather than
    committing the file as 'failed' with its records counted as lost."""
    ev = _copy(evidence, SYSTEM2, tmp_path / "ev")
    case = forensics.Case(tmp_path / "case", create=True)

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(store_mod.pq, "write_table", enospc)
        with pytest.raises(CaseWriteError, match="No space left on device; nothing was committed"):
            case.collect([ev], workers=1)
    actions = [e["action"] for e in case.store.custody.entries()]
    assert actions == ["case_created", "aborted"]
    assert not list((tmp_path / "case" / "staging").iterdir())
    assert case.verify().ok
    rep = case.collect([ev], workers=1)
    assert (rep.records_read, rep.rows_written, rep.errors) == (284, 284, 0)


# --- a torn line left by a crash -------------------------------------------------------------------------------


def test_a_torn_last_line_is_set_aside_on_the_next_open(evidence, tmp_path, cli):
    ev = _copy(evidence, SYSTEM2, tmp_path / "ev")
    case = tmp_path / "case"
    assert cli("-q", "collect", ev, "--case", str(case), "--workers", "1").returncode == 0
    path = case / "custody.jsonl"
    whole = path.read_bytes()
    # a crash (power cut) in the middle of the next append: half a line, no newline
    torn = json.dumps({"seq": 3, "action": "commit", "files": [{"path": "timeline/x.parquet"}]}).encode()[:57]
    path.write_bytes(whole + torn)
    r = cli("info", str(case))
    assert r.returncode == 0 and "Traceback" not in r.stderr
    entries = list(CustodyLog(path).entries())
    rep = entries[-1]
    assert rep["action"] == "repaired" and rep["seq"] == 3 and rep["prev"] == entries[-2]["hash"]
    assert rep["torn"] == {"offset": len(whole), "bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest(),
                           "base64": base64.b64encode(torn).decode()}
    assert base64.b64decode(rep["torn"]["base64"]) == torn  # kept, never silently dropped
    assert path.read_bytes().startswith(whole)
    v = cli("verify", str(case))
    assert v.returncode == 0
    assert "note: custody entry #3: an incomplete line of 57 byte(s) (an append cut short by a crash) was set aside " \
           "there; it is not part of the chain" in v.stdout
    r = cli("-q", "collect", ev, "--case", str(case), "--workers", "1")
    assert r.returncode == 0
    assert [e["action"] for e in CustodyLog(path).entries()] == ["case_created", "commit", "repaired", "commit"]


def test_readers_skip_a_torn_line_the_next_append_sets_aside(tmp_path):
    log = CustodyLog(tmp_path / "custody.jsonl")
    first = log.append("case_created")
    with open(log.path, "ab") as fh:
        fh.write(b'{"seq":2,"act')
    assert [e["seq"] for e in log.entries()] == [1] and log.head() == (1, first["hash"])
    assert verify_chain(log) == []
    assert log.torn() == b'{"seq":2,"act'
    log.append("export")
    assert [(e["seq"], e["action"]) for e in log.entries()] == [(1, "case_created"), (2, "repaired"), (3, "export")]
    assert log.torn() == b"" and verify_chain(log) == []


# --- what the chain covers ---------------------------------------------------------------------------------------


def test_verify_fails_on_a_changed_case_json(evidence, tmp_path, cli):
    ev = _copy(evidence, SYSTEM2, tmp_path / "ev")
    case = tmp_path / "case"
    assert cli("-q", "collect", ev, "--case", str(case), "--tz", "Asia/Kolkata").returncode == 0
    assert cli("verify", str(case)).returncode == 0
    meta = json.loads((case / "case.json").read_text())
    meta["tz"] = "America/New_York"  # every local time shown would move by 10.5 hours
    (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    r = cli("verify", str(case))
    assert r.returncode == 7
    assert "FAIL: case.json: SHA-256 differs from custody entry #1 (the case's zone, id or schema version was " \
           "changed)" in r.stderr


def test_verify_expect_head(evidence, tmp_path, cli):
    ev = _copy(evidence, SYSTEM2, tmp_path / "ev")
    case = tmp_path / "case"
    assert cli("-q", "collect", ev, "--case", str(case)).returncode == 0
    c = forensics.Case(case)
    head = c.verify().head
    assert c.verify(expect_head=head).ok
    assert cli("verify", str(case), "--expect-head", head.upper()).returncode == 0
    whole = (case / "custody.jsonl").read_bytes()
    # appended since the head was written down
    forensics.open(case).export(tmp_path / "x.csv", "csv")
    rep = forensics.Case(case).verify(expect_head=head)
    assert rep.problems == [f"custody head {rep.head} is not the expected {head}: that is entry #2; 1 entry appended "
                            "since"]
    assert cli("verify", str(case), "--expect-head", head).returncode == 7
    # truncated: the last entries removed (whole lines, so the chain itself still verifies)
    (case / "custody.jsonl").write_bytes(whole.splitlines(keepends=True)[0])
    rep = forensics.Case(case).verify(expect_head=head, check_evidence=False)
    assert verify_chain(CustodyLog(case / "custody.jsonl")) == []
    assert f"custody head {rep.head} is not the expected {head}: no entry of the chain has that hash (entries " \
           "removed or rewritten)" in rep.problems
    r = cli("verify", str(case), "--expect-head", "1234")
    assert r.returncode == 2 and "not a SHA-256 hash" in r.stderr
