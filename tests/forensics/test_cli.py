"""The command line: the three commands, their output and their documented exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from forensics.cli import main


@pytest.fixture
def logs(evidence, tmp_path):
    d = tmp_path / "Logs"
    d.mkdir()
    shutil.copy(evidence / "omerbenamram-evtx/samples/new-user-security.evtx", d)
    shutil.copy(evidence / "omerbenamram-evtx/samples/Security_short_selected.evtx", d)
    return d


def test_collect_info_verify(logs, tmp_path, capsys):
    case = tmp_path / "case"
    assert main(["collect", str(logs), "--case", str(case), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 artifact(s) from 1 evidence item(s): 11 records read, 11 rows written, 0 duplicates merged" in out
    assert main(["info", str(case)]) == 0
    out = capsys.readouterr().out
    assert "rows        11 distinct events from 11 records read (11 sightings)" in out
    assert "time range  2013-10-23T16:22:39.973500000Z .. 2016-06-29T15:25:08.822000000Z (UTC)" in out
    assert "hosts       temporal (7), IE8Win7 (4)" in out
    assert main(["info", str(case), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["artifacts"] == {"evtx:Security": 11}
    assert main(["verify", str(case)]) == 0
    assert "verify OK: 2 custody entries, 2 case files and 2 evidence files re-hashed" in capsys.readouterr().out


def test_verify_exit_code_on_tampering(logs, tmp_path, capsys):
    case = tmp_path / "case"
    main(["-q", "collect", str(logs), "--case", str(case), "--workers", "1"])
    part = next((case / "timeline").glob("*.parquet"))
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(case)]) == 7
    err = capsys.readouterr().err
    assert f"FAIL: timeline/{part.name}: SHA-256 differs from the custody log (file was altered)" in err
    assert "forensics: error: 1 problem(s) found" in err


@pytest.mark.parametrize("args,code,message", [
    (["collect", "/no/such/evidence", "--case", "{tmp}/c"], 3, "evidence not found: /no/such/evidence"),
    (["collect", "{tmp}/notes.txt", "--case", "{tmp}/c"], 4, "unknown format (no collector recognises it; tried: evtx, journal, target, winevent_export, packages, web, auditd, utmp, shell_history, syslog"),
    (["info", "{tmp}"], 6, "is not a case directory"),
    (["verify", "{tmp}/missing"], 6, "is not a case directory"),
])
def test_errors_have_clear_messages_and_documented_exit_codes(tmp_path, capsys, args, code, message):
    (tmp_path / "notes.txt").write_text("not a log")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == code
    assert message in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["collect"])
    assert exc.value.code == 2


def test_console_script_runs(logs, tmp_path):
    exe = shutil.which("forensics") or str((sys.prefix + "/bin/forensics"))
    r = subprocess.run([exe, "--quiet", "collect", str(logs), "--case", str(tmp_path / "c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""


def test_query_and_sql(logs, tmp_path, capsys):
    case = tmp_path / "case"
    main(["-q", "collect", str(logs), "--case", str(case), "--tz", "Asia/Kolkata", "--workers", "1"])
    capsys.readouterr()
    assert main(["query", str(case), "--around", "2016-06-29 20:55", "--before", "1min", "--after", "1min",
                 "--where", "event_id=4625", "-o", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["timestamp"], r["local_time"], r["event_id"], r["src_ip"]) for r in rows] == [
        ("2016-06-29T15:24:36.686000+00:00", "2016-06-29T20:54:36.686000+05:30", 4625, "23.94.153.202")]
    assert main(["query", str(case), "--search", "IEUser"]) == 0
    out = capsys.readouterr().out
    assert "4720 account IE8Win7\\IEUser created by WORKGROUP\\WIN-QALA5Q3KJ43$" in out
    assert main(["sql", str(case), "SELECT count(*) AS n FROM timeline WHERE event_id = 4625"]) == 0
    assert capsys.readouterr().out.split() == ["n", "1"]
    assert main(["query", str(case), "--from", "2016-06-29"]) == 9
    assert "--from and --to go together" in capsys.readouterr().err


def test_hunt_prints_the_story(evidence, tmp_path, capsys):
    d = tmp_path / "Logs"
    d.mkdir()
    shutil.copy(evidence / "python-evtx/tests/data/issue_43.evtx", d)
    case = tmp_path / "case"
    main(["-q", "collect", str(d), "--case", str(case), "--tz", "Asia/Kolkata", "--workers", "1"])
    capsys.readouterr()
    assert main(["hunt", str(case)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "T1490" in line]
    assert lines[0].startswith("2017-10-23T13:02:27.969467200+05:30  (2017-10-23T07:32:27.969467200+00:00 UTC)  "
                               "DESKTOP-DF4ULDE  T1490  recovery inhibited: ")
    assert lines[0].endswith("[issue_43.evtx record=1621 offset=0x14e160]")
    assert len(lines) == 3


def test_hunt_with_sigma_rules(sigma_dir, tmp_path, capsys):
    case = tmp_path / "case"
    sample = sigma_dir / "regression_data/rules/windows/process_access/proc_access_win_werfaultsecure_msmpeng_access"
    main(["-q", "collect", str(sample), "--case", str(case), "--workers", "1"])
    capsys.readouterr()
    assert main(["hunt", str(case), "--sigma", str(sigma_dir / "rules/windows/process_access")]) == 0
    out, err = capsys.readouterr()
    assert "[high] Suspicious Process Access of MsMpEng by WerFaultSecure - EDR-Freeze  (387df17d-3b04-448f-8669-9e7fd5e5fd8c)" in out
    assert "sigma: 23 rules loaded, 23 converted, 1 matched 1 row(s); 0 not convertible, 0 failed to evaluate" in err
