"""web_attacks over web-server rows: scanners, uploads, web shells, tunnels (generated access log)."""

from __future__ import annotations

import json

import pandas as pd

from forensics.hunt import story, web_attacks


def _row(ts, ip, method, url, status=200, ua="Mozilla/5.0", query="", host="ehosp-web01", n=0):
    from timeline.schema import COLUMNS

    return {**{c[0]: None for c in COLUMNS}, "timestamp_desc": "Request Received", "tags": [], "timestamp": pd.Timestamp(ts, tz="UTC"), "host": host, "source": "WEB", "artifact": "web:nginx-access",
            "event_id": None, "channel": None, "path": url, "src_ip": ip, "user": None, "target_user": None,
            "logon_type": None, "src_host": None, "message": f"{method} {url}", "command_line": None,
            "service_name": None, "process": None, "parent_process": None,
            "attrs": json.dumps({"method": method, "uri": url + ("?" + query if query else ""), "query": query,
                                 "status": status, "user_agent": ua}),
            "evidence_id": "e1", "evidence_path": "/var/log/nginx/access.log", "record_ref": f"line={n}"}


def access_log() -> pd.DataFrame:
    rows = [_row("2022-11-22 08:00:00", "10.1.1.10", "GET", "/ehospital/index.jsp", n=1),
            _row("2022-11-22 09:00:00", "10.1.1.11", "POST", "/ehospital/login.jsp", n=2)]
    n = 3
    for i in range(40):  # a scanner sweeping the site
        rows.append(_row(f"2022-11-23 01:00:{i:02d}", "203.0.113.7", "GET", f"/probe{i}.php", 404,
                         ua="Mozilla/5.00 (Nikto/2.1.6)", n=n)); n += 1
    rows.append(_row("2022-11-23 01:20:00", "203.0.113.7", "POST", "/manager/html/upload", 200, n=n)); n += 1
    rows.append(_row("2022-11-23 01:21:00", "203.0.113.7", "POST", "/cmd/shell.jsp", 200, query="cmd=id", n=n)); n += 1
    rows.append(_row("2022-11-23 01:22:00", "203.0.113.7", "POST", "/cmd/shell.jsp", 200, n=n)); n += 1
    for i in range(1200):  # a reGeorg-style tunnel
        rows.append(_row(pd.Timestamp("2022-11-23 01:30:00") + pd.Timedelta(seconds=i), "203.0.113.7", "POST",
                         "/cmd/tunnel.jsp", 200, query="cmd=read&target=10.0.0.10&port=3389", n=n)); n += 1
    return pd.DataFrame(rows)


def test_web_attacks_finds_scanner_upload_shell_and_tunnel():
    wa = web_attacks(access_log())
    got = [(r.finding, r.url, r.src_ip, r.requests) for r in wa.itertuples()]
    assert got == [("scanner", "/probe0.php", "203.0.113.7", 40),
                   ("upload", "/manager/html/upload", "203.0.113.7", 1),
                   ("web shell", "/cmd/shell.jsp", "203.0.113.7", 2),
                   ("web shell", "/cmd/tunnel.jsp", "203.0.113.7", 1200),
                   ("tunnel", "/cmd/tunnel.jsp", "203.0.113.7", 1200)]
    shell = wa[wa.finding == "web shell"].iloc[0]
    assert shell["first"] == pd.Timestamp("2022-11-23 01:21:00", tz="UTC") and shell.record_ref == "line=44"
    assert "after an upload" in shell.detail and "command parameters" in shell.detail
    # the established application's pages are not findings
    assert not wa.url.isin(["/ehospital/index.jsp", "/ehospital/login.jsp"]).any()
    st = story(access_log())
    assert list(st.technique) == ["T1595", "T1105", "T1505.003", "T1505.003", "T1572"]


def test_web_attacks_on_an_empty_or_webless_frame():
    assert web_attacks(access_log().iloc[0:0]).empty


def test_web_attacks_on_a_collected_nginx_log(tmp_path):
    """The same questions over rows the web collector produced from a real log file."""
    from forensics import Case, open as open_case

    log = tmp_path / "evidence" / "nginx" / "access.log"
    log.parent.mkdir(parents=True)
    lines = ['10.20.1.5 - - [22/Nov/2022:13:30:00 +0530] "GET /ehospital/index.jsp HTTP/1.1" 200 512 "-" "Mozilla/5.0"']
    for i in range(30):
        lines.append(f'203.0.113.7 - - [23/Nov/2022:06:55:{i:02d} +0530] "GET /probe{i}.php HTTP/1.1" 404 12 "-" '
                     '"Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"')
    lines.append('203.0.113.7 - - [23/Nov/2022:07:18:12 +0530] "POST /manager/html/upload HTTP/1.1" 200 8123 "-" "Mozilla/5.0"')
    lines.append('203.0.113.7 - - [23/Nov/2022:07:18:52 +0530] "POST /ehospital/uploads/cmd.jsp?cmd=id HTTP/1.1" 200 40 "-" "Mozilla/5.0"')
    log.write_text("\n".join(lines) + "\n")
    Case(tmp_path / "case", create=True).collect([tmp_path / "evidence"], workers=1)
    wa = open_case(tmp_path / "case").web_attacks()
    assert [(r.finding, r.url, r.requests) for r in wa.itertuples()] == [
        ("scanner", "/probe0.php", 30), ("upload", "/manager/html/upload", 1), ("web shell", "/ehospital/uploads/cmd.jsp", 1)]
    shell = wa[wa.finding == "web shell"].iloc[0]
    assert shell["first"] == pd.Timestamp("2022-11-23 01:48:52", tz="UTC")  # 07:18:52 +0530
    assert shell.evidence_path == "nginx/access.log" and shell.record_ref == "line=33"
