"""Two collections into one case at once: the second waits for the first, then skips what it read; no count
(records read, sightings, errors) is ever doubled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import forensics
from timeline.errors import CaseLocked
from timeline.store import CaseStore

FILES = [  # the folder collected twice at once (13 MB: a few seconds of hashing and parsing)
    "plaso/test_data/evtx/System.evtx",
    "python-evtx/tests/data/security.evtx",
    "plaso/test_data/evtx/System2.evtx",
    "python-evtx/tests/data/issue_43.evtx",
    "omerbenamram-evtx/samples/security_bad_string_cache.evtx",
    "omerbenamram-evtx/samples/sample-with-irregular-bool-values.evtx",
    "omerbenamram-evtx/samples/sample_with_a_bad_chunk_magic.evtx",  # damage: warnings
    "omerbenamram-evtx/samples/sysmon.evtx",
    "omerbenamram-evtx/samples/post-Security.evtx",
]


def test_two_collects_of_the_same_evidence_at_once(evidence, tmp_path, cli):
    folder = tmp_path / "ev"
    folder.mkdir()
    for rel in FILES:
        shutil.copy(evidence / rel, folder / os.path.basename(rel))
    once = tmp_path / "once"
    assert cli("-q", "collect", str(folder), "--case", str(once), "--workers", "1").returncode == 0
    expected = json.loads(cli("info", str(once), "--json").stdout)
    # (15,524 records read: 15,358 sightings and 166 records of damaged frames counted lost; compared below with
    # what one collection holds)
    assert expected["records_read"] == expected["sightings"] + expected["errors"] > 15_000 and expected["warnings"] > 0

    case = tmp_path / "case"
    CaseStore.create(case)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(os.path.dirname(forensics.__path__[0])),
                                                       os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "forensics", "collect", str(folder), "--case", str(case), "--workers", "1"]
    # Both start while the case's collection lock is held here, so both are certain to arrive at once whatever the
    # machine's load; once it is released, one collects and the other waits for it (without the lock, both read and
    # commit everything: every count doubled).
    waiting = "another collection into this case is running; waiting for it to finish"
    with CaseStore(case).collecting(timeout=0):
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        early = []
        for p in procs:  # each says it waits before it reads anything
            line = p.stderr.readline()
            while line and waiting not in line:
                early.append(line)
                line = p.stderr.readline()
            assert waiting in line, early
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    info = json.loads(cli("info", str(case), "--json").stdout)
    for key in ("rows", "records_read", "sightings", "errors", "warnings", "hosts", "artifacts", "problems_by_kind"):
        assert info[key] == expected[key], key
    commits = [e for e in CaseStore(case).custody.entries() if e["action"] == "commit"]
    assert sum(e["records_read"] for e in commits) == expected["records_read"]
    assert len(commits[-1]["skipped"]) == len(FILES)  # the second read nothing again
    assert forensics.Case(case).verify().ok


def test_a_collection_lock_held_elsewhere_times_out_with_case_locked(tmp_path):
    store = CaseStore.create(tmp_path / "case")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'case' / '.collect.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with pytest.raises(CaseLocked, match="another collection into this case is running"):
            with store.collecting(timeout=0):
                pass
        with pytest.raises(CaseLocked):
            with store.collecting(timeout=0.3):
                pass
        assert time.monotonic() - t0 >= 0.3
    finally:
        holder.kill()
        holder.wait()
    with store.collecting(timeout=0):  # free again
        pass
