"""The web collector's column-wise path (Arrow, RE2) against its row-by-row path: the same rows, value for
value, the same errors, warnings and counts, on every web log of the corpus and on lines made to be awkward."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pyarrow as pa
import pytest

from collectors import WebCollector
from collectors.base import Artifact

LIMIT = 20 << 20  # corpus files up to this size


def _read(path: Path, bulk: bool, host: str | None = None):
    c = WebCollector()
    c.bulk, c.bulk_min = bulk, 1
    art = Artifact("e" * 16, path.name, str(path), "0" * 64, path.stat().st_size, host=host)
    tables = list(c.collect(art, batch_rows=1000)) + list(c.finish())
    table = pa.concat_tables(tables) if tables else None
    rows = sorted(table.to_pylist(), key=lambda r: int(r["record_ref"][5:])) if table is not None else []
    rep = c.report(art)
    return rows, sorted(e.as_dict().items() for e in rep.errors), sorted(w.as_dict().items() for w in rep.warnings), rep.stats


def _same(path: Path, host: str | None = None) -> int:
    fast = _read(path, True, host)
    slow = _read(path, False, host)
    assert len(fast[0]) == len(slow[0]), path
    for a, b in zip(fast[0], slow[0]):
        assert a == b, (path, {k: (a[k], b[k]) for k in a if a[k] != b[k]})
    assert fast[1:] == slow[1:], path
    return len(fast[0])


def _web_logs(evidence: Path) -> list[Path]:
    out = []
    for d in ("plaso/test_data", "crowdsec-hub/.tests", "dfvfs/test_data"):
        for root, _, files in os.walk(evidence / d):
            for name in files:
                p = Path(root) / name
                if p.stat().st_size <= LIMIT and WebCollector.matches(str(p)):
                    out.append(p)
    return sorted(out)


def test_both_paths_agree_on_every_web_log_of_the_corpus(evidence):
    files = _web_logs(evidence)
    assert len(files) == 48  # plaso and crowdsec web logs the collector recognises
    assert sum(_same(p) for p in files) == 874


AWKWARD = [
    '10.0.0.5 - bob [23/Nov/2022:07:00:00.250 +0530] "POST /uploads/shell.jsp?cmd=id HTTP/1.1" 200 1234 "-" "curl/7.1" "198.51.100.7" 0.004',
    '10.0.0.5 - - [23/Nov/2022:07:00:01 +0530] "GET /a?b HTTP/1.0" 304 - "http://x/\\"q\\"" "Mozilla \\\\ \\"odd\\""',
    '10.0.0.5 - - [23/Nov/2022:07:00:01 +0530] "GET /? HTTP/1.1" - 0 "" ""',
    '10.0.0.5 - - [23/Nov/2022:07:00:01 +0530] "GET /p#frag HTTP/1.1" 200 007 "-" "-"',
    'host.example - - [23/Nov/2022:07:00:02 -0700] "GET /p?x=1#f HTTP/2.0" 200 5',
    'host.example - - [23/Nov/2022:07:00:02 -0700] "GET /p HTTP/2.0" 200 5 trailing words',
    '10.0.0.7 - - [23/Nov/2022:07:00:03 +0530] "GET /ünïcode HTTP/1.1" 200 1 "-" "ua"',
    '10.0.0.7 - - [23/Nov/2022:07:00:03 +0530] "GET /tab HTTP/1.1" 200 1 "-" "a\tb"',
    '10.0.0.7 - - [31/Feb/2022:07:00:03 +0530] "GET / HTTP/1.1" 200 1 "-" "-"',
    '10.0.0.7 - - [23/Nov/2022:07:00:03 +0530] "GET / HTTP/1.1" 200 99999999999999999999 "-" "-"',
    '10.0.0.7 - - [23/Nov/2022:07:00:03 +0530] "GET / HTTP/1.1" 200 1 "-" "never closed',
    '::1 - - [23/Nov/2022:07:00:04 +0000] "-" 400 0 "-" "-"',
    'vhost.example:443 10.0.0.8 - - [23/Nov/2022:07:00:05 +0530] "GET / HTTP/1.1" 200 1 "-" "ua"',
    '10.0.0.9 - - [23/Nov/2022:07:00:06 +0530] "GET /' + "x" * 500 + ' HTTP/1.1" 200 1 "-" "ua"',
    '[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/x',
    '2022/11/23 07:00:00 [error] 1#0: *1 open() "/x" failed, client: 10.0.0.1, server: s, request: "GET /x HTTP/1.1"',
    'not a web log line at all',
]


def test_both_paths_agree_on_awkward_lines(tmp_path):
    rnd = random.Random(7)
    lines = [rnd.choice(AWKWARD) for _ in range(3000)] + AWKWARD  # identical lines repeat: k counts them
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _same(log, host="web01") == _same(log) > 2500
    # a W3C header in the middle: the lines after it are IIS lines, read row by row
    iis = tmp_path / "mixed.log"
    iis.write_text("\n".join(AWKWARD[:5]) + "\n#Software: Microsoft Internet Information Services 10.0\n"
                   "#Fields: date time c-ip cs-method cs-uri-stem sc-status\n2022-11-23 01:30:00 10.0.0.5 GET /x 200\n")
    assert _same(iis) == 6


@pytest.mark.parametrize("bulk", [True, False])
def test_the_block_path_keeps_line_numbers_and_counts(tmp_path, bulk):
    log = tmp_path / "access.log"
    log.write_text("\n".join(AWKWARD[:2] * 100) + "\n")
    rows, errors, warnings, stats = _read(log, bulk)
    assert [r["record_ref"] for r in rows[:3]] == ["line=1", "line=2", "line=3"]
    assert stats == {"rows": 200, "format_combined": 200} and not errors and not warnings
