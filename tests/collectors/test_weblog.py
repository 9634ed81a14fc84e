"""Web server logs: plaso's Apache/ELB/IIS/Atlassian fixtures, crowdsec's parser expectations, a case."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from collectors import WebCollector, collector_for
from collectors.base import Artifact
from collectors.weblog import parse_request, split_uri
from timeline.schema import SCHEMA, event_hash, iso_ns


def collect(path: Path, name: str | None = None, **kw):
    """Rows (dicts, attrs decoded) and the report of one file read by the web collector."""
    c = WebCollector()
    art = Artifact("e" * 16, name or path.name, str(path), "0" * 64, path.stat().st_size, **kw)
    tables = list(c.collect(art)) + list(c.finish())
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    for r in rows:
        r["a"] = json.loads(r["attrs"])
        r["t"] = iso_ns(r["timestamp"].value)
    return rows, c.report(art)


# --- plaso fixtures ----------------------------------------------------------------------------------


def test_apache_access_plaso(evidence: Path):
    rows, rep = collect(evidence / "plaso/test_data/apache_access.log")
    assert len(rows) == 15 and rep.errors == []
    assert {r["artifact"] for r in rows} == {"web:apache-access"}  # "apache" in the file name
    assert {r["tz_source"] for r in rows} == {"embedded_offset"}
    assert {r["timestamp_desc"] for r in rows} == {"Request Received"}
    assert [r["a"]["format"] for r in rows] == ["common"] + ["combined"] * 7 + ["vhost_combined"] * 4 + ["common"] * 3
    r = rows[0]
    assert (r["t"], r["src_ip"], r["user"], r["path"], r["command_line"]) == (
        "2016-01-13T19:31:16.000000000Z", "10.0.0.1", None, "/wp-content/themes/darkmode/header.php", None)
    assert r["a"]["query"] == "install2" and r["a"]["uri"] == "/wp-content/themes/darkmode/header.php?install2"
    assert r["message"] == "GET /wp-content/themes/darkmode/header.php?install2 200 494 from 10.0.0.1"
    r = rows[4]  # +0200 offset
    assert r["t"] == "2016-01-13T17:31:20.000000000Z"
    assert r["a"]["query"] == "cmd=uname+-a" and r["a"]["referer"] == "http://localhost/"
    assert r["message"] == ('GET /wp-content/themes/darkmode/evil.php?cmd=uname+-a 200 694 from 192.168.0.2 '
                            '"Mozilla/5.0 (X11; Linux i686; rv:2.0b12pre) Gecko/20100101 Firefox/4"')
    assert rows[6]["a"]["bytes"] is None and rows[6]["a"]["status"] == 304  # "%b" is "-"
    # line 8: the user agent's closing quote is missing: read, and a warning says so
    assert rows[7]["a"]["user_agent"] == "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html"
    assert [(w.record_ref, w.kind) for w in rep.warnings] == [("line=8", "damage")]
    r = rows[10]
    assert (r["a"]["vhost"], r["a"]["vhost_port"], r["dst_port"], r["src_ip"], r["t"]) == (
        "plaso-2.log2timeline.net", 443, 443, "192.168.0.2", "2018-01-13T19:31:19.000000000Z")
    r = rows[12]  # unescaped quotes inside the request line
    assert r["path"] == "/aaaa.xxxx/SomeText" and r["a"]["query"] == 'action=edit&template=<script>alert("text")</script>'
    assert r["a"]["protocol"] == "HTTP/1.0" and r["a"]["status"] == 404
    r = rows[14]
    assert (r["user"], r["t"], r["a"]["ident"]) == ("pyllyukko@EXAMPLE.COM", "2019-11-16T07:46:42.000000000Z", None)
    assert [r["record_ref"] for r in rows] == [f"line={i}" for i in range(1, 16)]


def test_aws_elb_plaso(evidence: Path):
    rows, rep = collect(evidence / "plaso/test_data/aws_elb_access.log")
    assert len(rows) == 16 and rep.errors == []
    assert [r["a"]["elb_type"] for r in rows] == ["application"] * 10 + ["classic"] * 4 + ["network"] * 2
    assert {r["tz_source"] for r in rows} == {"source_utc"} and {r["artifact"] for r in rows} == {"web:elb"}
    r = rows[0]
    assert (r["t"], r["timestamp_desc"], r["src_ip"], r["dst_ip"], r["dst_port"], r["path"]) == (
        "2020-01-11T16:55:20.356586000Z", "Response Sent", "192.168.1.10", "192.168.1.123", 32869, "/")
    a = r["a"]
    assert (a["method"], a["uri"], a["vhost"], a["status"], a["target_status_code"], a["bytes"], a["received_bytes"],
            a["client_port"], a["request_creation_time"], a["trace_id"], a["ssl_protocol"]) == (
        "GET", "https://www.domain.name:443/", "www.domain.name:443", 200, 200, 107999, 391, 44325,
        "2020-01-11T16:55:19.624000Z", "XXXXXXX", "TLSv1.2")
    assert a["request_processing_time"] == 0.013 and a["target_processing_time"] == 0.164
    assert rows[4]["a"]["query"] == "v=5" and rows[4]["path"] == "/images/test.png"
    r = rows[10]
    assert (r["t"], r["timestamp_desc"], r["src_ip"], r["dst_ip"], r["dst_port"], r["a"]["user_agent"], r["a"]["bytes"]) == (
        "2021-05-13T23:39:43.945958000Z", "Request Received", "192.168.131.39", "10.0.0.1", 80, "curl/7.38.0", 29)
    r = rows[12]  # "- - - " request, "-" status: kept, nothing guessed
    assert (r["a"]["method"], r["path"], r["a"]["status"], r["a"]["request"]) == (None, None, None, "- - - ")
    assert r["message"] == '"- - - " - 305 from 192.168.131.39'
    r = rows[14]
    assert (r["t"], r["timestamp_desc"], r["src_ip"], r["dst_ip"], r["dst_port"], r["a"]["tls_protocol_version"]) == (
        "2022-04-01T08:51:42.000000000Z", "Connection Closed", "72.21.218.154", "172.100.100.185", 443, "tlsv12")


IIS_ROWS = {"iis10.log": 1, "iis10_cookies.log": 3, "iis10_edge_cases.log": 15, "iis6.log": 12, "iis7_owa.log": 3,
            "iis7_sqli.log": 2, "iis_without_date.log": 11}


def test_iis_plaso(evidence: Path):
    folder = evidence / "plaso/test_data/iis"
    assert sorted(p.name for p in folder.iterdir()) == sorted(IIS_ROWS)
    got = {}
    for name in IIS_ROWS:
        rows, rep = collect(folder / name)
        assert rep.errors == [] and rep.warnings == []
        assert {r["tz_source"] for r in rows} == {"source_utc"} and {r["artifact"] for r in rows} == {"web:iis"}
        got[name] = rows
    assert {k: len(v) for k, v in got.items()} == IIS_ROWS

    r = got["iis10.log"][0]
    assert (r["t"], r["src_ip"], r["dst_ip"], r["dst_port"], r["path"], r["user"]) == (
        "2021-04-01T00:00:21.000000000Z", "222.222.222.222", "111.111.111.111", 80, "/foo/bar/baz.asp", None)
    assert (r["a"]["status"], r["a"]["substatus"], r["a"]["win32_status"], r["a"]["time_taken"], r["a"]["referer"]) == (
        200, 0, 0, 65, "http://111.111.111.111/")
    assert r["a"]["user_agent"] == "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/35.0.2309.372 Safari/537.36"
    assert r["a"]["w3c"]["cs(user-agent)"].startswith("Mozilla/5.0+(Windows+NT+5.1)")  # the raw field is kept
    assert r["a"]["software"] == "Microsoft Internet Information Services 10.0"
    assert [r["a"]["cookie"] for r in got["iis10_cookies.log"]] == [
        'OutlookSession="{AAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE}"', "username=realm\\user", "username=realm@user"]
    edge = got["iis10_edge_cases.log"]
    assert (edge[0]["user"], edge[0]["src_ip"], edge[0]["dst_port"], edge[0]["a"]["method"]) == ("random\\ranuser1", "::1", 444, "POST")
    assert edge[6]["a"]["method"] == "RPC_IN_DATA" and edge[6]["user"] == "RanDomain\\EX04$"
    assert edge[6]["a"]["time_taken"] == 886786 and edge[5]["a"]["win32_status"] == 214784354254
    assert [r["user"] for r in edge[-3:]] == ["random/ranuser1", "ranuser1@random", "random\\ranuser1"]
    assert got["iis6.log"][-1]["a"]["query"] == "ID=ERROR[`cat%20passwd|echo`]" and got["iis6.log"][-1]["a"]["site"] == "SOME1234NAME"
    assert got["iis6.log"][-1]["t"] == "2015-10-16T13:01:02.000000000Z"
    assert [r["t"] for r in got["iis7_owa.log"]] == [
        "2015-12-31T00:19:48.000000000Z", "2015-12-31T14:40:38.000000000Z", "2015-01-01T22:16:03.000000000Z"]
    assert got["iis7_owa.log"][0]["user"] == "domain.localjohndoe"
    assert got["iis7_sqli.log"][0]["a"]["query"].startswith("ID=1%27%20or%201%3D%40%40version--|22|80040e07|")
    nodate = got["iis_without_date.log"]
    assert [r["t"] for r in nodate][:3] == ["2013-07-30T00:00:00.000000000Z", "2013-07-30T00:00:03.000000000Z",
                                            "2013-07-30T00:00:03.000000000Z"]
    assert nodate[-1]["t"] == "2013-07-30T00:00:13.000000000Z" and nodate[-1]["a"]["method"] == "POST"
    assert nodate[0]["a"]["date_source"] == "date from the #Date header 2013-07-30 00:00:00"
    assert nodate[0]["a"]["protocol"] == "HTTP/1.1"


def test_atlassian_plaso(evidence: Path):
    d = evidence / "plaso/test_data"
    conf, rep = collect(d / "confluence_access.log")
    assert rep.errors == [] and len(conf) == 3 and {r["artifact"] for r in conf} == {"web:confluence-access"}
    r = conf[0]
    assert (r["t"], r["user"], r["src_ip"], r["path"], r["a"]["thread"], r["a"]["time_taken"], r["a"]["bytes"]) == (
        "2021-06-17T10:57:26.000000000Z", "user", "192.168.192.1", "/index.action", "http-nio-8080-exec-6", 1020, 7881)
    assert conf[1]["src_host"] == "test.example.com" and conf[1]["src_ip"] is None
    assert conf[2]["a"]["query"] == "since=1608256850024&_=1608256758069" and conf[2]["src_ip"] == "0:0:0:0:0:0:0:1"
    post, rep = collect(d / "confluence_access_post7.11.log")
    assert rep.errors == [] and [(r["a"]["forwarded_for"], r["user"], r["src_ip"]) for r in post] == [
        ("192.168.1.15", "testuser", "0:0:0:0:0:0:0:1")]
    jira, rep = collect(d / "jira_access.log")
    assert rep.errors == [] and {r["artifact"] for r in jira} == {"web:jira-access"}
    assert [(r["t"], r["user"], r["a"]["method"], r["a"]["status"], r["a"]["bytes"]) for r in jira] == [
        ("2022-10-03T09:00:01.000000000Z", "admin", "GET", 200, 12345),
        ("2022-10-03T09:00:15.000000000Z", None, "GET", 200, 4201),
        ("2022-10-03T09:01:30.000000000Z", "jdoe", "POST", 302, 0),
        ("2022-10-03T14:02:00.000000000Z", "admin", "DELETE", 204, None)]
    months, rep = collect(d / "jira_access_months.log")
    assert rep.errors == [] and [r["t"][:10] for r in months] == [f"2022-{m:02d}-01" for m in range(1, 13)]
    post, rep = collect(d / "jira_access_post9.4.log")
    assert rep.errors == [] and [(r["t"], r["a"]["forwarded_for"], r["user"]) for r in post] == [
        ("2022-10-03T09:00:01.000000000Z", "10.0.0.5", "admin"), ("2022-10-03T08:00:30.000000000Z", "10.0.0.6", None)]


# --- crowdsec's parser expectations --------------------------------------------------------------------

CROWDSEC_WEB = {"crowdsecurity/apache2-logs", "crowdsecurity/nginx-logs", "crowdsecurity/nginx-proxy-manager-logs",
                "hitech95/nginx-mail-logs"}
# Folders whose parser.assert holds expectations of a web parser (iis-xml-logs: IIS events exported from
# the Windows event log as XML, not a W3C log; apache-guacamole-logs: Guacamole's application log).
CROWDSEC_WEB_FOLDERS = {"apache2-logs", "apache2-malformed", "nginx-http-malformed", "nginx-mail-logs",
                        "nginx-proxy-manager-logs", "nginx-proxy-manager-malformed", "nginx_http-catch-npm",
                        "nginx_http-logs", "nginx_req_limit_exceeded"}
_ASSERT = re.compile(r'^results\["(s\d\d-\w+)"\]\["([^"]+)"\]\[(\d+)\]\.(Success|Evt\.(Parsed|Meta)\["([^"]+)"\]) == (.*)$')


def crowdsec_expectations(folder: Path, parsers: set[str]) -> tuple[str, dict[int, dict]]:
    """(parser, {index: {"ok": bool, "Parsed": {...}, "Meta": {...}}}) of a folder's s01-parse stage;
    indices also carry the raw line from the s00-raw stage when it is there (as ``line``)."""
    s01: dict[tuple[str, int], dict] = {}
    raw: dict[int, str] = {}
    for text in folder.joinpath("parser.assert").read_text(encoding="utf-8").splitlines():
        m = _ASSERT.match(text)
        if not m:
            continue
        stage, parser, idx, what, kind, field, value = m.groups()
        value = json.loads(value) if value.startswith('"') else value == "true"
        if stage == "s00-raw" and parser == "crowdsecurity/non-syslog" and field == "message":
            raw[int(idx)] = value
        if stage == "s01-parse" and parser in parsers:
            e = s01.setdefault((parser, int(idx)), {"ok": None, "Parsed": {}, "Meta": {}})
            if what == "Success":
                e["ok"] = value
            else:
                e[kind][field] = value
    names = {p for p, _ in s01}
    assert len(names) == 1, names
    out = {i: e for (_, i), e in s01.items()}
    for i, e in out.items():
        if i in raw:
            e["line"] = raw[i]
    return names.pop(), out


def align(entries: dict[int, dict], lines: list[str], time_key) -> dict[int, int]:
    """Index of crowdsec's entry → our line number: by the raw line when crowdsec recorded it, else the next
    line (in order) holding the entry's time string (crowdsec's filters skip some lines)."""
    out, pos = {}, 0
    for i in sorted(entries):
        e = entries[i]
        if not e["ok"]:
            continue
        needle = e.get("line") or time_key(e["Parsed"])
        while pos < len(lines) and (lines[pos] != needle if "line" in e else needle not in lines[pos]):
            pos += 1
        assert pos < len(lines), f"entry {i} not found in the log"
        out[i] = pos + 1
        pos += 1
    return out


def _crowdsec_time(p: dict) -> str:
    return p.get("time_local") or p.get("timestamp") or p.get("time")


def _expected_ns(s: str) -> int:
    for fmt in ("%d/%b/%Y:%H:%M:%S %z", "%a %b %d %H:%M:%S.%f %Y", "%Y/%m/%d %H:%M:%S"):
        try:
            d = dt.datetime.strptime(s, fmt)
        except ValueError:
            continue
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.timezone.utc)  # collected without a zone: UTC assumed (and flagged)
        return int(d.timestamp()) * 10**9 + d.microsecond * 1000
    raise AssertionError(f"unknown time format {s!r}")


def _crowdsec_folders(evidence: Path) -> list[Path]:
    root = evidence / "crowdsec-hub/.tests"
    found = []
    for d in sorted(root.iterdir()):
        pa_ = d / "parser.assert"
        if pa_.exists() and any(f'["s01-parse"]["{p}"]' in pa_.read_text(encoding="utf-8") for p in CROWDSEC_WEB):
            found.append(d)
    return found


def test_crowdsec_web_folders_found(evidence: Path):
    assert {d.name for d in _crowdsec_folders(evidence)} == CROWDSEC_WEB_FOLDERS


@pytest.mark.parametrize("folder", sorted(CROWDSEC_WEB_FOLDERS))
def test_crowdsec_web_parser_expectations(evidence: Path, folder: str):
    d = evidence / "crowdsec-hub/.tests" / folder
    log_file = next(d.glob("*.log"))
    assert collector_for(str(log_file)) is WebCollector
    rows, rep = collect(log_file)
    text = log_file.read_bytes().decode("utf-8").splitlines()
    # every line of these logs is a web log line: nothing is lost, one row per non-empty line
    assert rep.errors == []
    assert len(rows) == sum(1 for t in text if t.strip())
    by_line = {int(r["record_ref"][5:]): r for r in rows}
    parser, entries = crowdsec_expectations(d, CROWDSEC_WEB)
    mapping = align(entries, text, _crowdsec_time)
    assert mapping, "crowdsec parsed no line of this folder"
    checked = 0
    for i, n in mapping.items():
        p, r = entries[i]["Parsed"], by_line[n]
        a = r["a"]
        ip = p.get("clientip") or p.get("remote_addr") or p.get("client")
        if ip is not None:
            assert (r["src_ip"] or r["src_host"]) == ip, (folder, n)
        if "verb" in p:
            assert a["method"] == p["verb"], (folder, n)
        if "request" in p:
            ours = a["uri"] if a.get("method") else a["request"]
            if a["format"] == "nginx-error" and p["request"].startswith("//"):
                ours = re.sub(r"^https?:", "", ours)  # crowdsec's error-log pattern drops the scheme of an absolute target
            assert ours == p["request"], (folder, n)
        if "rawrequest" in p:
            assert a["request"] == p["rawrequest"], (folder, n)
        status = p.get("response") or p.get("status")
        if status is not None:
            assert str(a["status"]) == status, (folder, n)
        nbytes = p.get("bytes") or p.get("body_bytes_sent")
        if nbytes is not None:
            assert str(a["bytes"]) == nbytes, (folder, n)
        if "http_user_agent" in p:
            assert (a["user_agent"] or "-") == p["http_user_agent"], (folder, n)
        referer = p.get("referrer") or p.get("http_referer")
        if referer is not None:
            assert (a["referer"] or "-") == referer, (folder, n)
        if "remote_user" in p:
            assert (r["user"] or "-") == p["remote_user"], (folder, n)
        if "username" in p:
            assert r["user"] == p["username"], (folder, n)
        assert r["timestamp"].value == _expected_ns(_crowdsec_time(p)), (folder, n)
        checked += 1
    assert checked == len(mapping)


def test_crowdsec_other_web_logs_read_whole(evidence: Path):
    """The scenario folders without parser expectations: every web log is read with no line lost."""
    root = evidence / "crowdsec-hub/.tests"
    totals = {}
    for d in sorted(root.iterdir()):
        if not re.match(r"(apache|nginx|http)", d.name) or d.name in CROWDSEC_WEB_FOLDERS:
            continue
        for log_file in d.glob("*.log"):
            if collector_for(str(log_file)) is not WebCollector:
                continue
            rows, rep = collect(log_file)
            assert rep.errors == [], (d.name, rep.errors[:3])
            assert len(rows) == sum(1 for t in log_file.read_text(encoding="utf-8").splitlines() if t.strip())
            totals[d.name] = len(rows)
    assert len(totals) == 25 and sum(totals.values()) == 675


# --- formats on generated lines ----------------------------------------------------------------------------


def test_request_and_uri_helpers():
    assert parse_request("GET /shell.jsp?cmd=id HTTP/1.1") == ("GET", "/shell.jsp?cmd=id", "HTTP/1.1")
    assert parse_request("GET /") == ("GET", "/", None)
    assert parse_request("PROPFIND /dav/a b.txt HTTP/1.1") == ("PROPFIND", "/dav/a b.txt", "HTTP/1.1")
    for bad in ("-", "", "HELP", "batman", "\\x16\\x03\\x01", "get / HTTP/1.1"):
        assert parse_request(bad) == (None, None, None)
    assert split_uri("/a/b.php?x=1#f") == ("/a/b.php", "x=1", None)
    assert split_uri("http://evil.example:8080/p?q") == ("/p", "q", "evil.example:8080")
    assert split_uri("https://h") == ("/", None, "h")
    assert split_uri("www.example.com:443") == (None, None, None)  # CONNECT authority


def test_generated_lines(tmp_path: Path):
    log = tmp_path / "access.log"
    log.write_bytes(
        b'10.0.0.5 - bob [23/Nov/2022:07:00:00.250 +0530] "POST /uploads/shell.jsp?cmd=id HTTP/1.1" 200 1234 "-" '
        b'"curl/7.1" "198.51.100.7" 0.004\n'
        b'\n'
        b'2001:db8::1 - - [23/Nov/2022:07:00:01 +0000] "-" 400 0 "-" "-"\n'
        b'this is not a web log line\n'
        b'10.0.0.6 - - [31/Feb/2022:07:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
        b'10.0.0.5 - bob [23/Nov/2022:07:00:00.250 +0530] "POST /uploads/shell.jsp?cmd=id HTTP/1.1" 200 1234 "-" '
        b'"curl/7.1" "198.51.100.7" 0.004\n'
        b'[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 123:tid 7] [client 1.2.3.4:5678] AH00037: Symbolic link not allowed\n'
        b'[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/x\n')
    rows, rep = collect(log)
    assert [(e.record_ref, e.kind) for e in rep.errors] == [("line=4", "unparsed_line"), ("line=5", "bad_time")]
    assert "not a recognised web log line: 'this is not a web log line'" in rep.errors[0].message
    assert "day is out of range for month" in rep.errors[1].message
    assert len(rows) == 5
    r = rows[0]
    assert (r["t"], r["user"], r["src_ip"], r["path"], r["artifact"], r["tz_source"]) == (
        "2022-11-23T01:30:00.250000000Z", "bob", "10.0.0.5", "/uploads/shell.jsp", "web:access", "embedded_offset")
    assert r["message"] == 'POST /uploads/shell.jsp?cmd=id 200 1234 from 10.0.0.5 "curl/7.1"'
    assert r["a"]["extra"] == '"198.51.100.7" 0.004' and r["command_line"] is None
    # the same line twice is two requests: two rows, two identities (the second counts the first)
    line1 = log.read_text().splitlines()[0]
    assert r["event_hash"] == event_hash("WEB", None, r["timestamp"].value, line1, 0)
    assert rows[2]["record_ref"] == "line=6" and rows[2]["event_hash"] == event_hash("WEB", None, r["timestamp"].value, line1, 1)
    r = rows[1]
    assert (r["src_ip"], r["a"]["request"], r["a"]["method"], r["path"], r["a"]["status"]) == ("2001:db8::1", "-", None, None, 400)
    e1, e2 = rows[3], rows[4]
    assert (e1["t"], e1["artifact"], e1["tz_source"], e1["src_ip"], e1["timestamp_desc"]) == (
        "2000-10-11T14:32:52.123456000Z", "web:apache-error", "assumed_utc", "1.2.3.4", "Event Logged")
    assert (e1["a"]["module"], e1["a"]["level"], e1["a"]["pid"], e1["a"]["tid"], e1["a"]["client_port"], e1["a"]["code"]) == (
        "core", "error", 123, 7, 5678, "AH00037")
    assert (e2["src_ip"], e2["a"]["level"], e2["a"]["module"]) == ("127.0.0.1", "error", None)


def test_iis_fields_change_mid_file(tmp_path: Path):
    log = tmp_path / "u_ex221123.log"
    log.write_text(
        "#Software: Microsoft Internet Information Services 10.0\n"
        "#Fields: date time c-ip cs-method cs-uri-stem sc-status\n"
        "2022-11-23 01:30:00 203.0.113.9 POST /aspnet_client/x.aspx 200\n"
        "2022-11-23 01:30:01 203.0.113.9 GET\n"
        "#Fields: date time s-computername c-ip cs-username cs-method cs-uri-stem cs-uri-query sc-status sc-bytes\n"
        "2022-11-23 01:31:00 WEB01 203.0.113.9 CORP\\svc GET /owa/auth/x.js a=1 404 512\n")
    rows, rep = collect(log)
    assert [(e.record_ref, e.kind) for e in rep.errors] == [("line=4", "bad_fields")]
    assert rep.errors[0].message.startswith("4 values for the 6 #Fields date time c-ip cs-method cs-uri-stem sc-status")
    assert [(r["t"], r["path"], r["a"]["status"], r["host"], r["user"]) for r in rows] == [
        ("2022-11-23T01:30:00.000000000Z", "/aspnet_client/x.aspx", 200, None, None),
        ("2022-11-23T01:31:00.000000000Z", "/owa/auth/x.js", 404, "WEB01", "CORP\\svc")]
    assert rows[1]["message"] == "GET /owa/auth/x.js?a=1 404 512 from 203.0.113.9"


def test_not_web_logs(evidence: Path, tmp_path: Path):
    fw = evidence / "plaso/test_data/windows_firewall.log"  # W3C-like, but not a web server's
    assert not WebCollector.matches(str(fw))
    syslog = tmp_path / "messages"
    syslog.write_text("Nov 23 07:00:00 web01 nginx[12]: 1.2.3.4 - - [23/Nov/2022:07:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n")
    assert not WebCollector.matches(str(syslog))  # a syslog line (the syslog collector's)


def test_nginx_error_in_kolkata(tmp_path: Path):
    """An nginx error log has no zone: read in the analyst's --tz (Asia/Kolkata, +05:30)."""
    import forensics

    ev = tmp_path / "ev" / "nginx"
    ev.mkdir(parents=True)
    (ev / "error.log").write_text(
        '2022/11/23 07:00:00 [error] 1234#0: *7 open() "/var/www/html/shell.php" failed (2: No such file or directory), '
        'client: 203.0.113.9, server: _, request: "GET /shell.php?c=id HTTP/1.1", host: "web01"\n')
    case = forensics.Case(tmp_path / "case", create=True)
    case.collect([tmp_path / "ev"], workers=1, tz="Asia/Kolkata")
    t = case.timeline().to_pylist()
    assert len(t) == 1
    r = t[0]
    assert (iso_ns(r["timestamp"].value), r["tz_source"], r["artifact"], r["src_ip"], r["path"]) == (
        "2022-11-23T01:30:00.000000000Z", "analyst", "web:nginx-error", "203.0.113.9", "/shell.php")
    a = json.loads(r["attrs"])
    assert (a["level"], a["pid"], a["connection"], a["server"], a["host"], a["method"], a["query"]) == (
        "error", 1234, 7, "_", "web01", "GET", "c=id")


def test_case_rotated_gzip_and_iis(tmp_path: Path):
    """A loose folder: a gzipped rotated nginx access log and an IIS log, with malformed lines."""
    import forensics

    ev = tmp_path / "logs"
    (ev / "nginx").mkdir(parents=True)
    (ev / "iis").mkdir()
    with gzip.open(ev / "nginx" / "access.log.2.gz", "wb") as fh:
        fh.write(b'203.0.113.9 - - [23/Nov/2022:07:00:00 +0530] "GET /index.php HTTP/1.1" 200 512 "-" "sqlmap/1.6"\n'
                 b'203.0.113.9 - - [23/Nov/2022:07:00:01 +0530] "\\x16\\x03\\x01" 400 157 "-" "-"\n'
                 b'GARBAGE LINE\n'
                 b'203.0.113.9 - admin [23/Nov/2022:07:00:02 +0530] "POST /admin/upload.php HTTP/1.1" 302 0 "-" "sqlmap/1.6"\n')
    (ev / "iis" / "u_ex221123.log").write_text(
        "#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n#Date: 2022-11-23 01:30:00\n"
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status time-taken\n"
        "2022-11-23 01:30:05 10.1.1.1 POST /owa/auth/shell.aspx cmd=whoami 443 - 203.0.113.9 python-requests/2.28 200 31\n"
        "2022-11-23 01:30:06 10.1.1.1 GET /owa/\n")
    case = forensics.Case(tmp_path / "case", create=True)
    rep = case.collect([ev], workers=1)
    assert rep.rows_written == 4 and rep.errors == 2
    t = sorted(case.timeline().to_pylist(), key=lambda r: (r["timestamp"], r["record_ref"]))
    assert [(iso_ns(r["timestamp"].value), r["artifact"], r["tz_source"], r["evidence_path"], r["record_ref"]) for r in t] == [
        ("2022-11-23T01:30:00.000000000Z", "web:nginx-access", "embedded_offset", "nginx/access.log.2.gz", "line=1"),
        ("2022-11-23T01:30:01.000000000Z", "web:nginx-access", "embedded_offset", "nginx/access.log.2.gz", "line=2"),
        ("2022-11-23T01:30:02.000000000Z", "web:nginx-access", "embedded_offset", "nginx/access.log.2.gz", "line=4"),
        ("2022-11-23T01:30:05.000000000Z", "web:iis", "source_utc", "iis/u_ex221123.log", "line=5"),
    ]
    assert [r["user"] for r in t] == [None, None, "admin", None]
    assert {r["source"] for r in t} == {"WEB"} and {r["parser"].split("/")[0] for r in t} == {"forensics-web"}
    assert t[3]["message"] == 'POST /owa/auth/shell.aspx?cmd=whoami 200 - from 203.0.113.9 "python-requests/2.28"'
    probs = sorted(case.problems().to_pylist(), key=lambda p: p["evidence_path"])
    assert [(p["severity"], p["evidence_path"], p["record_ref"], p["kind"], p["parser"]) for p in probs] == [
        ("error", "iis/u_ex221123.log", "line=6", "bad_fields", "web"),
        ("error", "nginx/access.log.2.gz", "line=3", "unparsed_line", "web"),
    ]
    assert probs[0]["message"].startswith("5 values for the 12 #Fields date time s-ip")
    assert probs[1]["message"] == "not a recognised web log line: 'GARBAGE LINE'"
    assert case.verify().ok


def test_logs_inside_a_triage_archive(tmp_path: Path, evidence: Path):
    """A tar of /var/log: its web and audit logs reach these collectors through the target collector."""
    import tarfile

    import forensics

    src = tmp_path / "src"
    (src / "var/log/nginx").mkdir(parents=True)
    (src / "var/log/audit").mkdir(parents=True)
    (src / "var/log/nginx/access.log").write_text(
        '203.0.113.9 - - [23/Nov/2022:07:00:00 +0530] "GET /shell.php?cmd=id HTTP/1.1" 200 12 "-" "curl/7.1"\n')
    (src / "var/log/audit/audit.log").write_bytes((evidence / "plaso/test_data/audit_enriched.log").read_bytes())
    with tarfile.open(tmp_path / "triage.tar", "w") as tar:
        tar.add(src / "var", arcname="var")
    case = forensics.Case(tmp_path / "case", create=True)
    case.collect([tmp_path / "triage.tar"], workers=1)
    t = case.timeline().to_pylist()
    web = [r for r in t if r["source"] == "WEB"]
    audit = [r for r in t if r["source"] == "AUDIT"]
    assert [(iso_ns(r["timestamp"].value), r["artifact"], r["evidence_path"], r["path"]) for r in web] == [
        ("2022-11-23T01:30:00.000000000Z", "web:nginx-access", "/var/log/nginx/access.log", "/shell.php")]
    assert len(audit) == 12 and {r["evidence_path"] for r in audit} == {"/var/log/audit/audit.log"}
    arts = {a["evidence_path"]: a for a in case.store.commits()[-1]["artifacts"]}
    assert arts["/var/log/nginx/access.log"]["collector"] == "web" and arts["/var/log/audit/audit.log"]["collector"] == "auditd"
