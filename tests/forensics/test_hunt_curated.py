"""Curated lateral-movement and credential-access detections on real attack recordings, and the contract that
every helper returns a frame on any single-file view of the shared corpora.

The attacks are OTRF Security-Datasets' labelled recordings (NXLog JSON exports read by the winevent-export
collector, one file per technique), Splunk attack_data and the Belkasoft insider-threat CTF host; the clean
Windows 10/11 hosts are the DFIR Artifact Museum's RathbunVM baselines.  All of them are collected once into one case."""

from __future__ import annotations

import pandas as pd
import pytest

import forensics
from forensics import hunt
from timeline.schema import iso_ns

OTRF = "OTRF-Security-Datasets/datasets"
MUSEUM = "AndrewRathbun-DFIRArtifactMuseum/Windows/EventLogs"
BASELINE_HOSTS = {"DESKTOP-GNCCVRK", "DESKTOP-N1AH9MT", "GoldPaperW11", "WIN-28GFHAGEV4P", "WIN-9L34AK87ND7"}


@pytest.fixture(scope="module")
def attack_case(evidence, sigma_dir, tmp_path_factory):
    from forensics import Case

    case = Case(tmp_path_factory.mktemp("attacks") / "case", create=True)
    case.collect([evidence / OTRF / "atomic/windows/lateral_movement/host",
                  evidence / OTRF / "atomic/windows/credential_access/host",
                  evidence / OTRF / "compound/LSASS_campaign_03",
                  evidence / "splunk-attack_data",
                  evidence / "EVTX-to-MITRE-Attack",
                  evidence / MUSEUM / "Win10/RathbunVM", evidence / MUSEUM / "Win11/RathbunVM",
                  evidence / MUSEUM / "Win10/BelkasoftCTF_InsiderThreat",
                  sigma_dir / "regression_data"], workers=1)
    return forensics.open(case.path)


def _view(tl, stem: str):
    """The view of the one exported file whose name starts with ``stem``."""
    paths = tl.sql("SELECT DISTINCT evidence_path FROM timeline WHERE evidence_path LIKE ?", [f"/{stem}%"])
    assert len(paths) == 1, paths
    return tl.where(evidence_path=paths["evidence_path"].iloc[0])


# file -> (method, technique, level, source, destination, user, count, first event, record_ref of the first event)
LATERAL = [
    ("covenant_copy_smb_CreateRequest", "admin share (file written)", "T1021.002", "high", "172.18.39.5",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 2, "2020-09-22T14:53:30.000000000Z", "line=62"),
    ("covenant_sharpsc_create_dcerpc_smb_svcctl", "SMB service control (svcctl pipe)", "T1021.002", "medium", "172.18.39.5",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 2, "2020-08-06T02:27:08.000000000Z", "line=569"),
    ("covenant_sharpsc_create_dcerpc_smb_svcctl", "service created remotely", "T1021.002", "high", "172.18.39.5",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 1, "2020-08-06T02:27:29.000000000Z", "line=1020"),
    ("schtask_create", "scheduled task created remotely", "T1053.005", "high", "172.18.39.5",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 1, "2020-12-19T07:00:22.264000000Z", "line=579"),
    ("schtask_create", "scheduled task created on a remote host", "T1053.005", "medium", "WORKSTATION5.theshire.local",
     "WORKSTATION6", "THESHIRE\\pgustavo", 4, "2020-12-19T07:00:22.176000000Z", "line=60"),
    ("cmd_psexec_lsa_secrets_dump", "SMB/PsExec (named pipe)", "T1569.002", "high", "fe80::90e:17af:263c:5209",
     "WORKSTATION5", "WORKSTATION5\\wardog", 1, "2020-10-19T03:30:46.625000000Z", "line=28"),
    ("empire_smbexec_dcerpc_smb_svcctl", "service running a command (smbexec/psexec-style)", "T1569.002", "high", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 1, "2020-09-20T02:57:47.000000000Z", "line=786"),
    ("empire_smbexec_dcerpc_smb_svcctl", "NTLM network logon without session key (pass-the-hash)", "T1550.002", "medium",
     "172.18.39.5", "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 1, "2020-09-20T02:57:46.000000000Z", "line=543"),
    ("empire_over_pth_patch_lsass", "new-credentials logon (pass-the-hash/overpass)", "T1550.002", "high", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\wardog", 1, "2020-09-21T22:14:24.000000000Z", "line=5409"),
    ("empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod", "WMI (WmiPrvSE child)", "T1047", "high", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 2, "2020-09-21T00:14:53.000000000Z", "line=369"),
    ("empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod", "WMI method invoked on a remote host", "T1047", "medium",
     "WORKSTATION5.theshire.local", "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 1,
     "2020-09-21T00:14:53.000000000Z", "line=558"),
    ("empire_wmic_add_user_backdoor", "WMI process created on a remote host (wmic /node)", "T1047", "medium",
     "WORKSTATION5.theshire.local", "WORKSTATION6", "THESHIRE\\pgustavo", 3, "2020-09-14T08:06:01.000000000Z", "line=165"),
    ("covenant_sharpwmi_create_dcerpc_wmi", "WMI (WmiPrvSE child)", "T1047", "medium", "?", "WORKSTATION6.theshire.local",
     "THESHIRE\\pgustavo", 2, "2020-08-06T03:56:41.000000000Z", "line=845"),
    ("covenant_wmi_remote_event_subscription", "WMI event subscription (Sysmon)", "T1546.003", "high", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 4, "2020-09-01T21:43:49.000000000Z", "line=126"),
    ("covenant_wmi_remote_event_subscription", "WMI event consumer (scrcons)", "T1546.003", "high", "?",
     "WORKSTATION6.theshire.local", "NT AUTHORITY\\SYSTEM", 1, "2020-09-01T21:44:10.000000000Z", "line=1533"),
    ("empire_psremoting_stager", "WinRM/PowerShell remoting (wsmprovhost)", "T1021.006", "medium", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 2, "2020-09-20T17:09:08.000000000Z", "line=517"),
    ("empire_psremoting_stager", "WinRM/PowerShell remoting (wsmprovhost child)", "T1021.006", "high", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 2, "2020-09-20T17:09:11.000000000Z", "line=844"),
    ("covenant_psremoting_command", "PowerShell remoting session (wsmprovhost)", "T1021.006", "medium", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 1, "2020-08-06T11:56:34.000000000Z", "line=3281"),
    ("covenant_dcom_registerxll", "DCOM (inbound RPC to excel.exe)", "T1021.003", "high", "172.18.39.5",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 1, "2020-09-18T15:00:28.000000000Z", "line=3898"),
    ("covenant_dcom_registerxll", "DCOM server started (MMC20/Excel)", "T1021.003", "medium", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\pgustavo", 2, "2020-09-18T15:00:21.000000000Z", "line=2925"),
    ("empire_dcom_shellwindows_stager", "DCOM (inbound RPC to explorer.exe)", "T1021.003", "high", "172.18.39.5",
     "WORKSTATION6.theshire.local", "THESHIRE\\sbeavers", 1, "2020-09-18T13:08:36.000000000Z", "line=30856"),
    ("empire_dcom_shellwindows_stager", "DCOM (ShellWindows/ShellBrowserWindow) or launcher", "T1021.003", "medium", "?",
     "WORKSTATION6.theshire.local", "THESHIRE\\sbeavers", 2, "2020-09-18T13:08:36.000000000Z", "line=30754"),
]


@pytest.mark.parametrize("stem, method, technique, level, source, destination, user, count, first, ref", LATERAL,
                         ids=[f"{r[0]}:{r[1]}" for r in LATERAL])
def test_lateral_movement_on_real_attacks(attack_case, stem, method, technique, level, source, destination, user, count,
                                          first, ref):
    view = _view(attack_case, stem)
    lm = view.lateral_movement()
    row = lm[(lm["method"] == method) & (lm["user"] == user)]
    assert len(row) == 1, lm[["method", "user"]]
    row = row.iloc[0]
    assert (row["technique"], row["level"], row["source"], row["destination"], row["count"]) == (
        technique, level, source, destination, count)
    assert (iso_ns(row["first"].value), row["record_ref"]) == (first, ref)
    assert row["evidence_path"].startswith(f"/{stem}") and row["evidence_id"]
    # the edge reaches the story, with its provenance
    st = view.story()
    told = st[st["finding"].str.startswith(f"{method} from {source} to {destination} as {user} ({count} event")]
    assert told[["technique", "record_ref"]].values.tolist() == [[technique, ref]]


# file -> (technique, level, finding, time, record_ref) of a credential-access finding
CREDENTIAL = [
    ("covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges", "T1003.006", "high",
     "DCSync: directory replication rights used by THESHIRE\\pgustavo", "2020-08-05T02:10:02.000000000Z", "line=120"),
    ("empire_dcsync_dcerpc_drsuapi_DsGetNCChanges", "T1003.006", "high",
     "DCSync: directory replication rights used by THESHIRE\\pgustavo", "2020-09-21T18:59:08.000000000Z", "line=5127"),
    ("cmd_lsass_memory_dumpert_syscalls", "T1003.001", "high",
     "LSASS handle with memory read (4656) by C:\\Users\\wardog\\Desktop\\Outflank-Dumpert.exe",
     "2020-10-18T10:56:14.368000000Z", "line=11"),
    ("cmd_lsass_memory_dumpert_syscalls", "T1003.001", "high",
     "LSASS dump file written: C:\\Windows\\Temp\\dumpert.dmp by C:\\Users\\wardog\\Desktop\\Outflank-Dumpert.exe",
     "2020-10-18T10:56:14.369000000Z", "line=52"),
    ("rdp_interactive_taskmanager_lsass_dump", "T1003.001", "high",
     "LSASS dump file written: C:\\Users\\pgustavo\\AppData\\Local\\Temp\\lsass.DMP by C:\\windows\\system32\\taskmgr.exe",
     "2020-09-22T04:38:27.000000000Z", "line=4928"),
    ("empire_mimikatz_sam_access", "T1003.001", "high",
     "LSASS handle duplicated/cloned (access 0x40) by C:\\windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe, "
     "1477 opens", "2020-09-22T04:11:49.000000000Z", "line=7513"),
    ("cmd_sam_copy_esentutl", "T1003.002", "high",
     "SAM hive dump command: esentutl.exe  /y /vss C:\\windows/system32/config/SAM /d C:\\ProgramData\\SAM",
     "2020-10-19T12:28:31.089000000Z", "line=199"),
    ("empire_shell_reg_dump_sam", "T1003.002", "high",
     "SAM hive dump command: \"C:\\windows\\system32\\reg.exe\" save HKLM\\sam sam", "2020-09-22T04:28:40.000000000Z",
     "line=251"),
    ("cmd_psexec_lsa_secrets_dump", "T1003.004", "high",
     "LSA secrets dump command: \"reg\" save HKLM\\security\\policy\\secrets C:\\Users\\wardog\\AppData\\Local\\Temp\\secrets",
     "2020-10-19T03:30:46.660000000Z", "line=29"),
    ("cmd_dumping_ntds_dit_file_ntdsutil", "T1003.003", "high",
     "NTDS.dit copy command: ntdsutil  \"ac i ntds\" \"ifm\" \"create full C:\\Windows\\Temp\\ntds_T1003\" q q",
     "2023-07-19T09:03:37.257000000Z", "line=179"),
    ("purplesharp_ad_playbook_I", "T1558.003", "medium", "RC4 service ticket (Kerberoasting) for sysmonsvc",
     "2020-10-22T04:29:53.000000000Z", "line=1125"),
    ("purplesharp_ad_playbook_I", "T1110.003", "high", "password spraying from WORKSTATION5: 7 accounts, 7 failures",
     "2020-10-22T04:29:53.000000000Z", "line=1077"),
]


@pytest.mark.parametrize("stem, technique, level, finding, time, ref", CREDENTIAL, ids=[f"{r[0]}:{r[5]}" for r in CREDENTIAL])
def test_credential_access_on_real_attacks(attack_case, stem, technique, level, finding, time, ref):
    view = _view(attack_case, stem)
    ca = view.credential_access()
    row = ca[ca["record_ref"] == ref]
    assert row[["technique", "level", "finding"]].values.tolist() == [[technique, level, finding]]
    assert iso_ns(row["timestamp"].iloc[0].value) == time
    st = view.story()  # the story writes each finding on one line, runs of blanks as one
    told = " ".join(finding.split())
    assert st[(st["record_ref"] == ref) & (st["finding"] == told)]["technique"].tolist() == [technique]


def test_credential_access_on_splunk_samples(attack_case):
    """AS-REP roasting (4768 without pre-authentication), DCSync by impacket, NTDS copies through shadow copies."""
    asrep = attack_case.where(evidence_path="datasets/attack_techniques/T1558.004/active-directory-as-rep-roasting-detection.log")
    ca = asrep.credential_access()
    assert ca[["technique", "level", "finding", "record_ref"]].values.tolist() == [
        ["T1558.004", "medium", "AS-REP roasting: TGT without pre-authentication for example.COM\\mahdi from 192.168.184.200",
         "line=1"]]
    assert asrep.story()["technique"].tolist() == ["T1558.004"]
    dcsync = attack_case.where(evidence_path="datasets/attack_techniques/T1003.006/impacket/windows-security-xml.log")
    ca = dcsync.credential_access()  # the domain controllers' own replication (machine accounts) is no finding
    assert ca[["technique", "finding", "record_ref"]].values.tolist() == [
        ["T1003.006", "DCSync: directory replication rights used by ATTACKRANGE\\Administrator", "line=11"]]
    copy = attack_case.where(evidence_path="datasets/attack_techniques/T1003.003/credential-dumping-via-copy/data.log")
    ca = copy.credential_access()
    assert set(ca["technique"]) == {"T1003.003"} and len(ca) == 5
    assert ca["finding"].iloc[-1] == "NTDS.dit copy command: esentutl.exe  /y /vss c:\\windows\\ntds\\ntds.dit /d c:\\ntds.dit"


def test_explicit_credentials_against_many_accounts(attack_case):
    """The insider-threat CTF host: one user tried five accounts' credentials (4648) against a server in half an
    hour; the console's own failures (address 0.0.0.0, ::1) are no password spray."""
    host = attack_case.where(host="DESKTOP-23PS6ES")
    ca = host.credential_access()
    assert ca[["technique", "level", "finding", "evidence_path", "record_ref"]].values.tolist() == [
        ["T1110.003", "high", "explicit credentials (4648) by DESKTOP-23PS6ES\\User: 5 accounts against 1 servers, 18 uses",
         "/Security.evtx", "record=904 offset=0xa7a70"]]
    assert iso_ns(ca["timestamp"].iloc[0].value) == "2020-08-01T21:40:55.514290400Z"
    st = host.story()
    assert st[st["technique"] == "T1110.003"]["record_ref"].tolist() == ["record=904 offset=0xa7a70"]


def test_clean_baselines_have_no_curated_finding(attack_case):
    """The clean Windows 10/11 hosts: no lateral movement or credential theft of level medium or above, and no RDP
    'logon' from the console (LocalSessionManager's LOCAL address)."""
    base = attack_case.where(host=sorted(BASELINE_HOSTS))
    lm = base.lateral_movement()
    assert set(lm["method"]) <= {"network logon (SMB/WinRM)"}
    assert base.credential_access().empty
    st = base.story()
    assert set(st["host"]) <= BASELINE_HOSTS
    assert not st["technique"].isin(["T1021.001", "T1021.002", "T1021.003", "T1021.006", "T1047", "T1550.002",
                                     "T1569.002", "T1546.003", "T1003.001", "T1003.002", "T1003.003", "T1003.006",
                                     "T1558.003", "T1558.004", "T1110.003"]).any()


def _helpers():
    """Every helper of forensics.hunt, called with its required arguments (story_rows takes a Timeline only)."""
    calls = dict(hunt.HELPERS)
    calls["first_seen"] = lambda data: hunt.first_seen(data, "lsass")
    return calls


@pytest.mark.timeout(1800)  # about 420 files, 18 helpers each: minutes on a shared machine
def test_every_helper_on_every_single_file_view(attack_case):
    """Every helper gives a DataFrame with its own columns (the columns it gives on an empty view) on each file of
    the shared corpora alone, read as a DataFrame; story() also through its DuckDB push-down on each view."""
    empty = attack_case.where(evidence_path="no such file")
    columns = {}
    for name, fn in _helpers().items():
        for data in (empty, empty.to_pandas()):
            out = fn(data)
            assert isinstance(out, pd.DataFrame) and out.empty, name
            columns.setdefault(name, list(out.columns))
            assert list(out.columns) == columns[name], name
    assert hunt.story_rows(empty).empty
    files = attack_case.sql("SELECT evidence_id, evidence_path, count(*) AS n FROM timeline GROUP BY ALL ORDER BY ALL")
    assert len(files) > 300 and files["n"].sum() > 300_000
    found = 0
    for eid, path in zip(files["evidence_id"], files["evidence_path"]):
        view = attack_case.where(evidence_id=eid, evidence_path=path)
        df = view.to_pandas()
        for name, fn in _helpers().items():
            out = fn(df)
            assert isinstance(out, pd.DataFrame), (path, name)
            assert list(out.columns) == columns[name], (path, name, list(out.columns))
        st = view.story()
        assert list(st.columns) == columns["story"], path
        assert st["technique"].notna().all(), path
        assert st["record_ref"].notna().all(), path  # every finding names its first record
        found += len(st)
    assert found > 0
