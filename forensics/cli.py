"""The ``forensics`` command: a thin shell over :class:`forensics.Case`.

Exit codes: 0 success; 1 unexpected error; 2 bad usage; 3 evidence missing or
unreadable; 4 unknown format; 5 evidence changed while read; 6 not a case / case
unusable; 7 verification failed; 8 parser or engine not available (plaso not installed:
``pip install 'forensics[plaso]'``); 9 bad query; 10 an export or report could not be written;
11 ``forensics demo`` missed a ground-truth step; 12 the case cannot be written (disk full, read-only).

Everything printed for a terminal goes through :func:`terminal_safe` (evidence cannot drive the terminal);
CSV and JSON outputs hold the data unchanged.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from forensics.case import Case, CollectReport
from timeline.errors import CaseWriteError, ForensicsError, IntegrityError, ParserUnavailable
from timeline.exports import FORMATS

log = logging.getLogger("forensics")


# Characters that drive a terminal or reorder what it shows: C0 controls (ESC starts CSI/OSC sequences), DEL, C1
# controls (CSI U+009B, OSC U+009D), line/paragraph separators, the bidirectional overrides and isolates (U+202E
# shows text backwards) and lone surrogates (undecodable bytes of a name).  Evidence is hostile.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def terminal_safe(value: object) -> str:
    """``value`` as text fit for a terminal: every character of :data:`_UNSAFE` shown as an escape (``\\x1b``,
    ``\\u202e``, ``\\n``), so that evidence cannot move the cursor, retitle the window, hide or reorder text or
    fake output lines.  The one escaping of every printing path of the CLI; CSV and JSON outputs keep the data."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(lambda m: _NAMED.get(m.group()) or (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                                           else f"\\u{ord(m.group()):04x}"), text)


def _echo(line: object, err: bool = False) -> None:
    """Print one line (to stderr with ``err``), escaped by :func:`terminal_safe`."""
    print(terminal_safe(line), file=sys.stderr if err else sys.stdout)


def _echo_frame(df) -> None:
    """A DataFrame as a text table, every cell and column name escaped."""
    if df.empty:
        _echo("(no rows)")
        return
    df = df.astype(object).map(lambda v: terminal_safe(v) if isinstance(v, str) else v)
    df.columns = [terminal_safe(c) for c in df.columns]
    with __import__("pandas").option_context("display.max_colwidth", 120, "display.width", 250):
        for line in df.to_string(index=False).split("\n"):
            _echo(line)


class _SafeFormatter(logging.Formatter):
    """Log lines escaped like every other terminal output (their messages name evidence paths and records)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().formatMessage(record))


class _Progress:
    """A progress line for the whole collection and one per evidence item below it (tqdm, on stderr); without
    a terminal (a log file, a pipe) plain lines instead, one per unit of work, without escape codes."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.items: dict[str, object] = {}
        if not self.tty:
            return
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=0, unit="file", desc="collect", dynamic_ncols=True, file=sys.stderr)

    def files(self, done: int, total: int, rows: int) -> None:
        if not self.tty:
            _echo(f"collect: {done}/{total} file(s), {rows} rows", err=True)
            return
        self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix(rows=rows, refresh=False)
        self.bar.refresh()

    def item(self, label: str, done: int, total: int, rows: int, host: str | None) -> None:
        name = os.path.basename(label.rstrip("/")) or label
        state = f"rows={rows}" + (f" host={host}" if host else "") + ("" if total else " (already in the case)")
        if not self.tty:
            _echo(f"{name}: {done}/{total} artifact(s), {state}", err=True)
            return
        line = self.items.get(label)
        if line is None:
            line = self.items[label] = self._tqdm(total=total, unit="artifact", desc=terminal_safe(name),
                                                  position=len(self.items) + 1, dynamic_ncols=True, file=sys.stderr,
                                                  leave=True)
        line.n = done
        line.set_postfix_str(terminal_safe(state), refresh=False)
        line.refresh()

    def close(self) -> None:
        if not self.tty:
            return
        for line in self.items.values():
            line.close()
        self.bar.close()


class _HostItems(argparse.Action):
    """``--host NAME [ITEM...]``: the host of the evidence items that follow it (up to the next option); without
    items, of the items given without one."""

    def __call__(self, parser, namespace, values, option_string=None):
        from collectors.hosts import check_given_host

        try:
            name = check_given_host(values[0])
        except ValueError as exc:
            parser.error(str(exc))
        groups = list(getattr(namespace, self.dest) or [])
        if not values[1:] and any(not items for _, items in groups):
            parser.error("--host NAME without evidence after it may be given once (it names the host of the "
                         "evidence given without --host)")
        groups.append((name, list(values[1:])))
        setattr(namespace, self.dest, groups)


def _evidence_and_hosts(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The evidence items in the order given (positional first) and the host given for each (--host)."""
    evidence = list(args.evidence)
    hosts: dict[str, str] = {}
    for name, items in args.host or []:
        for p in items:
            evidence.append(p)
            hosts[p] = name
    for name, items in args.host or []:
        if not items:  # a bare --host NAME: the items given without one
            hosts.update({p: name for p in args.evidence})
    return evidence, hosts


def cmd_collect(args: argparse.Namespace) -> int:
    evidence, hosts = _evidence_and_hosts(args)
    if not evidence:
        from timeline.errors import EvidenceNotFound

        raise EvidenceNotFound("no evidence given (forensics collect ITEM... --case DIR, or --host NAME ITEM...)")
    args.evidence = evidence
    if args.engine == "plaso":
        if hosts:
            from timeline.errors import UnknownFormat

            raise UnknownFormat("--host goes with our collectors, not --engine plaso")
        return _collect_plaso(args)
    if args.parsers or args.archives:
        from timeline.errors import UnknownFormat

        raise UnknownFormat("--parsers and --archives go with --engine plaso")
    from collectors.evidence import resolve

    only = args.only.split(",") if args.only else None
    if args.tz is not None:  # a bad zone fails before a new case directory is created
        from collectors.text import zone

        zone(args.tz)
    for p in args.evidence:  # bad evidence fails before a new case directory is created
        resolve(p, only)
    case = Case(args.case, create=True, tz=args.tz)
    bars = None if args.quiet else _Progress()
    client = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ParserUnavailable("--scheduler needs dask.distributed: pip install 'forensics[dask]'") from exc
        client = Client(args.scheduler)
    try:
        report = case.collect(args.evidence, engine=args.engine, workers=args.workers, tz=args.tz, only=only,
                              client=client, unit_bytes=max(1, int(args.unit_mb * (1 << 20))), gather=args.gather,
                              progress=bars and bars.files, on_item=bars and bars.item, host=hosts or None)
    finally:
        if bars is not None:
            bars.close()
        if client is not None:
            client.close()
    if not args.quiet:
        _echo(report.summary())
        for a in report.artifacts:
            if a["lost"] or a["failed"]:
                _echo(f"  {a['evidence_path']}: {a['rows']} rows, {a['lost']} record(s) lost"
                      + (f" ({a['failed']})" if a["failed"] else ""))
    return 0


def _collect_plaso(args: argparse.Namespace) -> int:
    from forensics import plaso

    plaso.plaso_tool("log2timeline")  # plaso missing: the install hint before a case directory is made
    report = plaso.collect_with_plaso(Case(args.case, create=True, tz=args.tz), args.evidence, parsers=args.parsers,
                                      tz=args.tz, workers=args.workers or 1, archives=args.archives)
    if not args.quiet:
        _echo(report.summary())
    return 0


def cmd_import_plaso(args: argparse.Namespace) -> int:
    from forensics import plaso

    report = plaso.import_plaso(args.case, args.file, fmt=args.format)
    if not args.quiet:
        _echo(report.summary())
    return 0


def cmd_compare_plaso(args: argparse.Namespace) -> int:
    from forensics import plaso_parity

    rep = plaso_parity.compare_with_plaso(args.evidence, parsers=args.parsers, first=args.first, tz=args.tz,
                                          archives=args.archives, workdir=args.keep)
    if args.json:
        print(json.dumps(rep.as_dict(), indent=2, default=str))
    else:
        for line in rep.to_text().split("\n"):
            _echo(line)
    return 0


def cmd_export_plaso(args: argparse.Namespace) -> int:
    from forensics import plaso

    n = plaso.export_plaso(args.case, args.output, fmt=args.format, tz=args.tz, force=args.force)
    if not args.quiet:
        _echo(f"wrote {n} rows to {args.output} ({args.format})", err=True)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = Case(args.case).info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    _echo(f"case        {info['case']}  (id {info['case_id']})")
    _echo(f"evidence    {len(info['evidence'])} item(s)")
    for e in info["evidence"]:
        _echo(f"  {e['evidence_id']}  {e['files']} file(s), {e['bytes']} bytes  {e['path']}")
        stated = [f"host {e['host']}" + (f" ({e['host_source']})" if e.get("host_source") not in (None, "os") else "")
                  if e.get("host") else "", f"os {e['os']}" if e.get("os") else "",
                  f"zone {e['tz']} ({e['tz_source']})" if e.get("tz") else "",
                  f"E01 media hash {e['e01_media_hash']}" if "e01_media_hash" in e else "",
                  f"{e['gathered']} file(s) gathered" if e.get("gathered") else "",
                  f"{e['outside_layout']} file(s) of the collection tool outside the host's tree (not read; "
                  "custody facts.outside_layout)" if e.get("outside_layout") else ""]
        if any(stated):
            _echo("                    " + ", ".join(x for x in stated if x))
        if e.get("unread"):
            _echo("                    " + CollectReport.unread_note(e["unread"]))
    _echo(f"rows        {info['rows']} distinct events from {info['records_read']} records read "
          f"({info['sightings']} sightings)")
    _echo(f"time range  {info['first']} .. {info['last']} (UTC)")
    _echo("hosts       " + ", ".join(f"{h} ({n})" for h, n in info["hosts"].items()))
    _echo("artifacts")
    for a, n in info["artifacts"].items():
        _echo(f"  {n:>9}  {a}")
    _echo(f"errors      {info['errors']} (records that could not be read)")
    _echo(f"warnings    {info['warnings']} (damage noticed, nothing lost)")
    if info.get("implausible_times"):
        _echo(f"implausible {info['implausible_times']} row(s) with an implausible time (epoch, before 1990, future): "
              "kept, flagged attrs.time_flag")
    for k, n in info["problems_by_kind"].items():
        _echo(f"  {n:>9}  {k}")
    _echo(f"custody     head {info['custody_head']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    rep = Case(args.case).verify(check_evidence=not args.no_evidence, expect_head=args.expect_head)
    for note in rep.notes:
        _echo(f"note: {note}")
    for p in rep.problems:
        _echo(f"FAIL: {p}", err=True)
    status = "OK" if rep.ok else "FAILED"
    _echo(f"verify {status}: {rep.custody_entries} custody entries, {rep.files_checked} case files and "
          f"{rep.evidence_checked} evidence files re-hashed, {rep.exports_checked} export(s) re-checked; "
          f"custody head {rep.head}")
    if not rep.ok:
        raise IntegrityError(f"{len(rep.problems)} problem(s) found")
    return 0


def _window(tl, args: argparse.Namespace):
    """``--from``/``--to``: a time window, or one side of one (from a time on, before a time)."""
    return tl.between(args.start, args.end) if args.start or args.end else tl


def _view(args: argparse.Namespace):
    from forensics.query import open_case
    from timeline.errors import QueryError

    tl = open_case(args.case, tz=args.tz)
    if args.around:
        tl = tl.around(args.around, before=args.before, after=args.after)
    tl = _window(tl, args)
    if args.where:  # the filter syntax of Timeline.where (forensics.query.parse_condition)
        tl = tl.where(*args.where)
    if args.search:
        tl = tl.search(args.search, regex=args.regex)
    return tl


TABLE_COLUMNS = ["timestamp", "host", "artifact", "event_id", "user", "src_ip", "message"]


def cmd_query(args: argparse.Namespace) -> int:
    tl = _view(args)
    if args.output == "table":
        df = tl.to_pandas(TABLE_COLUMNS, limit=args.limit)
        if not df.empty:  # empty cells blank (where, not fillna: pandas 2.2 warns that fillna will stop downcasting)
            df = df.drop(columns=["timestamp"]).astype(object)
            df = df.where(df.notna(), "")
        _echo_frame(df)
        _echo(f"{len(df)} row(s) shown; times in {tl.tz}", err=True)
    else:
        df = tl.to_pandas(limit=args.limit)
        for col in ("timestamp", "local_time"):  # ISO 8601 with all nine digits and the offset
            df[col] = [t.isoformat() for t in df[col]]
        if args.output == "csv":
            df.to_csv(sys.stdout, index=False)
        else:
            df.to_json(sys.stdout, orient="records", lines=True, force_ascii=False)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    tl = _view(args)
    entry = tl.export(args.output, args.format, command=["forensics", *args.argv], force=args.force)
    if not args.quiet:
        out = entry["output"]
        sheets = f" on {len(entry['sheets'])} event sheet(s)" if entry.get("sheets") else ""
        _echo(f"wrote {entry['rows']} row(s){sheets} to {args.output} ({args.format}, {out['bytes']} bytes, "
              f"sha256 {out['sha256']}); custody entry #{entry['seq']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from forensics.report import write_report

    entry = write_report(args.case, args.output, tz=args.tz, command=["forensics", *args.argv], force=args.force,
                         start=args.start, end=args.end, host=args.host, figures=not args.no_figures)
    if not args.quiet:
        out = entry["output"]
        _echo(f"wrote {args.output} ({out['bytes']} bytes, sha256 {out['sha256']}); custody entry #{entry['seq']}")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from forensics.query import open_case

    df = open_case(args.case, tz=args.tz).sql(args.query, allow_external=args.allow_external)
    _echo_frame(df)
    return 0


def cmd_hunt(args: argparse.Namespace) -> int:
    """The story of the case (or of a window, of hosts): curated findings and, with ``--sigma``, Sigma's; a
    summary first (counts per level and host, top detections, first and last finding), then the findings."""
    from forensics import hunt, sigma
    from forensics.query import open_case
    from timeline.errors import QueryError

    tl = _window(open_case(args.case, tz=args.tz), args)
    if args.host:
        tl = tl.where(host=args.host)
    run = None
    if args.sigma is not None:
        rules = [Path(p) for p in args.sigma] or sigma.default_rules()
        if not rules:
            raise QueryError(f"--sigma without rules: give files or folders (--sigma RULES...) or name a folder "
                             f"in ${sigma.RULES_ENV}")
        missing = [str(p) for p in rules if not p.exists()]
        if missing:
            raise QueryError(f"Sigma rules not found: {', '.join(missing)}")
        run = sigma.run(tl, rules)
        if args.save:
            sigma.save(tl, run, rules)
    elif args.save:
        raise QueryError("--save goes with --sigma (it stores the matches of the rules applied)")
    st = hunt.story(tl, sigma=run, min_level=args.min_level, burst=args.burst)
    text = args.output == "text"
    say = _echo if text else (lambda line: None if args.quiet else _echo(line, err=True))
    for line in _summary_lines(hunt.summary(st), tl.tz, saved=run is None and bool(tl._detection_files())):
        say(line)
    if run is not None:
        _echo(f"sigma: {run.rules_loaded} rules loaded, {run.rules_converted} converted, {run.rules_matched} matched "
              f"{len(run.matches)} row(s); {len(run.conversion_errors)} not convertible, {len(run.evaluation_errors)} "
              f"failed to evaluate; {len(run.skipped)} for log sources the case does not hold; {run.seconds:.1f} s"
              + ("; matches saved in the case" if args.save else ""), err=True)
        if args.verbose:
            for rid, why in sorted({**run.conversion_errors, **run.evaluation_errors}.items()):
                _echo(f"  {rid}: {why}", err=True)
    if not text:
        out = st.copy()
        for col in ("timestamp", "local_time", "first", "last"):  # ISO 8601, all nine digits and the offset
            if col in out:
                out[col] = [t.isoformat() for t in out[col]]
        if args.output == "csv":
            out.to_csv(sys.stdout, index=False)
        elif len(out):
            out.to_json(sys.stdout, orient="records", lines=True, force_ascii=False)
        return 0
    say(f"== story: {len(st)} finding(s); local times in {tl.tz} ==")
    for r in st.itertuples():
        by = "sigma " + str(r.rule_id) if r.detector == "sigma" else r.detector
        _echo(f"{r.local_time.isoformat()}  ({r.timestamp.isoformat()} UTC)  {r.host}  [{r.level}] {r.technique or '-'}  "
              f"{r.finding}  ({by})  [{r.evidence_path} {r.record_ref}]")
    if st.empty:
        _echo("no findings")
    return 0


def _summary_lines(s: dict, tz: str, saved: bool = False) -> list[str]:
    """The summary of :func:`forensics.hunt.summary` as text lines, Hayabusa-like."""
    def when(row: dict) -> str:
        return (f"{row['local_time'].isoformat() if 'local_time' in row else row['timestamp'].isoformat()}  "
                f"{row['host']}  [{row['level']}] {row['finding']}")

    lines = ["== summary ==",
             f"findings        {s['findings']} ({s['by_detector']['curated']} curated, {s['by_detector']['sigma']} Sigma"
             + (", from the detections saved in the case" if saved and s["by_detector"]["sigma"] else "")
             + f"), standing for {s['events']} event(s)",
             "by level        " + ", ".join(f"{lv} {n}" for lv, n in s["levels"].items())]
    for i, h in enumerate(s["hosts"]):
        levels = ", ".join(f"{lv} {n}" for lv, n in h["levels"].items())
        lines.append(f"{'by host' if i == 0 else '':<16}{h['host']}: {h['findings']} ({levels})")
    for i, t in enumerate(s["top"]):
        rule = f" {t['rule_id']}" if t["rule_id"] else ""
        lines.append(f"{'top detections' if i == 0 else '':<16}[{t['level']}] {t['detection']}{rule}: {t['findings']} "
                     f"finding(s), {t['events']} event(s) on {t['hosts']} host(s)")
    if s["first"] is not None:
        lines.append(f"first           {when(s['first'])}")
        lines.append(f"last            {when(s['last'])}")
    return lines


def cmd_plot(args: argparse.Namespace) -> int:
    from forensics import plots
    from forensics.query import _output_path, open_case

    out = _output_path(Path(args.case), args.output, args.force)  # never over evidence, an existing file with --force
    tl = open_case(args.case, tz=args.tz)
    tl = _window(tl, args)
    fig = (plots.activity_heatmap(tl, freq=args.freq, log_scale=args.log_scale, per_host=args.per_host)
           if args.kind == "activity" else plots.story_timeline(tl.story()))
    fig.savefig(out, dpi=120)
    if not args.quiet:
        _echo(f"wrote {args.output}")
    return 0


def cmd_sample_case(args: argparse.Namespace) -> int:
    from forensics import sample

    out = sample.build(args.directory, hosts=args.hosts, days=args.days, seed=args.seed)
    if not args.quiet:
        _echo(f"wrote {len(out['evidence'])} evidence files and ground_truth.json "
              f"({len(out['ground_truth']['steps'])} attack steps) to {out['directory']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the sample case, collect it, verify it, tell the story, check it against the ground truth."""
    import tempfile
    import time

    from forensics import sample
    from forensics.query import open_case

    t0 = time.monotonic()
    base = Path(args.directory) if args.directory else Path(tempfile.mkdtemp(prefix="forensics-demo-"))
    evidence, case_dir = base / "evidence", base / "case"
    say = (lambda *a: None) if args.quiet else _echo
    say(f"1. building the sample case (seed {args.seed}) in {evidence}")
    built = sample.build(evidence, seed=args.seed)
    say(f"   {len(built['evidence'])} evidence files: Windows triage folders (EVTX) and ext4 images of the Linux servers")
    say("2. collecting")
    case = Case(case_dir, create=True, tz="Asia/Kolkata")
    rep = case.collect([evidence], workers=args.workers)
    say("   " + rep.summary())
    say("3. verifying the chain of custody")
    v = case.verify()
    say(f"   {'OK' if v.ok else 'FAILED'}: {v.custody_entries} custody entries, {v.files_checked} case files and "
        f"{v.evidence_checked} evidence files re-hashed")
    say("4. the reconstructed story (local IST, then UTC)")
    story = open_case(case_dir).story()
    for r in story.itertuples():
        say(f"   {r.local_time:%Y-%m-%d %H:%M:%S} IST  {r.timestamp:%H:%M:%S} UTC  {r.host:<16} {r.technique or '-':<10} {r.finding[:110]}")
    from forensics.report import write_report

    report_path = base / "report.html"
    write_report(case_dir, report_path, command=["forensics", "demo", str(base)], force=True)
    say(f"   report: {report_path}")
    say("5. checked against ground_truth.json")
    result = sample.check(story, built["ground_truth"])
    for s in result:
        local = pd_local(s["time_utc"])
        say(f"   step {s['step']} {'found  ' if s['found'] else 'MISSING'} {local} IST  {s['host']:<16} "
            f"{'/'.join(s['techniques']):<22} {s['what']}")
    missed = [s for s in result if not s["found"]]
    say(f"{len(result) - len(missed)} of {len(result)} attack steps reconstructed; case in {case_dir} "
        f"({time.monotonic() - t0:.0f} s)")
    if not v.ok:
        return IntegrityError.exit_code
    return 0 if not missed else 11


def pd_local(iso_utc: str) -> str:
    import datetime as _dt
    from zoneinfo import ZoneInfo

    return _dt.datetime.fromisoformat(iso_utc).astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")


def _filter_args(p: argparse.ArgumentParser) -> None:
    """The case and the row filters shared by ``query`` and ``export`` (read by :func:`_view`)."""
    p.add_argument("case")
    p.add_argument("--from", dest="start", help="start (ISO 8601; without a zone: --tz or the case's zone)")
    p.add_argument("--to", dest="end", help="end, excluded")
    p.add_argument("--around", help="a time; with --before/--after (default 1h / 6h)")
    p.add_argument("--before", default="1h")
    p.add_argument("--after", default="6h")
    p.add_argument("--tz", default=None, help="zone for naive times and local_time (default: the case's zone)")
    p.add_argument("--where", action="append", metavar="CONDITION",
                   help="row filter, repeatable (all must hold): COLUMN=VALUE; COLUMN=V1,V2 (any of); COLUMN=LO..HI "
                        "(numbers or times, both ends included); COLUMN~PATTERN (ILIKE: %% any text, _ one character); "
                        "COLUMN= (empty); != and !~ for not (rows without a value included); tags=TAG; "
                        "e.g. --where event_id=4624,4625 --where 'process~%%\\psexe%%'")
    p.add_argument("--search", help="substring of the message or attrs (case-insensitive)")
    p.add_argument("--regex", action="store_true", help="--search is a regular expression")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text!r}")
    return value


def _sha256(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text.strip()):
        raise argparse.ArgumentTypeError(f"not a SHA-256 hash (64 hex digits): {text!r}")
    return text.strip().lower()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forensics", description="Turn seized evidence into a verifiable super-timeline.")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only errors")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="collect evidence (EVTX files or folders) into a case")
    c.add_argument("evidence", nargs="*", help="evidence files or folders")
    c.add_argument("--host", action=_HostItems, nargs="+", metavar=("NAME", "ITEM"), default=None,
                   help="the host the evidence items after it belong to (up to the next option; may be repeated: "
                        "--host web01 a.log b.log --host db01 c.log); without items, the host of the items given "
                        "without --host.  Wins over the host the evidence names; rows say how their host was "
                        "decided in attrs.host_source")
    c.add_argument("--case", required=True, help="case directory (created if missing)")
    c.add_argument("--engine", choices=["evtx", "python-evtx", "plaso"], default=None,
                   help="EVTX engine: evtx (Rust parser + dissect.eventlog fallback, default) or python-evtx; "
                        "plaso: run plaso's log2timeline on the evidence instead of our collectors, then import its storage")
    c.add_argument("--parsers", default=None, metavar="PRESET",
                   help="with --engine plaso: log2timeline's parser preset or filter (e.g. win7, linux, winevtx,filestat)")
    c.add_argument("--archives", default=None, metavar="TYPES",
                   help="with --engine plaso: log2timeline's --archives (e.g. all, tar,zip; plaso's default: none)")
    c.add_argument("--workers", type=int, default=None, help="parallel parser processes (default: all cores)")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the units of work on a Dask cluster (e.g. tcp://10.0.0.1:8786); its workers must see the "
                        "evidence and the case at the same paths")
    c.add_argument("--unit-mb", type=_positive, default=32, metavar="MB",
                   help="evidence per unit of work; each unit is committed on its own, so an interrupted run "
                        "resumes from the last committed unit (default 32)")
    c.add_argument("--only", default=None, metavar="NAMES",
                   help="collect only with these collectors, comma-separated (e.g. evtx,syslog; default: all)")
    c.add_argument("--gather", action="store_true",
                   help="also copy the raw artifacts of images and archives (logs, registry hives, prefetch, tasks...) "
                        "into CASE/gathered/, each hashed in the custody log with its path and times")
    c.add_argument("--tz", default=None, help="zone of local times the evidence does not date itself (overrides an image's own zone) and "
                        "the case's display zone, e.g. Asia/Kolkata; EVTX times are UTC")
    c.set_defaults(func=cmd_collect)

    ip = sub.add_parser("import-plaso", help="import a .plaso storage file or a psort json_line / l2tcsv / dynamic export")
    ip.add_argument("file")
    ip.add_argument("--case", required=True, help="case directory (created if missing)")
    ip.add_argument("--format", choices=["storage", "json_line", "l2tcsv", "dynamic"], default=None,
                    help="what the file is (default: recognised from its content)")
    ip.set_defaults(func=cmd_import_plaso)

    cp = sub.add_parser("compare-plaso", help="collect evidence with our collectors and with plaso; report the differences")
    cp.add_argument("evidence", nargs="+")
    cp.add_argument("--parsers", default=None, help="log2timeline parsers (default: winevtx,text/syslog,"
                    "text/syslog_traditional,filestat)")
    cp.add_argument("--archives", default="all", help="log2timeline --archives (default all: our collectors open archives)")
    cp.add_argument("--first", type=int, default=10, help="events listed per difference (default 10)")
    cp.add_argument("--tz", default=None, help="zone of local times, for both sides")
    cp.add_argument("--keep", default=None, metavar="DIR", help="make the two cases in DIR and keep them")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=cmd_compare_plaso)

    ep = sub.add_parser("export-plaso", help="write the timeline as plaso's l2tcsv or dynamic CSV")
    ep.add_argument("case")
    ep.add_argument("--format", choices=["l2tcsv", "dynamic"], default="l2tcsv")
    ep.add_argument("--tz", default=None, help="zone of the times written (default UTC), as psort -z")
    ep.add_argument("-o", "--output", required=True, help="file to write (not evidence of the case)")
    ep.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    ep.set_defaults(func=cmd_export_plaso)

    i = sub.add_parser("info", help="hosts, time range, counts per artifact, errors and warnings")
    i.add_argument("case")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("verify", help="re-check the custody chain, every timeline file and the evidence")
    v.add_argument("case")
    v.add_argument("--no-evidence", action="store_true", help="do not re-hash the evidence")
    v.add_argument("--expect-head", type=_sha256, default=None, metavar="HASH",
                   help="the custody head hash written down earlier (a report, notes): fail if the chain's head differs "
                        "(entries appended, removed or rewritten since)")
    v.set_defaults(func=cmd_verify)

    q = sub.add_parser("query", help="rows of the timeline: a time window, columns, text; as a table, CSV or JSON lines")
    _filter_args(q)
    q.add_argument("--limit", type=int, default=None)
    q.add_argument("-o", "--output", choices=["table", "csv", "json"], default="table")
    q.set_defaults(func=cmd_query)

    x = sub.add_parser("export", help="write the (filtered) timeline for others: Timesketch, CSV, JSON lines, XLSX, "
                                      "Parquet; recorded in the custody log")
    _filter_args(x)
    x.add_argument("--format", required=True, choices=list(FORMATS))
    x.add_argument("-o", "--output", required=True, help="file to write (not inside the case's own folders, not "
                                                             "evidence of the case)")
    x.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="one self-contained HTML report of the case (summary, story, figures, findings, "
                                      "custody); recorded in the custody log")
    r.add_argument("case")
    r.add_argument("--tz", default=None, help="zone of the local times and of --from/--to without a zone "
                                              "(default: the case's zone)")
    r.add_argument("--from", dest="start", help="only events at or after this time (ISO 8601; alone or with --to)")
    r.add_argument("--to", dest="end", help="only events before this time (excluded; alone or with --from)")
    r.add_argument("--host", action="append", metavar="HOST",
                   help="only this host (repeatable); '(unknown host)' for rows without a host")
    r.add_argument("--no-figures", action="store_true", help="leave the figures out (faster; no matplotlib needed)")
    r.add_argument("-o", "--output", required=True, help="HTML file to write (not evidence of the case)")
    r.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("sql", help="run SQL over the timeline (the table is called timeline)")
    s.add_argument("case")
    s.add_argument("query", help="one SELECT statement (read-only)")
    s.add_argument("--tz", default=None)
    s.add_argument("--allow-external", action="store_true",
                   help="let the query read files other than the timeline (e.g. an IOC list with read_csv)")
    s.set_defaults(func=cmd_sql)

    h = sub.add_parser("hunt", help="the attack story: a summary, then the findings of every helper and of Sigma "
                                    "rules in time order, local and UTC")
    h.add_argument("case")
    h.add_argument("--tz", default=None, help="zone of local_time and of naive --from/--to times (default: the "
                                               "case's zone), e.g. Asia/Kolkata")
    h.add_argument("--from", dest="start", help="only rows from this time on (ISO 8601; without a zone: --tz or the "
                                                 "case's zone); alone or with --to")
    h.add_argument("--to", dest="end", help="only rows before this time; alone or with --from")
    h.add_argument("--host", action="append", metavar="HOST", help="only this host's rows (repeatable)")
    h.add_argument("--min-level", default=None, metavar="LEVEL",
                   help="only findings of this level or above: informational < low < medium < high < critical "
                        "(curated findings' levels: forensics.hunt.FINDING_LEVELS; Sigma's: the rule's)")
    h.add_argument("-o", "--output", choices=["text", "csv", "json"], default="text",
                   help="text: summary then story; csv, json (JSON lines): the story's rows, the summary on stderr")
    h.add_argument("--sigma", nargs="*", action="extend", metavar="RULES",
                   help="also apply Sigma rules (files or folders; repeatable); without paths the folders named by "
                        "$FORENSICS_SIGMA_RULES.  Without --sigma the detections saved in the case (--save) are shown. "
                        "-v lists the rules that could not be converted or evaluated")
    h.add_argument("--burst", default="1h", help="Sigma: one finding per rule, host and burst of matches less than "
                                                 "this apart (default 1h)")
    h.add_argument("--save", action="store_true",
                   help="with --sigma: store the matches in the case (custody-logged): the rows' tags carry them in "
                        "queries and exports, and later hunts and reports show them")
    h.set_defaults(func=cmd_hunt)

    sc = sub.add_parser("sample-case", help="write the sample hospital ransomware case (evidence + ground truth)")
    sc.add_argument("directory", help="where to write it (created; must be empty)")
    sc.add_argument("--hosts", type=int, default=4, help="hosts (>= 4: DC, file server, app and DB servers, workstations)")
    sc.add_argument("--days", type=int, default=3, help="days of background activity up to the attack day")
    sc.add_argument("--seed", type=int, default=7)
    sc.set_defaults(func=cmd_sample_case)

    d = sub.add_parser("demo", help="build the sample case, collect, verify, print the story, check the ground truth")
    d.add_argument("directory", nargs="?", default=None, help="working folder (default: a new temporary folder)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--workers", type=int, default=None)
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("plot", help="PNG figures: activity per host over time, or the story as a timeline")
    g.add_argument("case")
    g.add_argument("--kind", choices=["activity", "story"], default="activity")
    g.add_argument("--freq", default=None, help="bucket size of the activity heatmap (e.g. 15min, 1h, 1D; "
                                                "default: ~200 buckets over the case)")
    g.add_argument("--log-scale", action="store_true", help="activity: logarithmic colour scale")
    g.add_argument("--per-host", action="store_true", help="activity: each host as a share of its busiest bucket")
    g.add_argument("--from", dest="start")
    g.add_argument("--to", dest="end")
    g.add_argument("--tz", default=None)
    g.add_argument("-o", "--output", required=True, help="PNG file to write (not evidence of the case)")
    g.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    g.set_defaults(func=cmd_plot)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    level = logging.WARNING - 10 * args.verbose if not args.quiet else logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=max(level, logging.DEBUG), handlers=[handler])
    # dissect narrates what it tries (no volume system, no OS plugin...); what matters is in the case's custody
    logging.getLogger("dissect").setLevel(logging.CRITICAL if args.verbose < 2 else logging.DEBUG)
    # plaso's output layer narrates every message string it cannot find; its warnings are in the case's problems
    # plaso's loggers: a message string it cannot find or format is its own business (psort prints it anyway)
    for name in ("output", "storage", "formatters", "serializer", "engine", "parsers", "filters"):
        logging.getLogger(name).setLevel(logging.CRITICAL if args.verbose < 2 else logging.DEBUG)
    try:
        return args.func(args)
    except ForensicsError as exc:
        _echo(f"forensics: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        _echo("forensics: interrupted", err=True)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except OSError as exc:  # a full disk or a read-only file system met where no clearer error was raised
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        _echo(f"forensics: error: {exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
              + "; nothing was committed", err=True)
        return CaseWriteError.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
