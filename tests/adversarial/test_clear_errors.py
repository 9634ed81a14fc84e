"""Bad arguments and awkward paths: one clear line and a documented exit code, never a traceback, and nothing
left behind by a command that fails before it starts."""

from __future__ import annotations

import json
import shutil

import forensics

SYSTEM = "plaso/test_data/evtx/System.evtx"  # 5009 records


def _one_error(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_a_case_where_no_folder_can_be_made(evidence, cli):
    r = cli("collect", str(evidence / SYSTEM), "--case", "/proc/x")
    assert r.returncode == 12
    assert _one_error(r) == "forensics: error: cannot write the case folder /proc/x: No such file or directory; " \
                            "nothing was committed"


def test_unit_mb_must_be_positive(evidence, tmp_path, cli):
    for bad in ("0", "-1", "nan", "x"):
        r = cli("collect", str(evidence / SYSTEM), "--case", str(tmp_path / "case"), "--unit-mb", bad)
        assert r.returncode == 2
        assert "argument --unit-mb:" in _one_error(r)
    assert not (tmp_path / "case").exists()
    # the smallest unit still works: every artifact its own unit
    r = cli("-q", "collect", str(evidence / SYSTEM), "--case", str(tmp_path / "case"), "--unit-mb", "1e-9")
    assert r.returncode == 0, r.stderr


def test_a_zone_that_is_a_path_leaves_no_case_behind(evidence, tmp_path, cli):
    for tz in ("../../etc/passwd", "/etc/localtime", "Not/AZone"):
        r = cli("collect", str(evidence / SYSTEM), "--case", str(tmp_path / "case"), "--tz", tz)
        assert r.returncode == 4
        assert _one_error(r) == f"forensics: error: unknown time zone {tz!r}"
        assert not (tmp_path / "case").exists()
    try:
        forensics.Case(tmp_path / "case", create=True, tz="../../etc/passwd")
    except forensics.CaseError as exc:
        assert str(exc) == "unknown time zone '../../etc/passwd' (use an IANA name such as Asia/Kolkata)"
    else:
        raise AssertionError("a bad zone must be refused")
    assert not (tmp_path / "case").exists()


def test_a_case_path_with_both_quotes(evidence, tmp_path, cli):
    """Paths were pasted into DuckDB SQL; they are handed over as values now."""
    ev = tmp_path / "ev"
    ev.mkdir()
    shutil.copy(evidence / SYSTEM, ev / "System.evtx")
    case = tmp_path / """it's the "x" case"""
    assert cli("-q", "collect", str(ev), "--case", str(case), "--workers", "1").returncode == 0
    checks = {
        ("info", str(case), "--json"): lambda out: json.loads(out)["rows"] == 5009,
        ("sql", str(case), "SELECT count(*) AS n FROM timeline"): lambda out: out.split() == ["n", "5009"],
        ("query", str(case), "--where", "event_id=7036", "-o", "json"): lambda out: len(out.splitlines()) == 3434,
        ("query", str(case), "--limit", "2"): lambda out: len(out.splitlines()) == 3,
        ("hunt", str(case), "-o", "json"): lambda out: out.strip() == "no findings" or out.startswith("{"),
        ("export", str(case), "--format", "parquet", "-o", str(tmp_path / "x.parquet")): lambda out: "5009 row(s)" in out,
        ("report", str(case), "-o", str(tmp_path / "r.html")): lambda out: "wrote" in out,
        ("verify", str(case)): lambda out: out.startswith("verify OK"),
    }
    for args, ok in checks.items():
        r = cli(*args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stderr)
        assert ok(r.stdout), (args, r.stdout[:300])
    tl = forensics.open(case)
    assert len(tl) == 5009 and len(tl.where(event_id=7036)) == 3434
