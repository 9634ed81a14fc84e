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
    (["collect", "{tmp}/notes.txt", "--case", "{tmp}/c"], 4, "unknown format (no collector recognises it; tried: evtx, journal, target, winevent_export, mft, usnjrnl, prefetch, amcache, packages, web, auditd, utmp, shell_history, syslog"),
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
    # --from alone: from that time on (one-sided), --to alone: before it
    assert main(["query", str(case), "--from", "2016-06-29", "-o", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 7 and rows[0]["timestamp"] == "2016-06-29T15:24:34.346000+00:00"
    assert main(["query", str(case), "--to", "2016-06-29", "-o", "json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_hunt_prints_the_story(evidence, tmp_path, capsys):
    d = tmp_path / "Logs"
    d.mkdir()
    shutil.copy(evidence / "python-evtx/tests/data/issue_43.evtx", d)
    case = tmp_path / "case"
    main(["-q", "collect", str(d), "--case", str(case), "--tz", "Asia/Kolkata", "--workers", "1"])
    capsys.readouterr()
    assert main(["hunt", str(case)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:6] == [
        "== summary ==",
        "findings        3 (3 curated, 0 Sigma), standing for 3 event(s)",
        "by level        critical 0, high 3, medium 0, low 0, informational 0",
        "by host         DESKTOP-DF4ULDE: 3 (high 3)",
        "top detections  [high] shadow_copy_deletion T1490: 3 finding(s), 3 event(s) on 1 host(s)",
        "first           2017-10-23T13:02:27.969467200+05:30  DESKTOP-DF4ULDE  [high] recovery inhibited: "
        "\"C:\\Windows\\SysWOW64\\cmd.exe\" /c vssadmin delete shadows /all /quiet & wmic shadowcopy delete & bcdedit "
        "/set {default} bootstatuspolicy ignoreallfailures & bcde"]  # the command, cut at 160 characters
    assert out[6].startswith("last            2017-10-23T13:02:32.870698900+05:30  DESKTOP-DF4ULDE  [high] ")
    assert out[7] == "== story: 3 finding(s); local times in Asia/Kolkata =="
    lines = [line for line in out if "T1490" in line]
    assert lines[1].startswith("2017-10-23T13:02:27.969467200+05:30  (2017-10-23T07:32:27.969467200+00:00 UTC)  "
                               "DESKTOP-DF4ULDE  [high] T1490  recovery inhibited: ")
    assert lines[1].endswith("(shadow_copy_deletion)  [issue_43.evtx record=1621 offset=0x14e160]")
    assert len(lines) == 4 and len(out) == 11


def test_hunt_with_sigma_rules(sigma_dir, tmp_path, capsys):
    case = tmp_path / "case"
    sample = sigma_dir / "regression_data/rules/windows/process_access/proc_access_win_werfaultsecure_msmpeng_access"
    main(["-q", "collect", str(sample), "--case", str(case), "--workers", "1"])
    capsys.readouterr()
    assert main(["hunt", str(case), "--sigma", str(sigma_dir / "rules/windows/process_access")]) == 0
    out, err = capsys.readouterr()
    assert "swachchhanda  [high] T1685  Suspicious Process Access of MsMpEng by WerFaultSecure - EDR-Freeze (1 event)  " \
           "(sigma 387df17d-3b04-448f-8669-9e7fd5e5fd8c)  [387df17d-3b04-448f-8669-9e7fd5e5fd8c.evtx record=1 offset=0x1200]" in out
    assert "findings        1 (0 curated, 1 Sigma), standing for 1 event(s)" in out
    assert "sigma: 23 rules loaded, 23 converted, 1 matched 1 row(s); 0 not convertible, 0 failed to evaluate" in err


@pytest.fixture(scope="module")
def mitre_case(tmp_path_factory):
    """The EVTX-to-MITRE-Attack recordings of the shared corpus (PowerShell download, SPN discovery, a PowerShell
    pipe shell, Defender), as a case."""
    from tests.conftest import EVIDENCE, _need

    evidence = _need(EVIDENCE / "EVTX-to-MITRE-Attack")
    case = tmp_path_factory.mktemp("mitre") / "case"
    assert main(["-q", "collect", str(evidence), "--case", str(case), "--workers", "1"]) == 0
    return case


def test_hunt_with_all_windows_rules_as_json_and_csv(mitre_case, sigma_dir, capsys):
    pytest.importorskip("sigma")
    capsys.readouterr()
    assert main(["hunt", str(mitre_case), "--sigma", str(sigma_dir / "rules/windows"), "-o", "json"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["detector"], r["level"], r["technique"], r["rule_id"], r["count"], r["record_ref"]) for r in rows] == [
        ("powershell", "medium", "T1059.001", None, 1, "record=2 offset=0x1aa8"),
        ("powershell", "medium", "T1059.001", None, 1, "record=1 offset=0x1200"),
        ("sigma", "high", "T1059.001", "ae7fbf8e-f3cb-49fd-8db4-5f3bed522c71", 1, "record=1 offset=0x1200")]
    assert list(rows[2]) == ["timestamp", "local_time", "host", "level", "technique", "finding", "detector", "rule_id",
                             "count", "first", "last", "evidence_id", "evidence_path", "record_ref"]
    assert rows[2]["finding"] == "Suspicious PowerShell Invocations - Specific (1 event)"
    assert rows[2]["timestamp"] == rows[2]["first"] == rows[2]["last"] == "2022-01-24T20:11:11.361955600+00:00"
    assert rows[2]["host"] == "fs03vuln.offsec.lan"
    assert rows[2]["evidence_path"] == "TA0002-Execution/T1059.001-PowerShell/ID4103-4104-Payload download via PowerShell.evtx"
    # the summary goes to stderr, so that stdout stays JSON lines
    assert err.splitlines()[:5] == [
        "== summary ==", "findings        3 (2 curated, 1 Sigma), standing for 3 event(s)",
        "by level        critical 0, high 1, medium 2, low 0, informational 0",
        "by host         fs03vuln.offsec.lan: 3 (high 1, medium 2)",
        "top detections  [high] Suspicious PowerShell Invocations - Specific ae7fbf8e-f3cb-49fd-8db4-5f3bed522c71: "
        "1 finding(s), 1 event(s) on 1 host(s)"]
    assert "sigma: 2407 rules loaded, 2407 converted, 1 matched 1 row(s); 0 not convertible, 0 failed to evaluate" in err
    # CSV with a level filter and one-sided window: only Sigma's high finding is left
    assert main(["-q", "hunt", str(mitre_case), "--sigma", str(sigma_dir / "rules/windows/powershell"), "-o", "csv",
                 "--min-level", "high", "--from", "2022-01-24T20:11Z"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "timestamp,local_time,host,level,technique,finding,detector,rule_id,count,first,last," \
                       "evidence_id,evidence_path,record_ref"
    assert len(lines) == 2 and lines[1].startswith(
        "2022-01-24T20:11:11.361955600+00:00,2022-01-24T20:11:11.361955600+00:00,fs03vuln.offsec.lan,high,T1059.001,"
        "Suspicious PowerShell Invocations - Specific (1 event),sigma,ae7fbf8e-f3cb-49fd-8db4-5f3bed522c71,1,")
    assert "== summary ==" not in err  # -q: the summary is left out of machine output
    # --to before the attack: nothing, with or without Sigma, in each format
    assert main(["hunt", str(mitre_case), "--to", "2022-01-24T20:11Z", "--sigma", str(sigma_dir / "rules/windows/powershell"),
                 "-o", "json"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "findings        0 (0 curated, 0 Sigma), standing for 0 event(s)" in err
    assert main(["hunt", str(mitre_case), "--host", "jump01.offsec.lan"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["== story: 0 finding(s); local times in UTC ==", "no findings"]


def test_hunt_min_level_and_windows_without_sigma(mitre_case, capsys):
    capsys.readouterr()
    assert main(["hunt", str(mitre_case), "--min-level", "medium", "--from", "2022-01-01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "findings        2 (2 curated, 0 Sigma), standing for 2 event(s)"
    assert sum("[medium] T1059.001  PowerShell download: " in line for line in out) == 2
    assert main(["hunt", str(mitre_case), "--min-level", "high"]) == 0
    assert "findings        0 (0 curated, 0 Sigma)" in capsys.readouterr().out
    assert main(["hunt", str(mitre_case), "--min-level", "severe"]) == 9
    assert "unknown level 'severe'; levels are: informational, low, medium, high, critical" in capsys.readouterr().err
    assert main(["hunt", str(mitre_case), "--to", "2021-01-01", "-o", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "timestamp,local_time,host,level,technique,finding,detector,rule_id,count,first,last,evidence_id,evidence_path,"
        "record_ref"]


def test_hunt_sigma_rules_from_the_environment_and_usage_errors(mitre_case, sigma_dir, monkeypatch, capsys):
    pytest.importorskip("sigma")
    capsys.readouterr()
    monkeypatch.delenv("FORENSICS_SIGMA_RULES", raising=False)
    assert main(["hunt", str(mitre_case), "--sigma"]) == 9
    assert "--sigma without rules: give files or folders (--sigma RULES...) or name a folder in $FORENSICS_SIGMA_RULES" \
        in capsys.readouterr().err
    monkeypatch.setenv("FORENSICS_SIGMA_RULES", str(sigma_dir / "rules/windows/powershell/powershell_script"))
    assert main(["hunt", str(mitre_case), "--sigma", "-o", "json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["detector"] for line in out.splitlines()] == ["powershell", "powershell", "sigma"]
    assert "sigma: " in err and " rules loaded" in err
    assert main(["hunt", str(mitre_case), "--sigma", "/no/such/rules"]) == 9
    assert "Sigma rules not found: /no/such/rules" in capsys.readouterr().err
    assert main(["hunt", str(mitre_case), "--save"]) == 9
    assert "--save goes with --sigma" in capsys.readouterr().err
    from forensics.cli import build_parser

    helps = {a.dest: a.help for a in build_parser()._subparsers._group_actions[0].choices["hunt"]._actions}
    assert helps["tz"].startswith("zone of local_time and of naive --from/--to times")
    assert all(helps[k] for k in ("start", "end", "host", "min_level", "output", "sigma", "burst", "save"))


def test_saved_detections_reach_the_story_and_the_exports_tags(evidence, sigma_dir, tmp_path, capsys):
    """``hunt --sigma RULE --save``: the matched rows carry ``sigma:<id>`` and the rule's ATT&CK tags in the
    Timesketch export's ``tag`` and the CSV's ``tags``; later hunts (and the story the report reads) show them."""
    pytest.importorskip("sigma")
    d = tmp_path / "Logs"
    d.mkdir()
    shutil.copy(evidence / "python-evtx/tests/data/issue_43.evtx", d)
    case = tmp_path / "case"
    main(["-q", "collect", str(d), "--case", str(case), "--tz", "Asia/Kolkata", "--workers", "1"])
    rule = sigma_dir / "rules/windows/process_creation/proc_creation_win_susp_shadow_copies_deletion.yml"
    rid = "c947b146-0abc-4c87-9c64-b17e9d7274a2"
    tags = ["attack.impact", "attack.stealth", "attack.t1070", "attack.t1490", f"sigma:{rid}"]  # each once, sorted
    capsys.readouterr()
    assert main(["hunt", str(case), "--sigma", str(rule), "--save", "-o", "json"]) == 0
    fresh = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["hunt", str(case), "-o", "json"]) == 0  # no --sigma: the detections saved in the case
    out, err = capsys.readouterr()
    saved = [json.loads(line) for line in out.splitlines()]
    assert saved == fresh and [r["detector"] for r in saved] == ["shadow_copy_deletion"] * 2 + ["sigma"] + \
        ["shadow_copy_deletion"]
    assert saved[2]["rule_id"] == rid and saved[2]["count"] == 2
    assert "findings        4 (3 curated, 1 Sigma, from the detections saved in the case)" in err
    assert main(["-q", "export", str(case), "--format", "timesketch-jsonl", "-o", str(tmp_path / "ts.jsonl")]) == 0
    ts = [json.loads(line) for line in (tmp_path / "ts.jsonl").read_text().splitlines()]
    tagged = [(r["record_ref"].split()[0], r["tag"]) for r in ts if r["tag"]]
    assert tagged == [("record=1628", tags), ("record=1632", tags)]
    assert main(["-q", "export", str(case), "--format", "csv", "-o", str(tmp_path / "rows.csv")]) == 0
    import csv

    rows = list(csv.DictReader((tmp_path / "rows.csv").open(encoding="utf-8")))
    assert [(r["record_ref"].split()[0], json.loads(r["tags"])) for r in rows if r["tags"] != "[]"] == \
        [("record=1628", tags), ("record=1632", tags)]
    assert len(rows) == len(ts) and sum(r["tags"] == "[]" for r in rows) == len(rows) - 2
    assert main(["verify", str(case), "--no-evidence"]) == 0


def test_query_where_syntax(corpus_case, tmp_path, capsys):
    """--where takes the syntax of Timeline.where: any of, ranges, ILIKE, not; bad input is a clear error."""
    import csv
    import io

    case, _ = corpus_case

    def rows(*where):
        args = ["query", str(case.path), "-o", "csv"] + [a for w in where for a in ("--where", w)]
        assert main(args) == 0
        return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))

    ids = rows("event_id=4624,4625")
    assert len(ids) == 831 and {r["event_id"] for r in ids} == {"4624", "4625"}  # whole numbers, not 4624.0
    assert len(rows("event_id=4624..4625")) == 831
    both = rows("event_id=4624,4625", "logon_type=3..10")
    assert len(both) == 667 and {r["logon_type"] for r in both} == {"3", "5", "7", "10"}
    lsass = rows("path~%\\LSASS.EXE", "event_id=10")
    assert len(lsass) == 60 and all(r["path"].lower().endswith("\\lsass.exe") for r in lsass)
    assert len(rows("event_id!=4624,4625", "event_id=4600..4700")) == 1809 - 831 == 978
    for bad, why in {"event_id=abc": "event_id holds whole numbers; 'abc' is not one",
                     "nonsense": "cannot read condition 'nonsense'", "colour=red": "unknown column 'colour'"}.items():
        assert main(["query", str(case.path), "--where", bad]) == 9
        err = capsys.readouterr().err
        assert f"forensics: error: {why}" in err and "Traceback" not in err and "Binder" not in err
