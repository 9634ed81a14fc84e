"""The analyst's questions over the shared EVTX corpus: exact findings, times to the 100 ns."""

from __future__ import annotations

import pandas as pd
import pytest

import forensics
from forensics import hunt
from timeline.schema import iso_ns


@pytest.fixture(scope="module")
def tl(corpus_case):
    case, _ = corpus_case
    return forensics.open(case.path)


def _times(df):
    return [iso_ns(t.value) for t in df["timestamp"]]


def test_logons(tl):
    lg = tl.logons()
    counts = lg.groupby(["event_id", "outcome", "method"]).size().to_dict()
    assert counts == {
        (1149, "success", "RDP"): 6,
        (4624, "success", "interactive"): 102, (4624, "success", "network"): 63, (4624, "success", "service"): 578,
        (4624, "success", "type 0"): 57, (4624, "success", "unlock"): 15,
        (4625, "failure", "interactive"): 5, (4625, "failure", "network"): 10,
        (4625, "failure", "remote interactive (RDP)"): 1,
        (4648, "success", "explicit credentials"): 150,
        (4776, "failure", "NTLM"): 1, (4776, "success", "NTLM"): 21,
    }
    rdp = lg[lg["method"] == "RDP"]
    assert list(zip(_times(rdp), rdp["user"], rdp["src_ip"])) == [
        ("2018-08-07T18:37:12.964091100Z", "MAGNETIC-DESKTO\\mpowers", "174.127.93.2"),
        ("2018-08-07T18:41:49.688903500Z", "MAGNETIC-DESKTO\\mpowers", "174.127.93.2"),
        ("2018-08-07T19:02:42.044991600Z", "MAGNETIC-DESKTO\\mpowers", "174.127.93.2"),
        ("2018-08-07T19:12:04.603950900Z", "administrator", "31.14.75.59"),
        ("2018-08-07T19:14:52.888054100Z", "A", "103.11.244.223"),
        ("2018-08-07T19:19:42.934877900Z", "DESKTOP-1N4R894\\Administrator", "31.14.75.59"),
    ]
    failed = tl.logons(success=False)
    assert len(failed) == 17 and len(tl.logons(success=True)) == 992
    rdp_fail = failed[failed["logon_type"] == 10].iloc[0]
    assert (iso_ns(rdp_fail["timestamp"].value), rdp_fail["user"], rdp_fail["src_ip"], rdp_fail["status"]) == (
        "2016-06-29T15:24:36.686000000Z", "TEMPORAL\\Administrator", "23.94.153.202", "0xc000006d")
    assert rdp_fail["evidence_path"] == "omerbenamram-evtx/samples/Security_short_selected.evtx"


def test_brute_force(tl):
    bf = tl.brute_force(threshold=3, window="1h")
    assert bf[["source", "host", "attempts", "max_in_window", "users", "success_after"]].to_dict("records") == [
        {"source": "10.20.0.118", "host": "WIN-L0ZZQ76PMUF", "attempts": 4, "max_in_window": 4, "users": 1,
         "success_after": False},
        {"source": "WIN-L0ZZQ76PMUF", "host": "WIN-L0ZZQ76PMUF", "attempts": 7, "max_in_window": 3, "users": 3,
         "success_after": True},
    ]
    assert iso_ns(bf["first"].iloc[0].value) == "2015-08-23T10:53:26.137863000Z"
    assert tl.brute_force(threshold=5).empty


def test_service_installs(tl):
    si = tl.service_installs()
    assert len(si) == 118  # (2 of DESKTOP-8BGEHIF in records found past damaged frames, issue 16 section 9)
    assert si.groupby("host").size().to_dict() == {
        "37L4247F27-26": 7, "DESKTOP-1N4R894": 19, "DESKTOP-2KGM189": 46, "DESKTOP-8BGEHIF": 2, "W10-1507-LTSB": 1,
        "WIN-NBRJP24VCHB": 18, "WIN-P4SIAA0SQCO": 13, "WKS-WIN764BITB.shieldbase.local": 12}
    last = si.iloc[-1]
    assert (iso_ns(last["timestamp"].value), last["service_name"], last["image_path"], last["account"], last["start_type"]) == (
        "2019-09-05T17:23:39.422225000Z", "Command Execution Service", "C:\\CmdExecService\\cmdexsvc.exe",
        "NT AUTHORITY\\System", "auto start")
    bcswap = si.iloc[0]
    assert (iso_ns(bcswap["timestamp"].value), bcswap["service_name"], bcswap["start_type"]) == (
        "2012-03-15T22:11:55.216665800Z", "BCSWAP", "disabled")
    # the same answer from a DataFrame, through the accessor
    assert len(tl.where(event_id=7045).to_pandas().fx.service_installs()) == 116


def test_shadow_copy_deletion_and_log_clearing(tl):
    sc = tl.shadow_copy_deletion()
    assert _times(sc) == ["2017-10-23T07:32:27.969467200Z", "2017-10-23T07:32:30.053969700Z",
                          "2017-10-23T07:32:32.870698900Z"]
    assert sc["command_line"].str.strip().tolist()[1:] == ["vssadmin  delete shadows /all /quiet", "wmic  shadowcopy delete"]
    assert set(sc["user"]) == {"DESKTOP-DF4ULDE\\MNWPRO"} and set(sc["host"]) == {"DESKTOP-DF4ULDE"}
    lc = tl.log_cleared()
    assert list(zip(_times(lc), lc["log"], lc["user"])) == [
        ("2017-12-26T13:06:45.140586900Z", "Microsoft-Windows-Sysmon/Operational", "DESKTOP-2KGM189\\tony"),
        ("2017-12-26T13:10:28.799280000Z", "Microsoft-Windows-Sysmon/Operational", "DESKTOP-2KGM189\\tony"),
    ]


def test_processes_accounts_groups_tasks(tl):
    pe = tl.process_executions()
    assert len(pe) == 583 and set(pe["event_id"]) == {1}
    assert pe.iloc[0][["process", "parent", "user"]].tolist() == [
        "C:\\Windows\\Sysmon.exe", "C:\\Windows\\System32\\services.exe", "NT AUTHORITY\\SYSTEM"]
    ac = tl.accounts_created()
    assert list(zip(_times(ac), ac["account"], ac["user"])) == [
        ("2013-10-23T16:22:39.973500000Z", "IE8Win7\\IEUser", "WORKGROUP\\WIN-QALA5Q3KJ43$"),
        ("2015-08-08T16:58:33.155625000Z", "GREENDALEGOLD\\gold_administrator", "WORKGROUP\\WIN-LK5OF8CDD94$"),
        ("2016-07-08T18:15:23.398026200Z", "WIN-03DLIIOFRRA\\fsir", "WORKGROUP\\WIN-03DLIIOFRRA$"),
        ("2016-07-08T22:23:19.291938300Z", "WIN-03DLIIOFRRA\\archir", "WIN-03DLIIOFRRA\\fsir"),
        ("2017-12-13T14:56:43.374802300Z", "John-PC\\John", "WORKGROUP\\WIN-F0HKLEEGGT1$"),
    ]
    gc = tl.group_changes()
    assert gc.groupby(["event_id", "change"]).size().to_dict() == {(4728, "added"): 5, (4732, "added"): 14, (4733, "removed"): 3}
    assert gc.iloc[2][["group", "member"]].tolist() == ["Builtin\\Administrators",
                                                        "S-1-5-21-3463664321-2923530833-3546627382-1000"]
    assert tl.scheduled_tasks().empty


def test_helpers_accept_a_dataframe_and_keep_provenance(tl):
    df = tl.to_pandas()
    a = hunt.log_cleared(df)
    b = df.fx.log_cleared()
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns[-3:]) == ["evidence_id", "evidence_path", "record_ref"]
    assert a["record_ref"].tolist() == ["record=1847 offset=0xe44f0", "record=1848 offset=0xe4a90"]
    with pytest.raises(TypeError):
        hunt.logons([1, 2, 3])


def test_credential_access(tl):
    ca = tl.credential_access()
    # only LSASS handles that can read its memory (PROCESS_VM_READ); the 55 query-only opens by svchost are not findings
    assert ca["technique"].tolist() == ["T1003.001"] * 5
    assert _times(ca)[0] == "2017-12-26T13:17:04.848776800Z"
    assert ca["finding"].iloc[0] == "LSASS memory opened for reading by C:\\Windows\\system32\\wbem\\wmiprvse.exe"
    assert set(ca["finding"].iloc[1:]) == {"LSASS memory opened for reading by C:\\Users\\tony\\AppData\\Local\\Temp\\Procmon64.exe"}


def test_lateral_movement(tl):
    lm = tl.lateral_movement()
    rdp = lm[lm["method"] == "RDP"]
    assert rdp[["source", "destination", "user", "count"]].to_dict("records") == [
        {"source": "174.127.93.2", "destination": "DESKTOP-1N4R894", "user": "MAGNETIC-DESKTO\\mpowers", "count": 3},
        {"source": "31.14.75.59", "destination": "DESKTOP-1N4R894", "user": "administrator", "count": 1},
        {"source": "103.11.244.223", "destination": "DESKTOP-1N4R894", "user": "A", "count": 1},
        {"source": "31.14.75.59", "destination": "DESKTOP-1N4R894", "user": "DESKTOP-1N4R894\\Administrator", "count": 1},
    ]
    assert iso_ns(rdp["first"].iloc[0].value) == "2018-08-07T18:37:12.964091100Z"
    assert iso_ns(rdp["last"].iloc[0].value) == "2018-08-07T19:02:42.044991600Z"
    psexec = lm[lm["method"] == "SMB/PsExec (service)"]
    assert psexec[["destination", "count"]].to_dict("records") == [{"destination": "WKS-WIN764BITB.shieldbase.local", "count": 4}]


def test_powershell_flags(tl):
    ps = tl.powershell()
    assert len(ps) == 48
    flagged = ps[ps["download"]]
    assert _times(flagged) == ["2022-01-24T20:11:11.361955600Z", "2022-01-24T20:11:11.361955600Z"]
    assert set(flagged["host"]) == {"fs03vuln.offsec.lan"}
    assert "IEX(New-Object Net.WebClient).downloadString(" in flagged["command_line"].iloc[1]
    assert not ps["encoded"].any() and not ps["obfuscated"].any()


def test_first_seen(tl):
    fs = tl.first_seen("174.127.93.2")
    assert fs[["host", "count", "first_record_ref"]].to_dict("records") == [
        {"host": "*", "count": 3, "first_record_ref": "record=462939 offset=0xf828"},
        {"host": "DESKTOP-1N4R894", "count": 3, "first_record_ref": "record=462939 offset=0xf828"},
    ]
    assert iso_ns(fs["first"].iloc[0].value) == "2018-08-07T18:37:12.964091100Z"
    assert tl.first_seen("no-such-indicator-7f3a").empty


def test_story_and_onset(tl):
    st = tl.story()
    assert st.groupby("technique").size().to_dict() == {
        "T1003.001": 5, "T1021.001": 4, "T1059.001": 2, "T1070.001": 2, "T1098": 22, "T1136": 5, "T1490": 3,
        "T1543.003": 118, "T1569.002": 1}
    psexec = st[st["technique"] == "T1569.002"].iloc[0]  # lateral_movement()'s PsExec edge reaches the story
    assert (psexec["finding"], psexec["record_ref"]) == (
        "SMB/PsExec (service) from ? to WKS-WIN764BITB.shieldbase.local as S-1-5-21-2036804247-3058324640-2116585241-1673"
        " (4 events)", "record=13304 offset=0x730d0")
    assert st["timestamp"].is_monotonic_increasing
    assert st["finding"].str.contains("\n").sum() == 0
    ransomware = st[st["technique"] == "T1490"]
    assert set(ransomware["host"]) == {"DESKTOP-DF4ULDE"}
    assert ransomware["evidence_path"].iloc[0] == "python-evtx/tests/data/issue_43.evtx"
    on = tl.onset()
    assert on.iloc[0]["host"] == "*" and iso_ns(on.iloc[0]["onset"].value) == "2012-03-15T22:11:55.216665800Z"
    row = on[on["host"] == "DESKTOP-DF4ULDE"].iloc[0]
    assert (iso_ns(row["onset"].value), row["technique"]) == ("2017-10-23T07:32:27.969467200Z", "T1490")


def test_encryption_burst(tmp_path):
    """File events written as the Sysmon collector writes them (event 11, path = the file), in a real case."""
    from timeline.schema import RowBuilder
    from timeline.store import CaseStore, write_parquet

    store = CaseStore.create(tmp_path / "case", tz="Asia/Kolkata")
    rb = RowBuilder()
    t0 = int(pd.Timestamp("2022-11-22 09:00", tz="UTC").value)
    burst = int(pd.Timestamp("2022-11-23 01:40", tz="UTC").value)

    def add(i, t, path):
        rb.add(timestamp=t, timestamp_desc="Event Logged", host="EHOSP-FS01", source="EVTX",
               artifact="evtx:Microsoft-Windows-Sysmon/Operational", event_id=11,
               channel="Microsoft-Windows-Sysmon/Operational", path=path, process="C:\\Users\\Public\\x.exe",
               message=f"Sysmon 11 file created by x.exe: {path}", attrs="{}", tags=[], tz_source="source_utc",
               evidence_id="e", evidence_path="Sysmon.evtx", record_ref=f"record={i}", parser="test",
               event_hash=f"{i:032x}")

    i = 0
    for k in range(200):  # a day of ordinary work: documents saved now and then
        add(i, t0 + k * 400 * 10**9, f"D:\\Records\\ward{k % 7}\\patient{k}.docx")
        i += 1
    for d in range(30):  # three minutes: 10 files per folder renamed to .locked, and a note per folder
        for f in range(10):
            add(i, burst + (d * 10 + f) * 600_000_000, f"D:\\Records\\dept{d}\\scan{f}.pdf.locked")
            i += 1
        add(i, burst + d * 6 * 10**9 + 1, f"D:\\Records\\dept{d}\\README_DECRYPT.txt")
        i += 1
    staging = store.staging_dir("run1")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("run1", [staging / "tl-0.parquet"], [])

    tl = forensics.open(tmp_path / "case")
    eb = tl.encryption_burst(window="10min", min_files=100)
    assert eb[["host", "extension", "files", "directories", "notes", "first_note"]].to_dict("records") == [
        {"host": "EHOSP-FS01", "extension": "locked", "files": 300, "directories": 30, "notes": 30,
         "first_note": "D:\\Records\\dept0\\README_DECRYPT.txt"}]
    assert iso_ns(eb["first"].iloc[0].value) == "2022-11-23T01:40:00.000000000Z"
    assert iso_ns(eb["last"].iloc[0].value) == "2022-11-23T01:42:59.400000000Z"
    assert eb["record_ref"].iloc[0] == "record=200"
    assert tl.encryption_burst(min_files=500).empty  # not enough files
    st = tl.story()
    enc = st[st["technique"] == "T1486"]
    assert enc["finding"].tolist() == ["encryption burst: 300 files to .locked in 30 folders, 30 ransom notes"]
    assert str(enc["local_time"].iloc[0]) == "2022-11-23 07:10:00+05:30"


def test_row_wise_helpers_give_the_same_columns_empty_or_not(tl):
    """Their columns do not depend on whether rows were found: a dask partition's answer must match the
    meta computed on no rows (shadow_copy_deletion once added ``artifact`` only when it found some)."""
    from forensics import hunt

    empty = tl.to_pandas().iloc[0:0]
    for fn in (hunt.logons, hunt.service_installs, hunt.process_executions, hunt.shadow_copy_deletion,
               hunt.log_cleared, hunt.accounts_created, hunt.group_changes, hunt.scheduled_tasks, hunt.powershell):
        full = fn(tl)
        assert list(fn(empty).columns) == list(full.columns), fn.__name__


def test_story_with_sigma_on_the_corpus(tl, sigma_dir):
    """SigmaHQ's System-log rules merged into the corpus's story: one row per rule, host and burst, with the
    rule's level and first ATT&CK technique, and the provenance of the burst's first record."""
    pytest.importorskip("sigma")
    st = tl.story(sigma=sigma_dir / "rules/windows/builtin/system")
    assert st["timestamp"].is_monotonic_increasing and st["host"].notna().all() and len(st) == 190
    assert st["evidence_path"].notna().all() and st["record_ref"].notna().all()
    sig = st[st["detector"] == "sigma"]
    assert sig["level"].value_counts().to_dict() == {"low": 16, "informational": 6, "medium": 5, "high": 1}
    psexec = sig[sig["rule_id"] == "42c575ea-e41e-41f1-b248-8093c3e82a28"]  # PsExec Service Installation
    assert [(_times(psexec.iloc[[i]])[0], r.host, r.level, r.technique, r.finding, r.count, iso_ns(r.last.value),
             r.evidence_path, r.record_ref) for i, r in enumerate(psexec.itertuples())] == [
        ("2012-04-05T17:03:51.757686600Z", "WKS-WIN764BITB.shieldbase.local", "medium", "T1569.002",
         "PsExec Service Installation (3 events)", 3, "2012-04-05T17:23:04.648311600Z",
         "python-evtx/tests/data/system.evtx", "record=13304 offset=0x730d0"),
        ("2012-04-06T18:09:48.760666400Z", "WKS-WIN764BITB.shieldbase.local", "medium", "T1569.002",
         "PsExec Service Installation (1 event)", 1, "2012-04-06T18:09:48.760666400Z",
         "python-evtx/tests/data/system.evtx", "record=13510 offset=0x84d58")]
    # the same services as lateral movement: one edge of 4 events, a curated finding of level high
    edge = st[(st["detector"] == "lateral_movement") & (st["technique"] == "T1569.002")]
    assert edge[["level", "count", "record_ref"]].to_dict("records") == [
        {"level": "high", "count": 4, "record_ref": "record=13304 offset=0x730d0"}]
    assert list(st["detector"].iloc[[i for i in range(len(st)) if st["record_ref"].iloc[i] == "record=13304 offset=0x730d0"]]) \
        == ["service_installs", "lateral_movement", "sigma"]
    untagged = sig[sig["technique"].isna()]  # a rule without ATT&CK tags: no technique, still in the story
    assert set(untagged["rule_id"]) == {"acfa2210-0d71-4eeb-b477-afab494d596c"} and untagged["count"].sum() == 19
    pd.testing.assert_frame_equal(st[st["level"].isin(["high", "critical"])].reset_index(drop=True),
                                  tl.story(sigma=sigma_dir / "rules/windows/builtin/system", min_level="high"))
