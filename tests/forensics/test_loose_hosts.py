"""Loose logs get a host (given, from the log, from a folder) and web_attacks keeps their rows: the Tomcat upload
followed by a new .jsp, a reGeorg-shaped tunnel, and real access logs of the corpus."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

import forensics
from forensics import Case
from forensics.cli import main
from timeline.schema import UNKNOWN_HOST

UA = '"-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"'


def _clf(ip: str, when: pd.Timestamp, request: str, status: int = 200, size: int = 512) -> str:
    return f'{ip} - - [{when.strftime("%d/%b/%Y:%H:%M:%S")} +0000] "{request} HTTP/1.1" {status} {size} {UA}'


def _normal_day(start: str, pages: list[str], n: int = 60) -> list[str]:
    t0 = pd.Timestamp(start)
    return [_clf(f"10.20.1.{i % 20 + 1}", t0 + pd.Timedelta(minutes=10 * i),
                 ("POST " if p.endswith("login.jsp") else "GET ") + p) for i, p in
            ((i, pages[i % len(pages)]) for i in range(n))]


def tomcat_log() -> str:
    """A day of the application, then the Tomcat manager upload of a WAR and POSTs to the .jsp it deployed."""
    lines = _normal_day("2022-11-22 00:05:00", ["/ehospital/index.jsp", "/ehospital/login.jsp", "/ehospital/ward.jsp"])
    t = pd.Timestamp("2022-11-23 01:18:12")
    lines.append(_clf("203.0.113.7", t, "GET /manager/html", 401))
    lines.append(_clf("203.0.113.7", t + pd.Timedelta(seconds=5), "GET /manager/html"))
    lines.append(_clf("203.0.113.7", t + pd.Timedelta(seconds=20),
                      "POST /manager/html/upload?org.apache.catalina.filters.CSRF_NONCE=6C1A"))
    for i in range(6):  # the commands travel in the POST bodies: the log shows only the new script
        lines.append(_clf("203.0.113.7", t + pd.Timedelta(seconds=40 + 30 * i), "POST /backup/cmd.jsp", size=90 + i))
    lines.append(_clf("10.20.1.4", t + pd.Timedelta(minutes=20), "GET /ehospital/index.jsp"))
    return "\n".join(lines) + "\n"


def regeorg_log() -> str:
    """A reGeorg tunnel: thousands of POSTs to one script, only the two connects carry an address and port; and a
    busy polling endpoint of the application that is no tunnel."""
    lines = []
    t0 = pd.Timestamp("2022-11-22 00:00:00")
    for i in range(600):
        lines.append(_clf(f"10.20.1.{i % 20 + 1}", t0 + pd.Timedelta(minutes=2 * i), "GET /api/status.php?action=getData"))
    t = pd.Timestamp("2022-11-23 02:00:00")
    lines.append(_clf("198.51.100.23", t, "GET /images/tunnel.jsp"))  # "Georg says, 'All seems fine'"
    lines.append(_clf("198.51.100.23", t + pd.Timedelta(seconds=1), "POST /images/tunnel.jsp?cmd=connect&target=10.0.0.10&port=3389"))
    for i in range(1500):
        lines.append(_clf("198.51.100.23", t + pd.Timedelta(seconds=2 + i), f"POST /images/tunnel.jsp?cmd={'read' if i % 2 else 'forward'}"))
    lines.append(_clf("198.51.100.23", t + pd.Timedelta(seconds=1502), "POST /images/tunnel.jsp?cmd=disconnect"))
    lines.append(_clf("198.51.100.23", t + pd.Timedelta(seconds=1503), "POST /images/tunnel.jsp?cmd=connect&target=10.0.0.11&port=445"))
    return "\n".join(lines) + "\n"


def _hosts(tl) -> set[tuple[str, str]]:
    df = tl.to_pandas(["host", "attrs"])
    return set(zip(df["host"], (json.loads(a)["host_source"] for a in df["attrs"])))


@pytest.fixture(scope="module")
def tomcat_case(tmp_path_factory):
    base = tmp_path_factory.mktemp("tomcat")
    log = base / "evidence" / "web01" / "tomcat" / "localhost_access_log.2022-11-23.txt"
    log.parent.mkdir(parents=True)
    log.write_text(tomcat_log())
    Case(base / "case", create=True).collect([base / "evidence"], workers=1)
    return base / "case"


def test_a_loose_log_in_a_folder_named_after_a_host_gets_that_host(tomcat_case):
    tl = forensics.open(tomcat_case)
    assert len(tl) == 70 and _hosts(tl) == {("web01", "folder")}
    assert tl.hosts() == {"web01": 70}


def test_tomcat_upload_then_a_new_jsp_is_a_web_shell(tomcat_case):
    wa = forensics.open(tomcat_case).web_attacks()
    got = [(r.host, r.finding, r.url, r.src_ip, r.requests, str(r.first), r.record_ref, r.detail) for r in wa.itertuples()]
    assert got == [
        ("web01", "upload", "/manager/html/upload", "203.0.113.7", 1, "2022-11-23 01:18:32+00:00", "line=63",
         "POST status 200"),
        ("web01", "web shell", "/backup/cmd.jsp", "203.0.113.7", 6, "2022-11-23 01:18:52+00:00", "line=64",
         "6 POST(s), 0 GET(s) from 1 source(s); a new script after an upload from the same source; "
         "first requested after the baseline; one source driving it"),
    ]
    st = forensics.open(tomcat_case).story()
    assert [(r.host, r.technique) for r in st.itertuples()] == [("web01", "T1105"), ("web01", "T1505.003")]


def test_the_same_rows_without_a_host_are_still_found(tomcat_case):
    """A frame whose hosts are all unknown (null) gives the same findings, under the placeholder."""
    df = forensics.open(tomcat_case).to_pandas()
    df["host"] = None
    wa = forensics.hunt.web_attacks(df)
    assert [(r.host, r.finding, r.url, r.requests) for r in wa.itertuples()] == [
        (UNKNOWN_HOST, "upload", "/manager/html/upload", 1), (UNKNOWN_HOST, "web shell", "/backup/cmd.jsp", 6)]


def test_regeorg_tunnel_with_a_host_given_on_the_command_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "access.log").write_text(regeorg_log())
    (tmp_path / "in" / "other.log").write_text(_clf("10.9.9.9", pd.Timestamp("2022-11-23 03:00:00"), "GET /") + "\n")
    case = tmp_path / "case"
    assert main(["-q", "collect", "--case", str(case), str(tmp_path / "in" / "other.log"),
                 "--host", "web02", str(tmp_path / "in" / "access.log")]) == 0
    tl = forensics.open(case)
    assert tl.hosts() == {"web02": 2104, UNKNOWN_HOST: 1}
    assert _hosts(tl.where(host="web02")) == {("web02", "given")}
    assert _hosts(tl.where(host=None)) == {(UNKNOWN_HOST, "unknown")}
    wa = tl.web_attacks()
    got = [(r.host, r.finding, r.url, r.src_ip, r.requests, str(r.first), str(r.last), r.detail) for r in wa.itertuples()]
    assert got == [
        ("web02", "web shell", "/images/tunnel.jsp", "198.51.100.23", 1504, "2022-11-23 02:00:00+00:00",
         "2022-11-23 02:25:03+00:00", "1503 POST(s), 1 GET(s) from 1 source(s); command parameters; "
         "first requested after the baseline; one source driving it"),
        ("web02", "tunnel", "/images/tunnel.jsp", "198.51.100.23", 1503, "2022-11-23 02:00:01+00:00",
         "2022-11-23 02:25:03+00:00", "1503 requests with tunnel parameters, 2 opening a connection (address or "
         "connect); 1503 from 198.51.100.23"),
    ]
    capsys.readouterr()
    assert main(["hunt", str(case)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "tunnel: /images/tunnel.jsp" in ln and "T1572" in ln)  # the story line
    assert "web02" in line and "T1572" in line and "tunnel: /images/tunnel.jsp from 198.51.100.23 (1503 requests;" in line
    assert "None" not in out and "nan" not in out
    assert main(["info", str(case)]) == 0
    out = capsys.readouterr().out
    assert f"hosts       web02 (2104), {UNKNOWN_HOST} (1)" in out and "host web02 (given)" in out
    # exports carry the placeholder, never an empty or None host
    tl.export(tmp_path / "x.csv", "csv")
    csv = pd.read_csv(tmp_path / "x.csv", keep_default_na=False)
    assert set(csv["host"]) == {"web02", UNKNOWN_HOST}


def test_host_mapping_and_bad_names(tmp_path, capsys):
    log = tmp_path / "a.log"
    log.write_text(_clf("10.9.9.9", pd.Timestamp("2022-11-23 03:00:00"), "GET /") + "\n")
    with pytest.raises(ValueError, match="control character"):
        Case(tmp_path / "c1", create=True).collect([log], host="web\x1b[2J")
    with pytest.raises(ValueError, match="not collected"):
        Case(tmp_path / "c2", create=True).collect([log], host={tmp_path / "other.log": "x"})
    Case(tmp_path / "c3", create=True).collect([log], host={str(log): "../../etc"}, workers=1)
    assert _hosts(forensics.open(tmp_path / "c3")) == {("../../etc", "given")}  # a value, never a path
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--case", str(tmp_path / "c4"), "--host", "a\u202eb", str(log)])
    assert exc.value.code == 2 and "control character" in capsys.readouterr().err
    assert not (tmp_path / "c4").exists()
    # the analyst's host is recorded with the artifact in the custody log
    arts = [a for e in Case(tmp_path / "c3").store.commits() for a in e["artifacts"]]
    assert [(a["evidence_path"], a["facts"]) for a in arts] == [("a.log", {"host": "../../etc", "host_source": "given"})]


def test_syslog_host_field_is_the_log_source(tmp_path):
    ev = tmp_path / "evidence" / "web03"
    ev.mkdir(parents=True)
    (ev / "auth.log").write_text("Nov 23 07:00:00 bastion sshd[10]: Accepted password for bob from 203.0.113.9 port 2 ssh2\n"
                                 "Nov 23 07:00:01 web03 sshd[11]: Failed password for root from 203.0.113.9 port 3 ssh2\n"
                                 "2022-11-23 07:00:02 status installed bash:amd64 5.1\n")
    Case(tmp_path / "case", create=True).collect([tmp_path / "evidence"], workers=1)
    df = forensics.open(tmp_path / "case").to_pandas(["host", "attrs", "record_ref"])
    got = [(r.record_ref, r.host, json.loads(r.attrs)["host_source"]) for r in df.itertuples()]
    assert sorted(got) == [("line=1", "bastion", "log"), ("line=2", "web03", "log"), ("line=3", "web03", "folder")]


def test_real_access_logs_of_the_corpus(evidence, tmp_path):
    """plaso's apache_access.log (GET commands to a dropped evil.php) and crowdsec's backdoor probes (404s: no shell)."""
    apache = evidence / "plaso" / "test_data" / "apache_access.log"
    ev = tmp_path / "www-01"
    ev.mkdir()
    shutil.copy2(apache, ev / "access.log")
    probes = evidence / "crowdsec-hub" / ".tests" / "nginx-http-backdoor" / "nginx-http-backdoor.log"
    Case(tmp_path / "case", create=True).collect([ev, probes], workers=1)
    tl = forensics.open(tmp_path / "case")
    assert tl.hosts() == {"www-01": 15, UNKNOWN_HOST: 2}
    assert _hosts(tl) == {("www-01", "folder"), (UNKNOWN_HOST, "unknown")}
    wa = tl.web_attacks()
    got = [(r.host, r.finding, r.url, r.src_ip, r.requests, str(r.first), r.record_ref, r.detail) for r in wa.itertuples()]
    assert got == [
        ("www-01", "web shell", "/wp-content/themes/darkmode/evil.php", "192.168.0.2", 4, "2016-01-13 17:31:20+00:00",
         "line=5", "0 POST(s), 4 GET(s) from 1 source(s); command parameters; first requested after the baseline"),
        (UNKNOWN_HOST, "scanner", "/Worse_Linux_Shell.php", "127.0.0.1", 2, "2021-09-29 13:49:49+00:00", "line=1",
         "2 distinct URLs, statuses [404]"),
    ]
