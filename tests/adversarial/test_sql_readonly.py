"""``forensics sql`` / ``Timeline.sql``: one read-only SELECT over the timeline.  A query cannot write into the
case (later queries would use the injected rows), attach or install anything, run several statements, or read
host files, unless reading is asked for explicitly (--allow-external)."""

from __future__ import annotations

import shutil

import pytest

import forensics
from timeline.errors import QueryError

SYSTEM = "plaso/test_data/evtx/System.evtx"  # 5009 records


@pytest.fixture
def case(evidence, tmp_path):
    shutil.copy(evidence / SYSTEM, tmp_path / "System.evtx")
    forensics.Case(tmp_path / "case", create=True).collect([tmp_path / "System.evtx"], workers=1)
    return tmp_path / "case"


def _refused(tl, query, match):
    with pytest.raises(QueryError, match=match):
        tl.sql(query)


def test_a_query_cannot_write_into_the_case(case, tmp_path, cli):
    tl = forensics.open(case)
    inject = case / "timeline" / "injected.parquet"
    for q in (f"COPY (SELECT * FROM timeline LIMIT 5) TO '{inject}' (FORMAT parquet)",
              f"SELECT 1; COPY (SELECT * FROM timeline LIMIT 5) TO '{inject}' (FORMAT parquet)",
              f"EXPORT DATABASE '{case / 'timeline'}'",
              f"ATTACH '{tmp_path / 'x.duckdb'}' AS x",
              "INSTALL httpfs", "LOAD httpfs", "SET enable_external_access = true", "PRAGMA version",
              "CREATE TABLE t AS SELECT 1", "DROP VIEW timeline"):
        with pytest.raises(QueryError, match=r"only a SELECT query can be run|one SQL statement at a time, not 2"):
            tl.sql(q)
        r = cli("sql", str(case), q)
        assert r.returncode == 9 and "Traceback" not in r.stderr, (q, r.stderr)
    assert sorted(p.name for p in (case / "timeline").iterdir()) == sorted(p.name for p in forensics.Case(case).store.files())
    assert not inject.exists() and not (tmp_path / "x.duckdb").exists()
    assert len(tl) == 5009
    assert forensics.Case(case).verify().ok


def test_a_query_cannot_read_host_files_unless_allowed(case, tmp_path, cli):
    tl = forensics.open(case)
    iocs = tmp_path / "iocs.csv"
    iocs.write_text("event_id,why\n7036,service state\n")
    for q in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_text('/etc/hostname')",
              "SELECT * FROM read_blob('/etc/hostname')", "SELECT * FROM glob('/etc/*')",
              f"SELECT count(*) FROM read_csv('{iocs}')", f"SELECT * FROM read_json('{case / 'case.json'}')",
              f"SELECT count(*) FROM read_parquet('{case}/timeline/*.parquet')"):
        _refused(tl, q, r"query refused: .*(--allow-external|allow_external=True)")
        r = cli("sql", str(case), q)
        assert r.returncode == 9 and "Traceback" not in r.stderr
        assert "root:" not in r.stdout
    # explicitly allowed: an IOC list joined to the timeline, still one read-only SELECT
    q = f"SELECT i.why, count(*) AS n FROM timeline t JOIN read_csv('{iocs}') i USING (event_id) GROUP BY 1"
    assert tl.sql(q, allow_external=True).to_dict("records") == [{"why": "service state", "n": 3434}]
    r = cli("sql", str(case), q, "--allow-external")
    assert r.returncode == 0 and r.stdout.split() == ["why", "n", "service", "state", "3434"]
    with pytest.raises(QueryError, match="only a SELECT query can be run"):
        tl.sql(f"COPY (SELECT 1) TO '{tmp_path / 'y.csv'}'", allow_external=True)


def test_read_only_selects_still_work(case, cli):
    tl = forensics.open(case)
    assert tl.sql("SELECT count(*) AS n FROM timeline")["n"].tolist() == [5009]
    assert tl.sql("WITH h AS (SELECT host FROM timeline) SELECT count(DISTINCT host) AS n FROM h")["n"].tolist() == [5]
    assert tl.sql("FROM timeline SELECT count(*) AS n WHERE event_id = ?", params=[7036])["n"].tolist() == [3434]
    assert tl.where(host="DC1").sql("SELECT count(*) AS n FROM timeline")["n"].tolist() == [1]
    assert tl.sql("SELECT * FROM query('SELECT 42 AS x')")["x"].tolist() == [42]
    _refused(tl, "SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/z.csv''')", "query failed")
    _refused(tl, "SELEC nope", "query failed")
    r = cli("sql", str(case), "SELECT host, count(*) AS n FROM timeline GROUP BY host ORDER BY n DESC LIMIT 1")
    assert r.returncode == 0 and r.stdout.split() == ["host", "n", "DC1.internal.greendale.edu", "4278"]
