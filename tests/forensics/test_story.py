"""One hunt: the story merges curated findings and Sigma's, with levels and provenance, on the sample case
and on real EVTX written as Windows writes it; every helper is defined once and has its three forms."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import pydoc
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import forensics
from collectors.evtx_writer import Event, write_evtx
from forensics import Case, hunt, sample
from forensics.query import Timeline
from timeline.errors import QueryError
from timeline.schema import iso_ns

CONTRACT = ["timestamp", "local_time", "host", "level", "technique", "finding", "detector", "rule_id", "count",
            "first", "last", "evidence_id", "evidence_path", "record_ref"]
WIN = "C/Windows/System32/winevt/Logs/"
PIPE_REF = "record=3 offset=0x2128"  # the PSEXESVC pipe (record 2 is srvsvc: not PsExec)
# the SigmaHQ rules that describe the sample case's Windows steps (paths under ../shared/sigma/rules/windows)
SAMPLE_RULES = ["process_creation/proc_creation_win_susp_shadow_copies_deletion.yml",
                "process_creation/proc_creation_win_susp_lsass_dmp_cli_keywords.yml",
                "process_creation/proc_creation_win_rundll32_process_dump_via_comsvcs.yml",
                "builtin/system/service_control_manager/win_system_hack_smbexec.yml",
                "builtin/system/microsoft_windows_eventlog/win_system_eventlog_cleared.yml",
                "builtin/system/microsoft_windows_eventlog/win_system_susp_eventlog_cleared.yml",
                "builtin/security/win_security_audit_log_cleared.yml",
                "process_access/proc_access_win_lsass_dump_comsvcs_dll.yml"]


@pytest.fixture(scope="module")
def case(tmp_path_factory, mke2fs):
    base = tmp_path_factory.mktemp("story")
    sample.build(base / "evidence", seed=7, mke2fs=mke2fs)
    c = Case(base / "case", create=True, tz="Asia/Kolkata")
    c.collect([base / "evidence"], workers=1)
    return c


@pytest.fixture(scope="module")
def tl(case):
    return forensics.open(case.path)


def _rows(st):
    return [(str(r.local_time), r.host, r.level, r.technique, r.detector, r.count, r.evidence_path.split("/")[-1],
             r.record_ref) for r in st.itertuples()]


def test_the_story_of_the_sample_case(tl):
    st = tl.story()
    assert list(st.columns) == CONTRACT
    assert _rows(st) == [
        ("2022-11-23 07:00:03+05:30", "ehosp-app01", "medium", "T1110", "brute_force", 240, "auth.log", "line=5"),
        ("2022-11-23 07:00:03+05:30", "ehosp-app01", "high", "T1110.003", "credential_access", 1, "auth.log", "line=5"),
        ("2022-11-23 07:18:12+05:30", "ehosp-app01", "medium", "T1105", "web_attacks", 1, "access.log", "line=39"),
        ("2022-11-23 07:18:52+05:30", "ehosp-app01", "high", "T1505.003", "web_attacks", 5, "access.log", "line=41"),
        ("2022-11-23 07:31:05+05:30", "ehosp-app01", "medium", "T1548.003", "sudo_root_shell", 1, "auth.log", "line=400"),
        ("2022-11-23 07:52:12+05:30", "DC01.hosp.local", "low", "T1021.001", "lateral_movement", 2,
         "Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx", "record=1 offset=0x1200"),
        ("2022-11-23 08:02:40.003000+05:30", "DC01.hosp.local", "high", "T1003.001", "credential_access", 1,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=4 offset=0x2b38"),
        ("2022-11-23 08:02:40.120000+05:30", "DC01.hosp.local", "high", "T1003.001", "credential_access", 1,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=5 offset=0x3078"),
        ("2022-11-23 08:20:09+05:30", "FS01.hosp.local", "low", "T1543.003", "service_installs", 1, "System.evtx",
         "record=11 offset=0x2318"),
        ("2022-11-23 08:41:03+05:30", "DC01.hosp.local", "high", "T1070.001", "log_cleared", 1, "Security.evtx",
         "record=1 offset=0x1200"),
        ("2022-11-23 08:41:04+05:30", "DC01.hosp.local", "high", "T1070.001", "log_cleared", 1, "System.evtx",
         "record=1 offset=0x1200"),
        ("2022-11-23 08:55:30+05:30", "FS01.hosp.local", "high", "T1490", "shadow_copy_deletion", 1, "Security.evtx",
         "record=1668 offset=0xdd660"),
        ("2022-11-23 08:55:30.003000+05:30", "FS01.hosp.local", "high", "T1490", "shadow_copy_deletion", 1,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=5 offset=0x2ff8"),
        ("2022-11-23 09:00:02.400000+05:30", "FS01.hosp.local", "critical", "T1486", "encryption_burst", 640,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=7 offset=0x3938"),
        ("2022-11-23 09:03:10+05:30", "ehosp-db01", "critical", "T1486", "encryption_burst", 480, "ehosp-db01.raw",
         "/srv/records/cardiology/P421033_002.pdf.hlock inode=42"),
    ]
    assert st["finding"].iloc[0] == "brute force from 198.51.100.23: 240 failures, 8 accounts, then a success"
    assert st["finding"].iloc[5] == "RDP from 10.10.1.31 to DC01.hosp.local as HOSP\\svc-backup (2 events)"
    # count/first/last: the 240 failures of the brute force span 07:00:03 .. 07:09:12 IST
    bf = st.iloc[0]
    assert (iso_ns(bf["first"].value), iso_ns(bf["last"].value)) == ("2022-11-23T01:30:03.000000000Z",
                                                                    "2022-11-23T01:39:12.000000000Z")
    rdp = st.iloc[5]
    assert iso_ns(rdp["last"].value) == "2022-11-23T02:22:15.000000000Z"
    assert st["rule_id"].isna().all() and st["evidence_id"].notna().all()
    assert str(st["timestamp"].dtype) == "datetime64[ns, UTC]" and str(st["local_time"].dtype) == "datetime64[ns, Asia/Kolkata]"
    assert str(st["first"].dtype) == str(st["last"].dtype) == "datetime64[ns, UTC]" and st["count"].dtype == "int64"
    # the ground truth's ten steps are all found
    truth = json.loads((tl.case_dir.parent / "evidence" / "ground_truth.json").read_text())
    assert all(s["found"] for s in sample.check(st, truth))


def test_min_level_keeps_the_findings_of_that_level_or_above(tl):
    st = tl.story()
    assert st["level"].value_counts().to_dict() == {"high": 8, "medium": 3, "critical": 2, "low": 2}
    high = tl.story(min_level="high")
    assert high["level"].value_counts().to_dict() == {"high": 8, "critical": 2}
    assert tl.story(min_level="critical")["detector"].tolist() == ["encryption_burst"] * 2
    pd.testing.assert_frame_equal(tl.story(min_level="informational"), st)
    with pytest.raises(QueryError, match="unknown level 'severe'; levels are: informational, low, medium, high, critical"):
        tl.story(min_level="severe")
    with pytest.raises(QueryError, match="cannot read duration"):
        tl.story(burst="soon")


def test_levels_come_from_one_table():
    assert hunt.finding_level("T1070.001", "log_cleared") == "high"
    assert hunt.finding_level("T1021.001", "lateral_movement") == "low"
    assert hunt.finding_level("T1003.006", "credential_access") == "high"  # its parent's, T1003
    assert hunt.finding_level("T1234", "a_new_helper") == hunt.DEFAULT_LEVEL == "medium"
    assert hunt.finding_level(None, "x") == "medium"
    from forensics.sigma import LEVELS
    assert set(hunt.FINDING_LEVELS.values()) <= set(LEVELS)


def test_lateral_movement_on_a_window_with_logons_but_no_service_installs(tl):
    """It raised "Can only use .str accessor with string values" on such windows."""
    lm = tl.between("2022-11-23T02:15Z", "2022-11-23T02:40Z").lateral_movement()
    assert [(r.source, r.destination, r.method, r.user, r.count, r.technique) for r in lm.itertuples()] == [
        ("10.10.1.31", "DC01.hosp.local", "RDP", "HOSP\\svc-backup", 2, "T1021.001"),
        ("10.10.2.19", "FS01.hosp.local", "network logon (SMB/WinRM)", "HOSP\\dr.iyer", 2, "T1021"),
        ("10.10.2.14", "FS01.hosp.local", "network logon (SMB/WinRM)", "HOSP\\lab.kiran", 1, "T1021"),
        ("10.10.2.11", "FS01.hosp.local", "network logon (SMB/WinRM)", "HOSP\\dr.sen", 1, "T1021"),
        ("10.10.2.17", "FS01.hosp.local", "network logon (SMB/WinRM)", "HOSP\\dr.bose", 1, "T1021"),
    ]
    assert lm["record_ref"].tolist() == ["record=1 offset=0x1200", "record=1626 offset=0xd8138",
                                         "record=1627 offset=0xd8388", "record=1628 offset=0xd85e0",
                                         "record=1629 offset=0xd8830"]
    assert lm["evidence_path"].iloc[0] == "DC01/" + WIN + \
        "Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx"
    assert iso_ns(lm["first"].iloc[1].value) == "2022-11-23T02:32:42.977256000Z"
    # a DataFrame of the same window, and an empty one, through the accessor
    df = tl.between("2022-11-23T02:15Z", "2022-11-23T02:40Z").to_pandas()
    pd.testing.assert_frame_equal(df.fx.lateral_movement(), lm)
    empty = df.iloc[0:0].fx.lateral_movement()
    assert empty.empty and list(empty.columns) == list(lm.columns)


def test_brute_force_rows_carry_their_provenance(tl):
    bf = tl.brute_force()
    assert bf[["source", "host", "attempts", "evidence_path", "record_ref"]].to_dict("records") == [
        {"source": "198.51.100.23", "host": "ehosp-app01", "attempts": 240, "evidence_path": "/var/log/auth.log",
         "record_ref": "line=5"}]


def test_the_story_merges_sigma(tl, sigma_dir):
    pytest.importorskip("sigma")
    from forensics import sigma

    rules = [sigma_dir / "rules" / "windows" / r for r in SAMPLE_RULES]
    st = tl.story(sigma=rules)
    assert list(st.columns) == CONTRACT
    sig = st[st["detector"] == "sigma"]
    assert [(str(r.local_time), r.host, r.level, r.technique, r.finding, r.rule_id, r.count,
             r.evidence_path.split("/")[-1], r.record_ref) for r in sig.itertuples()] == [
        ("2022-11-23 08:02:40.003000+05:30", "DC01.hosp.local", "high", "T1036",
         "Process Memory Dump Via Comsvcs.DLL (1 event)", "646ea171-dded-4578-8a4d-65e9822892e3", 1,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=4 offset=0x2b38"),
        ("2022-11-23 08:02:40.003000+05:30", "DC01.hosp.local", "high", "T1003.001",
         "LSASS Dump Keyword In CommandLine (1 event)", "ffa6861c-4461-4f59-8a41-578c39f3f23e", 1,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=4 offset=0x2b38"),
        ("2022-11-23 08:02:40.120000+05:30", "DC01.hosp.local", "high", "T1003.001",
         "Lsass Memory Dump via Comsvcs DLL (1 event)", "a49fa4d5-11db-418c-8473-1e014a8dd462", 1,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=5 offset=0x3078"),
        ("2022-11-23 08:20:09+05:30", "FS01.hosp.local", "high", "T1021.002", "smbexec.py Service Installation (1 event)",
         "52a85084-6989-40c3-8f32-091e12e13f09", 1, "System.evtx", "record=11 offset=0x2318"),
        ("2022-11-23 08:41:03+05:30", "DC01.hosp.local", "high", "T1685.005", "Security Eventlog Cleared (1 event)",
         "d99b79d2-0a6f-4f46-ad8b-260b6e17f982", 1, "Security.evtx", "record=1 offset=0x1200"),
        ("2022-11-23 08:41:04+05:30", "DC01.hosp.local", "high", "T1685.005", "Important Windows Eventlog Cleared (1 event)",
         "100ef69e-3327-481c-8e5c-6d80d9507556", 1, "System.evtx", "record=1 offset=0x1200"),
        ("2022-11-23 08:55:30.003000+05:30", "FS01.hosp.local", "high", "T1070",
         "Shadow Copies Deletion Using Operating Systems Utilities (1 event)", "c947b146-0abc-4c87-9c64-b17e9d7274a2", 1,
         "Microsoft-Windows-Sysmon%4Operational.evtx", "record=5 offset=0x2ff8"),
    ]
    # one ordered table: the curated findings are all there, in time order with Sigma's
    curated = st[st["detector"] != "sigma"].reset_index(drop=True)
    pd.testing.assert_frame_equal(curated, tl.story())
    assert st["timestamp"].is_monotonic_increasing and len(st) == 22
    assert list(st["detector"].iloc[6:9]) == ["credential_access", "sigma", "sigma"]
    # a run made beforehand gives the same story; min_level applies to Sigma's rows too
    run = sigma.run(tl, rules)
    pd.testing.assert_frame_equal(tl.story(sigma=run), st)
    assert tl.story(sigma=run, min_level="critical")["detector"].tolist() == ["encryption_burst"] * 2
    # a wider burst cannot merge matches of different rules
    assert len(tl.story(sigma=run, burst="1d")) == 22
    # the accessor on the DataFrame of a window: the same Sigma rows
    df = tl.between("2022-11-23T02:30Z", "2022-11-23T03:00Z").to_pandas()
    fx = df.fx.story(sigma=rules)
    assert fx[fx["detector"] == "sigma"]["rule_id"].tolist() == sig["rule_id"].tolist()[:4]
    assert fx["detector"].tolist() == ["credential_access", "sigma", "sigma", "credential_access", "sigma",
                                       "service_installs", "sigma"]


def test_story_without_sigma_and_on_empty_views(tl):
    assert tl.story(sigma=False).equals(tl.story())  # nothing saved in this case
    empty = tl.between("2030-01-01", "2030-01-02").story()
    assert empty.empty and list(empty.columns) == CONTRACT
    assert str(empty["timestamp"].dtype) == "datetime64[ns, UTC]" and empty["count"].dtype == "int64"
    frame = tl.between("2030-01-01", "2030-01-02").to_pandas().fx.story()
    assert frame.empty and list(frame.columns) == CONTRACT


def _psexec_case(root: Path) -> Path:
    """A file server's Security and System logs as Windows writes them when PsExec runs from 10.0.0.5:
    a network logon, the IPC$ pipes (5145), the PSEXESVC service; and an ordinary pipe (srvsvc)."""
    t0 = dt.datetime(2023, 3, 14, 9, 26, 53, tzinfo=dt.timezone.utc)
    host = "FS02.corp.local"

    def share(seconds: float, pipe: str) -> Event:
        return Event(5145, t0 + dt.timedelta(seconds=seconds), "Microsoft-Windows-Security-Auditing", "Security", host,
                     event_data={"SubjectUserSid": "S-1-5-21-1-2-3-1104", "SubjectUserName": "helpdesk",
                                 "SubjectDomainName": "CORP", "SubjectLogonId": "0x5a3c1", "ObjectType": "File",
                                 "IpAddress": "10.0.0.5", "IpPort": "50122", "ShareName": "\\\\*\\IPC$",
                                 "ShareLocalPath": "", "RelativeTargetName": pipe, "AccessMask": "0x12019f",
                                 "AccessList": "%%1538 %%1541", "AccessReason": "-"})

    logs = root / "FS02" / "Logs"
    logs.mkdir(parents=True)
    write_evtx(logs / "Security.evtx", [
        Event(4624, t0, "Microsoft-Windows-Security-Auditing", "Security", host, event_data={
            "SubjectUserSid": "S-1-0-0", "SubjectUserName": "-", "SubjectDomainName": "-", "SubjectLogonId": "0x0",
            "TargetUserSid": "S-1-5-21-1-2-3-1104", "TargetUserName": "helpdesk", "TargetDomainName": "CORP",
            "TargetLogonId": "0x5a3c1", "LogonType": 3, "LogonProcessName": "NtLmSsp ",
            "AuthenticationPackageName": "NTLM", "WorkstationName": "WKS07", "IpAddress": "10.0.0.5",
            "IpPort": "50122"}),
        share(0.5, "srvsvc"),
        share(1.0, "PSEXESVC"),
        share(2.25, "PSEXESVC-WKS07-4242-stdin"),
        share(2.5, "PSEXESVC-WKS07-4242-stdout"),
        share(2.75, "PSEXESVC-WKS07-4242-stderr"),
    ])
    write_evtx(logs / "System.evtx", [
        Event(7045, t0 + dt.timedelta(seconds=1.5), "Service Control Manager", "System", host, event_data={
            "ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe", "ServiceType": "user mode service",
            "StartType": "demand start", "AccountName": "LocalSystem"}),
    ])
    case = Case(root / "case", create=True)
    case.collect([root / "FS02"], workers=1)
    return case.path


def test_psexec_named_pipes_reach_the_story(tmp_path):
    tl = forensics.open(_psexec_case(tmp_path))
    lm = tl.lateral_movement()
    assert [(r.source, r.destination, r.method, r.user, r.count, r.technique, r.record_ref) for r in lm.itertuples()] == [
        ("10.0.0.5", "FS02.corp.local", "network logon (SMB/WinRM)", "CORP\\helpdesk", 1, "T1021", "record=1 offset=0x1200"),
        ("10.0.0.5", "FS02.corp.local", "SMB/PsExec (named pipe)", "CORP\\helpdesk", 4, "T1569.002", PIPE_REF),
        ("?", "FS02.corp.local", "SMB/PsExec (service)", "?", 1, "T1569.002", "record=1 offset=0x1200"),
    ]
    assert iso_ns(lm["last"].iloc[1].value) == "2023-03-14T09:26:55.750000000Z"
    st = tl.story()  # through story_rows' pushed-down filter
    assert [(r.host, r.level, r.technique, r.detector, r.count, r.evidence_path, r.record_ref.split()[0])
            for r in st.itertuples()] == [
        ("FS02.corp.local", "high", "T1569.002", "lateral_movement", 4, "Logs/Security.evtx", "record=3"),
        ("FS02.corp.local", "low", "T1543.003", "service_installs", 1, "Logs/System.evtx", "record=1"),
        ("FS02.corp.local", "high", "T1569.002", "lateral_movement", 1, "Logs/System.evtx", "record=1"),
    ]
    assert st["finding"].iloc[0] == "SMB/PsExec (named pipe) from 10.0.0.5 to FS02.corp.local as CORP\\helpdesk (4 events)"
    # the same from the whole DataFrame
    pd.testing.assert_frame_equal(tl.to_pandas().fx.story(), st)


# --- helpers defined once -------------------------------------------------------------------------------

THE_17 = ["logons", "brute_force", "service_installs", "process_executions", "shadow_copy_deletion", "log_cleared",
          "accounts_created", "group_changes", "scheduled_tasks", "credential_access", "lateral_movement", "powershell",
          "first_seen", "encryption_burst", "story", "onset", "web_attacks"]


def test_each_helper_is_defined_once_with_its_three_forms(tl):
    from forensics.hunt import FxAccessor

    assert set(THE_17) <= set(hunt.HELPERS)
    df = tl.between("2022-11-23T02:15Z", "2022-11-23T02:16Z").to_pandas()
    for name, fn in hunt.HELPERS.items():
        assert getattr(hunt, name) is fn and name in hunt.__all__
        want = inspect.signature(fn)
        params = [p for p in list(want.parameters.values())[1:] if not p.name.startswith("_")]
        for owner, bound in ((Timeline, getattr(tl, name)), (FxAccessor, getattr(df.fx, name))):
            method = owner.__dict__[name]
            assert (method.__module__, method.__qualname__) == ("forensics.hunt", f"{owner.__name__}.{name}")
            assert method.__doc__ == fn.__doc__ and "Example::" in fn.__doc__
            assert f"    tl.{name}(" in fn.__doc__ and f"    df.fx.{name}(" in fn.__doc__
            assert inspect.signature(bound) == want.replace(parameters=params)
    assert str(inspect.signature(tl.story)) == \
        "(sigma: 'Any' = None, *, min_level: 'str | None' = None, burst: 'str' = '1h') -> 'pd.DataFrame'"
    assert str(inspect.signature(df.fx.brute_force)) == "(threshold: 'int' = 10, window: 'str' = '10min') -> 'pd.DataFrame'"
    page = pydoc.render_doc(tl.story, renderer=pydoc.plaintext)
    assert "story(sigma: 'Any' = None, *, min_level: 'str | None' = None, burst: 'str' = '1h')" in page
    assert 'tl.story(sigma="rules/windows", min_level="medium")' in page and "merges" not in page.split("Example")[1]
    page = pydoc.render_doc(df.fx.lateral_movement, renderer=pydoc.plaintext)
    assert "lateral_movement() -> 'pd.DataFrame' method of forensics.hunt.FxAccessor instance" in page
    assert "Who moved where, how" in page and "df.fx.lateral_movement()" in page
    # the generated forms call the one definition
    pd.testing.assert_frame_equal(df.fx.logons(success=True), hunt.logons(df, success=True))
    with pytest.raises(TypeError):
        tl.first_seen()  # its required argument, as the function's


def test_a_helper_registered_later_gets_its_forms(tl):
    @hunt.helper('"x"')
    def probe_helper(data, word: str, *, _private: int = 0) -> pd.DataFrame:
        """Rows whose message has ``word``."""
        df = hunt._frame(data)
        return df[df["message"].str.contains(word, na=False)]

    try:
        assert inspect.signature(Timeline.probe_helper).parameters.keys() == {"self", "word"}
        assert len(forensics.open(tl.case_dir).where(event_id=1102).probe_helper("cleared")) == 1
        assert "probe_helper(\"x\")" in probe_helper.__doc__
    finally:
        del hunt.HELPERS["probe_helper"]
        delattr(Timeline, "probe_helper")
        delattr(hunt.FxAccessor, "probe_helper")


def test_timeline_methods_without_importing_hunt_first(case):
    """``import forensics`` does not load forensics.hunt (collection workers); the first use of a helper method does."""
    code = ("import inspect, sys, forensics\n"
            f"tl = forensics.open({str(case.path)!r})\n"
            "assert 'forensics.hunt' not in sys.modules\n"
            "print(inspect.signature(tl.lateral_movement))\n"
            "print(len(tl.log_cleared()), 'story' in dir(tl))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out == "() -> 'pd.DataFrame'\n2 True\n"
