"""Defenses impaired, AS-REP roasting prepared, Zerologon, AD CS certificates for another account and tasks created
from the command line, on the real captures that record them (OTRF Security-Datasets, splunk attack_data, the DFIR
Artifact Museum's APTSimulator run): exact rows, times to the 100 ns, provenance, and the story's lines."""

from __future__ import annotations

import pytest

import forensics
from forensics import Case, hunt
from timeline.schema import iso_ns

OTRF = "OTRF-Security-Datasets/datasets/atomic/windows/"
SPLUNK = "splunk-attack_data/datasets/attack_techniques/"
FILES = {
    "auditpol": OTRF + "defense_evasion/host/auditpol_system_user_auditpolicy_modification.zip",
    "minint": OTRF + "defense_evasion/host/cmd_stop_event_logging_controlset_minint_key.zip",
    "wevtutil": OTRF + "defense_evasion/host/cmd_wevtutil_modify_security_eventlog_path.zip",
    "firewall": SPLUNK + "T1562.004/firewall_win_event/added_rule/MPSSVC_Rule-Level_Policy_Change-4946.log.txt",
    "asrep": SPLUNK + "T1558.004/powershell/windows-security-xml.log",
    "zerologon": OTRF + "lateral_movement/host/mimikatz_CVE-2020-1472_Unauthenticated_NetrServerAuthenticate2.zip",
    "certipy": SPLUNK + "T1649/certipy_abuse/certipy_esc1_abuse.log",
    "museum": "AndrewRathbun-DFIRArtifactMuseum/Windows/EventLogs/Win10/APTSimulatorVM/APTSimulatorVM_EventLogs.7z",
}


@pytest.fixture(scope="module")
def views(evidence, tmp_path_factory):
    case = Case(tmp_path_factory.mktemp("impair") / "case", create=True)
    rep = case.collect([evidence / f for f in FILES.values()], workers=1)
    tl = forensics.open(case.path)
    ids = {e["path"]: e["evidence_id"] for e in rep.evidence}
    return {k: tl.where(evidence_id=ids[str(evidence / f)]) for k, f in FILES.items()}


def _rows(frame, what="finding"):
    return [(iso_ns(t.value), r.technique, r.level, getattr(r, what), r.evidence_path, r.record_ref)
            for t, r in zip(frame["timestamp" if "timestamp" in frame else "first"], frame.itertuples())]


def test_audit_policy_disabled_by_command_and_4719(views):
    d = views["auditpol"].defense_impairment()
    assert len(d) == 13 and set(d["technique"]) == {"T1562.002"} and set(d["level"]) == {"high"}
    assert _rows(d)[0] == ("2022-08-18T06:57:16.613000000Z", "T1562.002", "high",
                           'audit policy disabled: auditpol.exe /set /user:pedro /category:"DS Access" /success:disable',
                           "/auditpol_system_user_auditpolicy_modification.json", "line=117")
    # the 63 4719 events of the run: one finding per host, account and minute
    removed = d[d["event_id"] == 4719]
    assert removed["finding"].tolist()[0] == "audit policy removed: 63 subcategories by PEDRO-COMPUTER\\pedro-admin"
    assert len(removed) == 1
    # the 6 commands, each seen by Sysmon 1 and 4688
    assert sorted(d.loc[d["event_id"] != 4719, "command_line"].str.slice(13).unique()) == [
        '/clear /y', '/remove /user:pedro', '/set /category:"Account Logon" /failure:disable',
        '/set /category:"Account Logon" /success:disable', '/set /user:pedro /category:"DS Access" /failure:disable',
        '/set /user:pedro /category:"DS Access" /success:disable']


def test_minint_key_and_a_moved_security_log(views):
    assert sorted(_rows(views["minint"].defense_impairment())) == [
        ("2022-08-03T07:22:44.015000000Z", "T1562.002", "high",
         "event logging key set: HKLM\\System\\CurrentControlSet\\Control\\MiniNt by C:\\Windows\\system32\\reg.exe",
         "/cmd_stop_event_logging_controlset_minint_key.json", "line=4540"),
        ("2022-08-03T07:22:44.015000000Z", "T1562.002", "high",
         "event logging key set: HKLM\\System\\CurrentControlSet\\Control\\MiniNt\\(Default) by C:\\Windows\\system32\\reg.exe",
         "/cmd_stop_event_logging_controlset_minint_key.json", "line=4541")]
    w = views["wevtutil"].defense_impairment()
    assert _rows(w)[:2] == [
        ("2022-07-05T02:02:04.168000000Z", "T1562.002", "high",
         'event log disabled or moved: wevtutil  set-log Security /logfilename:"C:\\Windows\\System32\\winevt\\Not-Important-Log.evtx"',
         "/cmd_wevtutil_modify_security_eventlog_path.json", "line=19607"),
        ("2022-07-05T02:02:04.203000000Z", "T1562.002", "high",
         "event logging key set: HKLM\\System\\CurrentControlSet\\Services\\EventLog\\Security\\File by C:\\Windows\\System32\\svchost.exe",
         "/cmd_wevtutil_modify_security_eventlog_path.json", "line=19629")]
    assert len(w) == 6


def test_firewall_rules_added(views):
    assert _rows(views["firewall"].defense_impairment()) == [
        (t, "T1562.004", "low", "firewall rule added: Allow Dummy Rule", "MPSSVC_Rule-Level_Policy_Change-4946.log.txt",
         f"line={n}") for t, n in (("2025-01-15T15:34:14.488185300Z", 3), ("2025-01-15T15:35:58.460470800Z", 2),
                                   ("2025-01-15T15:37:10.140309700Z", 1))]


def test_pre_authentication_disabled_prepares_as_rep_roasting(views):
    ca = views["asrep"].credential_access()
    assert _rows(ca[ca["technique"] == "T1558.004"]) == [
        ("2025-06-25T19:53:17.587599000Z", "T1558.004", "high",
         "Kerberos pre-authentication disabled for LYNETTE_BLANCHARD by ATTACKRANGE\\Administrator", "windows-security-xml.log", "line=8"),
        ("2025-06-25T19:53:41.984247200Z", "T1558.004", "high",
         "Kerberos pre-authentication disabled for EBONY_SHARPE by ATTACKRANGE\\Administrator", "windows-security-xml.log", "line=5"),
        ("2025-06-26T15:19:49.922128900Z", "T1558.004", "high",
         "Kerberos pre-authentication disabled for DIONNE_MCKINNEY by ATTACKRANGE\\Administrator", "windows-security-xml.log", "line=3")]


def test_zerologon_resets_the_dc_machine_password(views):
    lm = views["zerologon"].lateral_movement()
    z = lm[lm["technique"] == "T1210"]
    assert _rows(z, "method") == [("2020-09-16T23:40:05.000000000Z", "T1210", "critical",
                                   "Zerologon (machine password reset by ANONYMOUS LOGON)",
                                   "/mimikatz_CVE-2020-1472_Unauthenticated_NetrServerAuthenticate2_2020-09-16233923.json",
                                   "line=291")]
    assert (z["source"].iloc[0], z["destination"].iloc[0], z["user"].iloc[0]) == ("?", "MORDORDC.theshire.local", "MORDORDC$")
    ca = views["zerologon"].credential_access()  # mimikatz's lsadump::zerologon is the exploit, not an LSASS dump
    assert set(ca["technique"]) == {"T1210"} and ca["finding"].str.startswith("Zerologon exploit (Netlogon) command: ").all()


def test_a_certificate_issued_for_another_account(views):
    ca = views["certipy"].credential_access()
    assert [(r.technique, r.level, r.finding, r.record_ref) for r in ca.itertuples()] == [
        ("T1649", "high", "certificate issued to attack_range\\attacker for victim_admin (VulnerableTemplate_ESC1)", "line=10")] + [
        ("T1649", "high", "certificate issued to attack_range\\attacker for victim_machine.attack_range.local "
                          "(VulnerableTemplate_ESC1)", f"line={n}") for n in (6, 2)]


def test_tasks_created_by_schtasks_and_at_where_only_process_creation_is_logged(views):
    st = views["museum"].scheduled_tasks()
    assert [(iso_ns(t.value), r.host, r.task, r.action, r.record_ref) for t, r in zip(st["timestamp"], st.itertuples())] == [
        ("2022-03-10T20:51:50.237512600Z", "DESKTOP-TMKU40H", None, "created (at)", "record=505 offset=0x875b0"),
        ("2022-03-10T20:59:03.516350700Z", "DESKTOP-TMKU40H", "GameOver", "created (schtasks)", "record=529 offset=0x8df28")]
    story = views["museum"].story()
    told = story[story["detector"] == "scheduled_tasks"]
    assert told[["technique", "level"]].values.tolist() == [["T1053.002", "medium"], ["T1053.005", "medium"]]
    assert told["finding"].iloc[0] == 'scheduled task created (at): ? at 13:00 "C:\\TMP\\mim.exe sekurlsa::LogonPasswords > C:\\TMP\\o.txt"'


@pytest.mark.parametrize("name, technique, count", [("auditpol", "T1562.002", 13), ("minint", "T1562.002", 2),
                                                     ("wevtutil", "T1562.002", 6), ("firewall", "T1562.004", 3),
                                                     ("asrep", "T1558.004", 3), ("zerologon", "T1210", 5),
                                                     ("certipy", "T1649", 3), ("museum", "T1053.002", 1)])
def test_each_reaches_the_story_through_the_pushdown_and_from_a_dataframe(views, name, technique, count):
    st = views[name].story()
    pd_st = hunt.story(views[name].to_pandas())
    assert (st["technique"] == technique).sum() == (pd_st["technique"] == technique).sum() == count
    assert st["record_ref"].notna().all() and st["evidence_path"].notna().all()
