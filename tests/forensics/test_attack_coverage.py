"""benchmarks/attack_coverage.py on a small fixed subset of the real corpora: the samples it builds from the corpora's
labels, the technique matching, and the coverage it measures (exact, per sample)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("attack_coverage", ROOT / "benchmarks" / "attack_coverage.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["attack_coverage"] = mod
    spec.loader.exec_module(mod)
    return mod


ac = _module()


def test_a_finding_covers_its_technique_its_parent_and_its_sub_techniques():
    assert ac.covers("T1003.001", "T1003.001")
    assert ac.covers("T1003", "T1003.001")  # the parent of the label
    assert ac.covers("T1003.001", "T1003")  # a sub-technique of the label
    assert ac.covers("t1003.001", "T1003.001")
    assert not ac.covers("T1003.002", "T1003.001")  # a sibling is another technique
    assert not ac.covers("T1030", "T1003")
    assert ac.covered(["T1070.001", "T1021"], ["T1021.002"])
    assert not ac.covered([], ["T1021.002"])


def test_retired_techniques_have_the_successor_sigmahq_tags_them_with(sigma_dir, monkeypatch):
    found = ac.successors([sigma_dir / d for d in ac.RULE_DIRS])
    assert found == {"T1070.001": "T1685.005", "T1070.002": "T1685.006", "T1562.001": "T1685", "T1562.004": "T1686.003"}
    assert not ac.covers("T1685", "T1562.001")  # unknown until the successors are read
    monkeypatch.setattr(ac, "SUCCESSORS", found)
    assert ac.covers("T1685", "T1562.001") and ac.covers("T1562.001", "T1685")
    assert ac.covers("T1070.001", "T1685.005")  # the story's log clearing, labelled with today's id
    assert ac.covers("T1686", "T1562.004")  # the successor's parent
    # no sub-technique rule across a rename: clearing logs (T1685.005) is no kind of "Disable or Modify Tools"
    assert not ac.covers("T1685.005", "T1562.001") and not ac.covers("T1070.001", "T1562.001")
    assert not ac.covers("T1685", "T1562.002")


# A fixed subset: every EVTX-to-MITRE file, three regression samples, four splunk captures (one no collector reads),
# four OTRF datasets; five SigmaHQ rules besides the three regression samples' own.
SUBSET = {
    "mitre": None,
    "regression": {"LSASS Process Memory Dump Creation Via Taskmgr.EXE", "WMIC Remote Command Execution",
                   "Suspicious File Download From IP Via Curl.EXE"},
    "splunk": {"attack_techniques/T1003.003/credential-dumping-via-copy", "attack_techniques/T1003.006/mimikatz",
               "attack_techniques/T1207/mimikatz", "attack_techniques/T1558.004/active-directory-as-rep-roasting-detection.log"},
    "otrf": {"atomic/windows/credential_access/host/psh_lsass_memory_dump_comsvcs.zip",
             "atomic/windows/credential_access/host/cmd_lsass_memory_dumpert_syscalls.zip",
             "atomic/windows/lateral_movement/host/covenant_copy_smb_CreateRequest.zip",
             "atomic/windows/credential_access/host/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges.zip"},
}
RULES = ["rules/windows/builtin/security/win_security_ad_replication_non_machine_account.yml",
         "rules/windows/builtin/security/win_security_smb_file_creation_admin_shares.yml",
         "rules/windows/process_access/proc_access_win_lsass_memdump.yml",
         "rules/windows/builtin/security/win_security_possible_dc_shadow.yml",
         "rules/windows/process_creation/proc_creation_win_esentutl_sensitive_file_copy.yml",
         "rules/windows/file/file_event/file_event_win_taskmgr_lsass_dump.yml",
         "rules/windows/process_creation/proc_creation_win_wmic_remote_execution.yml",
         "rules/windows/process_creation/proc_creation_win_curl_download_direct_ip_susp_extensions.yml"]


@pytest.fixture(scope="module")
def measured(evidence, sigma_dir, tmp_path_factory):
    shared = evidence.parent
    samples = []
    for corpus, names in SUBSET.items():
        samples += [s for s in ac.corpus_samples(corpus, shared) if names is None or s.name in names]
    # the accounting of clean baselines, on a sample with findings: the splunk copy of SAM/NTDS
    samples.append(ac.Sample("splunk", "as a baseline", next(s.paths for s in samples if s.name.endswith("via-copy")),
                             kind="baseline"))
    case, _ = ac.case_for(samples, tmp_path_factory.mktemp("coverage") / "case")
    res = ac.evaluate(samples, case, [sigma_dir / r for r in RULES])
    return {(s["corpus"], s["name"]): s for s in res["samples"]}, res


def test_the_subset_is_what_the_corpora_label(measured):
    by, res = measured
    assert len(by) == 16
    labels = {k[1]: (list(s["techniques"]), s["kind"]) for k, s in by.items()}
    assert labels == {
        "Antivirus/ID1151-Defender health status.evtx": ([], "unlabelled"),
        "TA0002-Execution/T1059.001-PowerShell/ID4103-4104-Payload download via PowerShell.evtx": (["T1059.001"], "attack"),
        "TA0002-Execution/T1059.001-PowerShell/ID800-4103-Interactive PipeShell over named pipe (server and client).evtx":
            (["T1059.001"], "attack"),
        "TA0007-Discovery/T1087-Account discovery/ID800 - SPN discovery (PowerShell).evtx": (["T1087"], "attack"),
        "LSASS Process Memory Dump Creation Via Taskmgr.EXE": (["T1003.001"], "attack"),
        "WMIC Remote Command Execution": (["T1047"], "attack"),
        "Suspicious File Download From IP Via Curl.EXE": ([], "unlabelled"),  # its rule has no technique tag
        "attack_techniques/T1003.003/credential-dumping-via-copy": (["T1003.003"], "attack"),
        "attack_techniques/T1003.006/mimikatz": (["T1003.006"], "attack"),
        "attack_techniques/T1207/mimikatz": (["T1207"], "attack"),
        "attack_techniques/T1558.004/active-directory-as-rep-roasting-detection.log": (["T1558.004"], "attack"),
        "atomic/windows/credential_access/host/psh_lsass_memory_dump_comsvcs.zip": (["T1003.001"], "attack"),
        "atomic/windows/credential_access/host/cmd_lsass_memory_dumpert_syscalls.zip": (["T1003.001"], "attack"),
        "atomic/windows/lateral_movement/host/covenant_copy_smb_CreateRequest.zip": (["T1021.002"], "attack"),
        "atomic/windows/credential_access/host/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges.zip": (["T1003.006"], "attack"),
        "as a baseline": ([], "baseline"),
    }



M = "TA0002-Execution/T1059.001-PowerShell/"
# (rows; covered by the story, by the story with Sigma; techniques of the story's findings, of the story with Sigma's;
#  why the story misses, why the story with Sigma misses)
EXPECTED = {
    ("mitre", "Antivirus/ID1151-Defender health status.evtx"):
        (455, None, None, {}, {}, None, None),
    ("mitre", M + "ID4103-4104-Payload download via PowerShell.evtx"):
        (3, True, True, {"T1059.001": 2}, {"T1059.001": 2}, None, None),
    ("mitre", M + "ID800-4103-Interactive PipeShell over named pipe (server and client).evtx"):
        (30, False, False, {}, {}, "no finding: 30 rows (Windows PowerShell:800×13, PowerShell:4103×12, PowerShell:4104×5)", "no finding: 30 rows (Windows PowerShell:800×13, PowerShell:4103×12, PowerShell:4104×5)"),
    ("mitre", "TA0007-Discovery/T1087-Account discovery/ID800 - SPN discovery (PowerShell).evtx"):
        (21, False, False, {}, {}, "no finding: 21 rows (Windows PowerShell:800×14, Windows PowerShell:600×6, Windows PowerShell:400×1)", "no finding: 21 rows (Windows PowerShell:800×14, Windows PowerShell:600×6, Windows PowerShell:400×1)"),
    ("regression", "LSASS Process Memory Dump Creation Via Taskmgr.EXE"):
        (1, True, True, {"T1003.001": 1}, {"T1003.001": 2}, None, None),
    ("regression", "Suspicious File Download From IP Via Curl.EXE"):
        (1, None, None, {}, {}, None, None),
    ("regression", "WMIC Remote Command Execution"):
        (1, True, True, {"T1047": 1}, {"T1047": 2}, None, None),
    ("splunk", "attack_techniques/T1003.003/credential-dumping-via-copy"):
        (17, True, True, {"T1003.003": 5, "T1047": 1}, {"T1003.002": 1, "T1003.003": 6, "T1047": 1}, None, None),
    ("splunk", "attack_techniques/T1003.006/mimikatz"):
        (0, False, False, {}, {}, "not collected: no rows (windows-security.log: no collector recognises its format)", "not collected: no rows (windows-security.log: no collector recognises its format)"),
    ("splunk", "attack_techniques/T1207/mimikatz"):
        (2, False, True, {}, {"T1207": 1}, "no finding: 2 rows (Security:5136×2)", None),
    ("splunk", "attack_techniques/T1558.004/active-directory-as-rep-roasting-detection.log"):
        (1, True, True, {"T1558.004": 1}, {"T1558.004": 1}, None, None),
    ("otrf", "atomic/windows/credential_access/host/cmd_lsass_memory_dumpert_syscalls.zip"):
        (119, True, True, {"T1070.001": 1, "T1003.001": 7}, {"T1070.001": 1, "T1003.001": 8}, None, None),
    ("otrf", "atomic/windows/credential_access/host/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges.zip"):
        (870, True, True, {"T1003.006": 3}, {"T1003.006": 4}, None, None),
    ("otrf", "atomic/windows/credential_access/host/psh_lsass_memory_dump_comsvcs.zip"):
        (185, True, True, {"T1070.001": 1, "T1003.001": 9}, {"T1070.001": 1, "T1003.001": 10}, None, None),
    ("otrf", "atomic/windows/lateral_movement/host/covenant_copy_smb_CreateRequest.zip"):
        (507, True, True, {"T1021.002": 2}, {"T1021.002": 3}, None, None),
    ("splunk", "as a baseline"):
        (17, None, None, {"T1003.003": 5, "T1047": 1}, {"T1003.002": 1, "T1003.003": 6, "T1047": 1}, None, None),
}


def test_coverage_of_every_sample_of_the_subset(measured):
    by, _ = measured
    got = {k: (s["rows"], s["story_covered"], s["sigma_covered"], s["story_techniques"], s["sigma_techniques"],
               s["story_reason"], s["sigma_reason"]) for k, s in by.items()}
    assert got == EXPECTED


def test_the_summary_counts_labelled_samples_covered_with_and_without_sigma(measured):
    _, res = measured
    assert ac.summary(res) == {"samples": 16, "labelled": 13, "story": 9, "sigma": 10, "unlabelled": 2, "baselines": 1}
    # every row of the case is one sample's (the baseline is a second look at the SAM copy)
    assert res["rows"] == sum(s["rows"] for s in res["samples"] if s["name"] != "as a baseline") == 2213
    assert res["sigma_rules"] == (8, 8, 8)  # loaded, converted, matched


def test_a_baseline_counts_findings_per_host_and_level(measured):
    by, _ = measured
    b = by[("splunk", "as a baseline")]
    assert b["hosts"] == {"ar-win-1": 17}
    # the story's six findings (hive and NTDS copies: credential_access says high); Sigma adds a high one
    assert b["story_levels"] == {"ar-win-1": {"high": 6}}
    assert b["sigma_levels"] == {"ar-win-1": {"high": 7}}
    assert len(b["sigma_medium_up"]) == 7


def test_the_markdown_lists_every_miss_with_its_reason(measured):
    _, res = measured
    res = {**res, "corpus": "subset", "collect_s": 0.0}
    text = ac.markdown([res], {})
    assert "| subset | 16 | 13 | 9/13 (69 %) | 10/13 (77 %) | 2,213 |" in text
    assert "| ar-win-1 | 17 | 6 | 7 | 0 / 0 |" in text
    misses = [line for line in text.splitlines() if line.startswith("| ") and "not collected" in line]
    assert misses == ["| attack_techniques/T1003.006/mimikatz | T1003.006 | not collected: no rows (windows-security.log: no "
                      "collector recognises its format) | not collected: no rows (windows-security.log: no collector "
                      "recognises its format) |"]
    m = ac.misses_markdown([res], {})
    assert m.count("\n- `") == 4  # the story misses 4 of the 13 labelled samples
