"""The HTML report: rendered by headless Chromium without console errors or network requests, a
screenshot taken, its numbers equal to ``forensics info``'s; hostile evidence text stays text; the
report is recorded in the custody log and re-checked by verify."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

import forensics
from forensics.cli import main
from forensics.report import render_report, write_report
from timeline.schema import RowBuilder
from timeline.store import CaseStore, file_sha256, write_parquet

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FORENSICS_ARTIFACTS", ROOT / "build" / "test-artifacts"))


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``):
    commands on fd 3, replies and events on fd 4, each message JSON ending in a NUL byte."""

    def __init__(self, exe: Path, profile: Path):
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def fds():  # in the child: the pipe ends as fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [str(exe), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._read(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def render(exe: Path, page: Path, tmp: Path, screenshot: Path | None = None, pdf: Path | None = None) -> dict:
    """Open ``page`` in headless Chromium; return its console errors, requests and report numbers."""
    browser = Chromium(exe, tmp / "chromium-profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=sid)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 4000, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        browser.send("Page.navigate", {"url": page.as_uri()}, session=sid)
        browser.wait_for("Page.loadEventFired")
        data = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": """JSON.stringify({
            info: Object.fromEntries([...document.querySelectorAll('[data-info]')].map(e => [e.dataset.info, e.textContent])),
            hosts: Object.fromEntries([...document.querySelectorAll('tr[data-host]')].map(e => [e.dataset.host, e.cells[1].textContent])),
            artifacts: Object.fromEntries([...document.querySelectorAll('tr[data-artifact]')].map(e => [e.dataset.artifact, e.cells[1].textContent])),
            problems: Object.fromEntries([...document.querySelectorAll('tr[data-problem]')].map(e => [e.dataset.problem, e.cells[1].textContent])),
            evidence: [...document.querySelectorAll('tr[data-evidence]')].map(e => [...e.cells].map(c => c.textContent)),
            images: [...document.images].map(i => [i.src.slice(0, 22), i.naturalWidth]),
            scripts: document.scripts.length,
            text: document.body.innerText})"""}, session=sid)["result"]["value"]
        if screenshot is not None:
            shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=sid)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        if pdf is not None:  # printed with the print stylesheet (A4 landscape)
            printed = browser.send("Page.printToPDF", {"preferCSSPageSize": True}, session=sid, timeout=120)
            pdf.write_bytes(base64.b64decode(printed["data"]))
        time.sleep(0.2)  # let late console or network events arrive
        browser.send("Runtime.evaluate", {"expression": "1"}, session=sid)
    finally:
        browser.close()
    errors = []
    for e in browser.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            errors.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            errors.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            errors.append(f"log {p['entry']['level']}: {p['entry']['text']}")
        elif m == "Network.loadingFailed":
            errors.append(f"load failed: {p.get('errorText')}")
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    return {"errors": errors, "requests": requests, **json.loads(data)}


def _markup(text: str) -> tuple[set[str], list[str]]:
    """The tag names of a page and the values of its src/href attributes, as a browser's parser sees them."""
    from html.parser import HTMLParser

    tags, urls = set(), []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.add(tag)
            urls.extend(v for k, v in attrs if k in ("src", "href", "srcset", "data", "action", "poster"))

    P().feed(text)
    return tags, urls


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_checker_sees_console_errors_and_fetches(chromium, tmp_path):
    """The checks below can fail: a page that logs an error and fetches an image from elsewhere is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><p>x</p><script>console.error("boom")</script>'
                    '<img src="http://127.0.0.1:9/x.png"></body></html>')
    got = render(chromium, page, tmp_path)
    assert any("console.error: ['boom']" in e for e in got["errors"])
    assert any("load failed" in e for e in got["errors"])
    assert "http://127.0.0.1:9/x.png" in got["requests"]


def test_report_of_the_corpus_renders_and_matches_info(corpus_case, chromium, tmp_path):
    case, _ = corpus_case
    case_dir = tmp_path / "case"
    shutil.copytree(case.path, case_dir)  # the session's case stays untouched by this report's custody entry
    out = tmp_path / "report.html"
    info = forensics.Case(case_dir).info()  # forensics info --json, as the report was written
    entry = write_report(case_dir, out)
    shot = tmp_path / "report.png"
    got = render(chromium, out, tmp_path, screenshot=shot, pdf=tmp_path / "report.pdf")
    assert got["errors"] == []
    assert got["requests"] == [out.as_uri()] or set(got["requests"]) <= {out.as_uri()} | {
        u for u in got["requests"] if u.startswith("data:")}
    assert got["scripts"] == 0
    # the report's numbers are forensics info's numbers
    i = got["info"]
    for key in ("rows", "records_read", "sightings", "collections", "errors", "warnings"):
        assert _num(i[key]) == info[key], key
    assert _num(i["evidence_items"]) == len(info["evidence"])
    assert (i["first"], i["last"]) == (info["first"], info["last"])
    assert i["custody_head"] == info["custody_head"] == entry["prev"]  # the head before the report's own entry
    assert {h: _num(n) for h, n in got["hosts"].items()} == info["hosts"]
    assert {a: _num(n) for a, n in got["artifacts"].items()} == info["artifacts"]
    assert {k: _num(n) for k, n in got["problems"].items()} == info["problems_by_kind"]
    assert [[r[0], r[1], _num(r[2]), _num(r[3])] for r in got["evidence"]] == [
        [e["evidence_id"], e["path"], e["files"], e["bytes"]] for e in info["evidence"]]
    assert info["rows"] == 26024 and len(info["hosts"]) > 5
    # the figures are embedded PNGs that decoded; the story and findings are there
    assert [src for src, _ in got["images"]] == ["data:image/png;base64,"] * 2
    assert all(width > 500 for _, width in got["images"])
    story = forensics.open(case_dir).story()
    assert f"{len(story):,} findings, in time order" in got["text"]
    assert "Lateral movement" in got["text"] and ">T1490<" in out.read_text(encoding="utf-8")  # past the first 100: collapsed
    first = story.iloc[0]
    assert first["local_time"].isoformat() in got["text"] and first["timestamp"].isoformat() in got["text"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    printed = (tmp_path / "report.pdf").read_bytes()
    assert printed.startswith(b"%PDF") and printed.count(b"/Type /Page\n") > 10  # page objects (68 for the corpus)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report-corpus.png")
    shutil.copy(tmp_path / "report.pdf", ARTIFACTS / "report-corpus.pdf")
    shutil.copy(out, ARTIFACTS / "report-corpus.html")
    print(f"report screenshot: {ARTIFACTS / 'report-corpus.png'}")


@pytest.fixture
def hostile_case(tmp_path):
    """A case whose evidence text is markup and script: a service, a logon and a host name an attacker chose."""
    store = CaseStore.create(tmp_path / "case", tz="Asia/Kolkata")
    rb = RowBuilder()
    evil = "<script>console.error('pwned')</script><img src=x onerror=alert(1)>"
    common = dict(timestamp_desc="Event Logged", source="EVTX", attrs="{}", tags=[], tz_source="source_utc",
                  evidence_id="ev1", parser="test")
    rb.add(timestamp=1_669_167_000_000_000_000, host='"><b>HOSP</b>', artifact="evtx:System", event_id=7045,
           channel="System", service_name=evil, path="C:\\x\\<iframe src=http://127.0.0.1:9/>.exe",
           message="7045 " + evil, evidence_path="System.evtx", record_ref="record=1", event_hash="a" * 32, **common)
    rb.add(timestamp=1_669_167_060_000_000_000, host="হাসপাতাল-SRV", artifact="evtx:Security", event_id=4624,
           channel="Security", logon_type=10, user="डॉक्टर<u>", src_ip="203.0.113.7", message="4624 লগইন",
           evidence_path="Security.evtx", record_ref="record=2", event_hash="b" * 32, **common)
    staging = store.staging_dir("r1")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("r1", [staging / "tl-0.parquet"], [])
    return tmp_path / "case"


def test_hostile_evidence_stays_text(hostile_case, chromium, tmp_path):
    out = tmp_path / "report.html"
    write_report(hostile_case, out)
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html and "<iframe" not in html and "<u>" not in html and "<b>HOSP" not in html
    assert "&lt;script&gt;console.error(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    got = render(chromium, out, tmp_path, screenshot=tmp_path / "hostile.png")
    assert got["errors"] == [] and got["scripts"] == 0
    assert all(u == out.as_uri() or u.startswith("data:") for u in got["requests"])
    text = got["text"]
    assert "service installed: <script>console.error('pwned')</script><img src=x onerror=alert(1)>" in text
    assert "success\tremote interactive (RDP)\tडॉक्टर<u>\t203.0.113.7\t1" in text  # Hindi and markup as written
    assert '"><b>HOSP</b>' in text and "হাসপাতাল-SRV" in text
    assert "2022-11-23T07:00:00+05:30" in text and "2022-11-23T01:30:00+00:00" in text  # local and UTC
    # two-line times (Asia/Kolkata and UTC), Bengali and Hindi text: still no squeezed cell, no sideways scroll
    got = layout(chromium, out, tmp_path, tmp_path / "hostile-1400.png")
    assert got["narrow"] == [] and got["width"] <= 1400 and got["sideways"] == [] and len(got["first"]) == 2
    assert all(bottom <= 900 for _, bottom, _ in got["first"]) and not [t for t in got["texts"] if t in BAD_CELLS]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "hostile.png", ARTIFACTS / "report-hostile.png")
    print(f"report screenshot: {ARTIFACTS / 'report-hostile.png'}")


def test_report_is_self_contained_and_custody_logged(hostile_case, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(hostile_case), "-o", str(out), "--tz", "UTC"]) == 0
    entry = list(CaseStore(hostile_case).custody.entries())[-1]
    assert entry["action"] == "report" and entry["output"] == {
        "path": str(out), "sha256": file_sha256(out), "bytes": out.stat().st_size}
    assert entry["tz"] == "UTC" and entry["command"] == ["forensics", "report", str(hostile_case), "-o", str(out), "--tz", "UTC"]
    assert capsys.readouterr().out.startswith(f"wrote {out} ({out.stat().st_size} bytes, sha256 {file_sha256(out)}); "
                                              f"custody entry #{entry['seq']}")
    html = out.read_text(encoding="utf-8")
    assert "http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:;" in html
    tags, urls = _markup(html)  # nothing to fetch: images are data: URIs, links are in-page anchors
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span", "nav", "a", "br",
                    "section", "div", "details", "summary", "table", "colgroup", "col", "thead", "tbody", "tr", "th", "td",
                    "figure", "img", "figcaption"}
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in urls) and any(u.startswith("#") for u in urls)
    assert "@media print" in html
    assert main(["verify", str(hostile_case)]) == 0
    assert "1 export(s) re-checked" in capsys.readouterr().out
    out.write_text(html.replace("Case report", "Case rep0rt"), encoding="utf-8")
    assert main(["verify", str(hostile_case)]) == 7
    assert f"FAIL: export {out}: SHA-256 differs from custody entry #{entry['seq']}" in capsys.readouterr().err


def test_render_report_of_an_empty_case(tmp_path):
    forensics.Case(tmp_path / "c", create=True)
    html = render_report(tmp_path / "c")
    assert 'data-info="rows" data-value="0">0<' in html and "no findings" in html


# --- layout, cells, scope ------------------------------------------------------------------------------------

# SigmaHQ rules that match the corpus: PsExec service, shadow copy deletion, event log cleared, PowerShell
# invocations, shadow copy mounts (many, low), failed logon reasons
SIGMA_RULES = ["windows/builtin/system/service_control_manager/win_system_service_install_sysinternals_psexec.yml",
               "windows/process_creation/proc_creation_win_susp_shadow_copies_deletion.yml",
               "windows/builtin/system/microsoft_windows_eventlog/win_system_susp_eventlog_cleared.yml",
               "windows/powershell/powershell_script/posh_ps_susp_invocation_specific.yml",
               "windows/builtin/system/microsoft_windows_ntfs/win_system_volume_shadow_copy_mount.yml",
               "windows/builtin/security/win_security_susp_failed_logon_reasons.yml"]
SECTIONS = ["Attack story", "Activity", "Logons and brute force", "Lateral movement", "Credential access",
            "Persistence: services and tasks", "PowerShell", "Log clearing and recovery inhibition", "Web attacks",
            "Encryption", "Sigma detections", "Case data", "Evidence and hashes", "Custody log"]


@pytest.fixture(scope="module")
def sigma_case(corpus_case, sigma_dir, tmp_path_factory):
    """A copy of the corpus case with the matches of six SigmaHQ rules saved (``hunt --sigma --save``), and
    the run itself (to compare the report with)."""
    from forensics import sigma

    case, _ = corpus_case
    case_dir = tmp_path_factory.mktemp("sigma-case") / "case"
    shutil.copytree(case.path, case_dir)
    rules = [sigma_dir / "rules" / r for r in SIGMA_RULES]
    result = sigma.run(forensics.open(case_dir), rules=rules)
    sigma.save(forensics.open(case_dir), result, rules=rules)
    return case_dir, result


LAYOUT_JS = r"""(() => {
  const probe = el => { const s = document.createElement('span'); s.textContent = '00000000';
    s.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap;font:inherit'; el.appendChild(s);
    const w = s.getBoundingClientRect().width; s.remove(); return w; };
  const first = [...document.querySelectorAll('#story-table tbody tr')].slice(0, 3).map(r => {
    const b = r.getBoundingClientRect(); return [b.top, b.bottom, r.cells[4].textContent]; });
  const shut = [...document.querySelectorAll('details')].filter(d => !d.open);
  shut.forEach(d => d.open = true);  // every table and provenance cell open: all measured
  const narrow = []; let cells = 0;
  for (const c of document.querySelectorAll('td, th')) {
    const r = c.getBoundingClientRect(); if (!r.width) continue; cells++;
    const cs = getComputedStyle(c);
    const inner = r.width - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)
                  - parseFloat(cs.borderLeftWidth) - parseFloat(cs.borderRightWidth);
    const need = probe(c);  // eight digits in the cell's own font
    if (inner + 0.5 < need) narrow.push([c.closest('section')?.id, c.cellIndex, Math.round(inner), Math.round(need),
                                         c.textContent.slice(0, 40)]);
  }
  const texts = [...document.querySelectorAll('td')].map(c => c.textContent.trim());
  const width = document.documentElement.scrollWidth;
  const sideways = [...document.querySelectorAll('.wrap')].filter(w => w.scrollWidth > w.clientWidth + 1)
                   .map(w => w.closest('section')?.id);  // tables scrolling inside their frame
  shut.forEach(d => d.open = false);
  return JSON.stringify({first, narrow, cells, width, sideways, texts, viewport: innerWidth,
    height: document.documentElement.scrollHeight,
    sections: [...document.querySelectorAll('h2')].map(h => h.textContent),
    story: [...document.querySelectorAll('tr[data-detector]')].map(r => [r.dataset.detector, r.dataset.level]),
    rules: document.querySelectorAll('#sigma-rules tbody tr').length});
})()"""


def layout(exe: Path, page: Path, tmp: Path, screenshot: Path) -> dict:
    """The report as a 1400x900 screen shows it, measured in the page."""
    browser = Chromium(exe, tmp / "chromium-layout")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", session=sid)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        browser.send("Page.navigate", {"url": page.as_uri()}, session=sid)
        browser.wait_for("Page.loadEventFired")
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=sid)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        got = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": LAYOUT_JS}, session=sid)
    finally:
        browser.close()
    return json.loads(got["result"]["value"])


BAD_CELLS = {"None", "nan", "NaN", "NaT", "<NA>", "null"}


def test_report_reads_at_1400px(sigma_case, chromium, tmp_path):
    """The summary and the story's first rows fit the first 1400x900 screen; no cell (every collapsed table
    and provenance cell opened) is narrower than eight characters; nothing scrolls sideways; sections in
    order; the Sigma detections saved in the case are in the story (with levels) and grouped by rule."""
    from forensics import sigma

    case_dir, result = sigma_case
    out = tmp_path / "report.html"
    write_report(case_dir, out)
    shot = tmp_path / "report-1400.png"
    got = layout(chromium, out, tmp_path, shot)
    assert got["viewport"] == 1400 and got["width"] <= 1400 and got["sideways"] == []
    assert len(got["first"]) == 3 and all(0 < top and bottom <= 900 for top, bottom, _ in got["first"])
    assert got["narrow"] == [] and got["cells"] > 1000
    assert got["sections"] == SECTIONS
    assert not [t for t in got["texts"] if t in BAD_CELLS]
    html = out.read_text(encoding="utf-8")
    assert "&amp;gt;" not in html and "&amp;lt;" not in html and "&amp;amp;" not in html
    # the story: the curated findings and the saved Sigma detections in bursts, with their levels
    expected = sigma.findings(result)
    curated = forensics.open(case_dir).story(sigma=False)
    assert result.rules_matched == 6 and len(result.matches) == 23 and len(expected) == 16
    assert len(got["story"]) == len(curated) + len(expected) == 178
    assert sorted(lv for d, lv in got["story"] if d == "sigma") == sorted(expected["level"])
    from forensics import hunt

    detectors = {d for d, _ in got["story"]}  # the helper that found each curated finding, or sigma
    assert "sigma" in detectors and len(detectors) > 5 and detectors - {"sigma"} <= set(hunt.HELPERS)
    assert got["rules"] == 6
    assert got["height"] < 16_000  # the corpus's report was 31,577 px tall before (story 4,167 px down)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report-1400x900.png")


def _cells(text: str) -> list[str]:
    """The text of every table cell, as a browser's parser decodes it (entities once)."""
    from html.parser import HTMLParser

    cells: list[str] = []

    class P(HTMLParser):
        depth = 0

        def handle_starttag(self, tag, attrs):
            if tag in ("td", "th"):
                cells.append("")
                self.depth += 1

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.depth -= 1

        def handle_data(self, data):
            if self.depth:
                cells[-1] += data

    P(convert_charrefs=True).feed(text)
    return [c.strip() for c in cells]


def test_no_none_nan_or_double_escaped_cells(tmp_path):
    """Rows without a host, a scheduled task whose command holds > and &, and missing users: the cells show
    the unknown-host placeholder, the command as written (escaped once), and empty cells, never None/nan."""
    from forensics.sigma import UNKNOWN_HOST

    store = CaseStore.create(tmp_path / "case", tz="Asia/Kolkata")
    rb = RowBuilder()
    common = dict(timestamp_desc="Event Logged", source="EVTX", attrs="{}", tags=[], tz_source="source_utc",
                  evidence_id="ev1", parser="test")
    cmd = r"cmd.exe /c whoami > C:\o.txt && echo <ok>"
    rb.add(timestamp=1_669_167_000_000_000_000, host=None, artifact="evtx:Security", event_id=4698, channel="Security",
           service_name="\\Dump", command_line=cmd, user="CORP\\admin", message="4698 scheduled task",
           evidence_path="Security.evtx", record_ref="record=1", event_hash="a" * 32, **common)
    rb.add(timestamp=1_669_167_060_000_000_000, host=None, artifact="evtx:System", event_id=7045, channel="System",
           service_name="svc&co", path="C:\\x.exe", message="7045", evidence_path="System.evtx", record_ref="record=2",
           event_hash="b" * 32, **common)
    rb.add(timestamp=1_669_167_120_000_000_000, host="SRV1", artifact="evtx:Security", event_id=4625, channel="Security",
           logon_type=3, src_ip="203.0.113.7", message="4625", evidence_path="Security.evtx", record_ref="record=3",
           event_hash="c" * 32, **common)
    staging = store.staging_dir("r1")
    write_parquet(rb.to_table(), staging / "tl-0.parquet")
    store.commit("r1", [staging / "tl-0.parquet"], [])
    html = render_report(tmp_path / "case", figures=False)
    cells = _cells(html)
    assert not [c for c in cells if c in BAD_CELLS]
    assert "&amp;gt;" not in html and "&amp;lt;" not in html and "&amp;amp;" not in html
    assert "scheduled task created: \\Dump " + cmd in cells  # the story: decoded once, escaped once
    assert "cmd.exe /c whoami &gt; C:\\o.txt &amp;&amp; echo &lt;ok&gt;" in html
    assert cmd in cells and "svc&co" in cells  # the persistence section
    hosts = re.findall(r'data-story-host="([^"]*)"', html)
    assert hosts == [UNKNOWN_HOST, UNKNOWN_HOST]
    assert cells.count(UNKNOWN_HOST) >= 4  # story and persistence tables; never an empty host cell
    assert cells[cells.index("scheduled task created: \\Dump " + cmd) - 4] == "2022-11-23T07:00:00+05:302022-11-23T01:30:00+00:00"


def _story_rows(html: str) -> list[tuple[pd.Timestamp, str, str]]:
    return [(pd.Timestamp(t), h, d) for d, t, h in
            re.findall(r'data-detector="([^"]*)" data-utc="([^"]*)" data-story-host="([^"]*)"', html)]


def test_report_limited_to_a_window_and_hosts(sigma_case, tmp_path, capsys):
    from forensics import hunt, sigma

    case_dir, result = sigma_case
    tl = forensics.open(case_dir)
    m = result.matches

    def expected(view, keep) -> int:
        return len(hunt.story(view, sigma=False)) + len(sigma.findings(sigma.SigmaRun(matches=m[keep].reset_index(drop=True))))

    a, b = pd.Timestamp("2017-07-12", tz="UTC"), pd.Timestamp("2017-07-21", tz="UTC")
    both = _story_rows(render_report(case_dir, figures=False, start="2017-07-12", end="2017-07-21"))
    assert len(both) == expected(tl.between(a, b), (m["timestamp"] >= a) & (m["timestamp"] < b)) == 40
    assert all(a <= t < b for t, _, _ in both) and {h for _, h, _ in both} == {"DESKTOP-2KGM189", "WIN-P4SIAA0SQCO"}
    after = _story_rows(render_report(case_dir, figures=False, start="2018-01-01T00:00Z"))  # one-sided
    c = pd.Timestamp("2018-01-01", tz="UTC")
    assert len(after) == expected(tl._with("timestamp >= ?", c.to_pydatetime()), m["timestamp"] >= c) == 38
    assert all(t >= c for t, _, _ in after)
    before = _story_rows(render_report(case_dir, figures=False, end="2013-01-01"))
    d = pd.Timestamp("2013-01-01", tz="UTC")
    assert len(before) == expected(tl._with("timestamp < ?", d.to_pydatetime()), m["timestamp"] < d) == 15
    assert all(t < d for t, _, _ in before)
    # a naive time is read in the zone given (05:30 in Kolkata is midnight UTC)
    html = render_report(case_dir, figures=False, tz="Asia/Kolkata", start="2017-07-12 05:30", end="2017-07-21 05:30")
    assert _story_rows(html) == both
    assert "from 2017-07-12T05:30:00+05:30 (2017-07-12T00:00:00+00:00); to 2017-07-21T05:30:00+05:30" in html
    one = _story_rows(render_report(case_dir, figures=False, host="DESKTOP-2KGM189"))
    assert {h for _, h, _ in one} == {"DESKTOP-2KGM189"}
    assert len(one) == expected(tl.where(host="DESKTOP-2KGM189"), m["host"] == "DESKTOP-2KGM189") == 54
    html = render_report(case_dir, figures=False, host=["DESKTOP-2KGM189"], start="2017-07-12", end="2017-07-21")
    assert len(_story_rows(html)) == 27 and 'data-summary="rows">' in html
    rows = tl.sql("SELECT count(*) AS n FROM timeline WHERE host = 'DESKTOP-2KGM189' AND timestamp >= "
                  "TIMESTAMPTZ '2017-07-12 00:00:00+00' AND timestamp < TIMESTAMPTZ '2017-07-21 00:00:00+00'")["n"][0]
    assert f'data-summary="rows">{rows:,}</span> of 26,024 in the case' in html
    # the command line: recorded with its scope; a host the case lacks and a reversed window are bad queries
    out = tmp_path / "window.html"
    argv = ["report", str(case_dir), "-o", str(out), "--from", "2017-07-12", "--host", "DESKTOP-2KGM189", "--no-figures"]
    assert main(argv) == 0
    entry = list(CaseStore(case_dir).custody.entries())[-1]
    assert entry["action"] == "report" and entry["command"] == ["forensics", *argv]
    assert entry["scope"] == "from 2017-07-12T00:00:00+00:00; hosts DESKTOP-2KGM189"
    assert entry["filters"] == ["timestamp >= TIMESTAMPTZ '2017-07-12 00:00:00.000000+00'", "(host IN ('DESKTOP-2KGM189'))"]
    assert all(t >= a for t, _, _ in _story_rows(out.read_text(encoding="utf-8")))
    capsys.readouterr()
    assert main(["report", str(case_dir), "-o", str(tmp_path / "x.html"), "--host", "NOPE"]) == 9
    assert "no host 'NOPE' in the case" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
    assert main(["report", str(case_dir), "-o", str(tmp_path / "x.html"), "--from", "2018-01-01", "--to", "2017-01-01"]) == 9
    assert not (tmp_path / "x.html").exists()
