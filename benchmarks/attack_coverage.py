"""ATT&CK coverage of the story on real, labelled attacks (issue 14 §5).  Run by hand:

    .venv/bin/python benchmarks/attack_coverage.py --work /tmp/cov [--corpus regression,mitre,museum,splunk,otrf]
                                                   [--out /tmp/cov/coverage.md] [--rules DIR ...]

Per corpus, every labelled sample is collected into one case of the corpus (each sample's files are their own
evidence items, so a row belongs to a sample through its sightings), then hunted twice:

* **without Sigma**: :func:`forensics.hunt.story` over the sample's rows (a :class:`forensics.Timeline` view, as
  ``forensics hunt`` reads it);
* **with Sigma**: the story with Sigma's findings merged (:func:`hunt`: ``story(view, sigma=...)``, the corpus's one
  Sigma run restricted to the sample).

A sample is **covered** when a finding carries one of its labelled techniques, that technique's parent
(label T1003.001, finding T1003) or a sub-technique of it (label T1003, finding T1003.001): :func:`covers`.
A Sigma finding carries every technique its rule is tagged with.

Corpora (``../shared``):

* ``regression``: SigmaHQ's regression samples (``sigma/regression_data``), each labelled with the rule that must
  fire; the techniques are that rule's ATT&CK tags (a rule without one: the sample is unlabelled);
* ``mitre``: ``evidence/EVTX-to-MITRE-Attack``, technique and tactic in the path;
* ``museum``: the DFIR Artifact Museum's KAPE 7z archives: the APTSimulator runs (Win10, Server 2022) and the
  "Stolen Szechuan Sauce" DC, one sample per (archive, technique observed in REAL-ATTACKS.md), and the clean
  Windows 10/11 baselines (findings of level medium and above per host; curated findings count as medium
  until the story gives a level);
* ``splunk``: splunk attack_data, one sample per capture folder (or per file directly in a technique folder),
  technique = the ``Txxxx`` folder (else the ``mitre_technique`` of the folder's ``.yml``);
* ``otrf``: OTRF Security-Datasets, one sample per zip, techniques from ``_metadata/*.yaml``.

A miss says why (:func:`reason`): no rows collected from the sample; rows but no finding at all (with the
sample's most frequent channel:event id, to judge whether the events a detection needs are there); or
findings of other techniques only (a wrong or missing technique id, or a detector that does not exist).

Each corpus runs in its own process (time and peak memory per corpus); its case is kept under ``--work`` and
reused while the list of evidence items is unchanged, so a rerun only re-hunts.  Markdown goes to ``--out``
(default: stdout) and per-corpus JSON to ``--work/result-<corpus>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: PYTHONPATH=/other/checkout measures that checkout's code
SHARED = Path(os.environ.get("FORENSICS_SHARED", ROOT.parent / "shared")).resolve()
EVIDENCE = SHARED / "evidence"
SIGMA = SHARED / "sigma"
RULE_DIRS = ("rules/windows", "rules/linux", "rules/web", "rules-emerging-threats")
CORPORA = ("regression", "mitre", "museum", "splunk", "otrf")
LEVELS = ("informational", "low", "medium", "high", "critical")
MEDIUM_UP = frozenset(("medium", "high", "critical"))
_TID = re.compile(r"^(T\d{4}(?:\.\d{3})?)\b")
TACTICS = {"TA0043": "Reconnaissance", "TA0042": "Resource Development", "TA0001": "Initial Access",
           "TA0002": "Execution", "TA0003": "Persistence", "TA0004": "Privilege Escalation",
           "TA0005": "Defense Evasion", "TA0006": "Credential Access", "TA0007": "Discovery",
           "TA0008": "Lateral Movement", "TA0009": "Collection", "TA0011": "Command and Control",
           "TA0010": "Exfiltration", "TA0040": "Impact"}
_TACTIC_TAG = re.compile(r"^attack\.([a-z]+(?:-[a-z]+)*)$")  # attack.defense-impairment -> Defense Impairment


def _tactic_name(tag: str) -> str | None:
    m = _TACTIC_TAG.match(tag)
    if not m or re.match(r"^[gst]\d{4}", m.group(1)):
        return None
    return " ".join(w if w == "and" else w.capitalize() for w in m.group(1).split("-"))

# The museum archives: what REAL-ATTACKS.md says was observed in each (technique -> what).
MUSEUM = {
    "Win10/APTSimulatorVM/APTSimulatorVM_EventLogs.7z": {
        "T1569.002": "PsExec p.exe -s", "T1562.001": "Defender/McAfee exclusions via reg",
        "T1059.001": "powercat reverse shell", "T1018": "nbtscan", "T1033": "whoami", "T1047": "wmic discovery",
        "T1053.002": "at running mimikatz", "T1053.005": "schtasks running mimikatz", "T1003.001": "mimikatz",
        "T1546.008": "sethc IFEO debugger", "T1037.001": "UserInitMprLogonScript", "T1546.003": "WMI event backdoor"},
    "Server2022/APTSimulatorVM/APTSimulatorVM_EventLogs_Server2022.7z": {
        "T1003.001": "procdump64 -ma lsass.exe", "T1059.001": "Invoke-Mimikatz download cradle",
        "T1105": "certutil -urlcache download"},
    "Win2012R2/StolenSzechuan/StolenSzechuanEventLogs.7z": {
        "T1110.001": "RDP brute force (4625, TerminalServices 261)", "T1021.001": "RDP logon of the intruder",
        "T1134.001": "Meterpreter getsystem named-pipe services", "T1543.003": "coreupdater.exe service"},
}
MUSEUM_BASELINES = ("Win10/RathbunVM/RathbunVM_W10EventLogs.7z", "Win11/RathbunVM/RathbunVM_W11EventLogs.7z")
MUSEUM_ROOT = EVIDENCE / "AndrewRathbun-DFIRArtifactMuseum" / "Windows" / "EventLogs"


@dataclass
class Sample:
    corpus: str
    name: str
    paths: tuple[str, ...]  # evidence items (absolute paths), each collected on its own
    techniques: tuple[str, ...] = ()  # labels; () = unlabelled
    tactics: tuple[str, ...] = ()  # the tactic the corpus gives with each label (same order), or ()
    kind: str = "attack"  # attack | baseline | unlabelled
    note: str = ""


# --- techniques ---------------------------------------------------------------------------------------

# Techniques ATT&CK has retired -> their successor, as SigmaHQ's rules show it (:func:`successors`); filled by
# :func:`evaluate` from the rules in use, empty otherwise.
SUCCESSORS: dict[str, str] = {}


def covers(found: str, label: str) -> bool:
    """A finding's technique counts for a label: the same, the label's parent, or a sub-technique of the label.
    A retired technique and its successor (:data:`SUCCESSORS`) count as the same, without the sub-technique rule
    (T1562.001's successor is T1685, of which T1685.005 "Clear Windows Event Logs" is not a kind)."""
    f, lab = str(found).upper(), str(label).upper()
    if f == lab or f == lab.split(".")[0] or f.split(".")[0] == lab:
        return True
    fs, ls = {f, SUCCESSORS.get(f, f)}, {lab, SUCCESSORS.get(lab, lab)}
    return any(a == b or a == b.split(".")[0] for a in fs for b in ls)


def covered(found: Iterable[str], labels: Iterable[str]) -> bool:
    found = list(found)
    return any(covers(f, lab) for lab in labels for f in found)


def successors(dirs: Iterable[Path], min_votes: int = 2) -> dict[str, str]:
    """Retired technique -> successor: a technique no rule is tagged with any more whose Atomic Red Team tests
    (``atomics/Txxxx/`` in a rule's references) the citing rules tag, in at least ``min_votes`` rules, with one
    technique more than any other (ATT&CK v18 moved T1562.001 "Disable or Modify Tools" to T1685, T1070.001
    "Clear Windows Event Logs" to T1685.005...)."""
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    tagged: set[str] = set()
    for d in dirs:
        for f in [Path(d)] if Path(d).is_file() else sorted(Path(d).rglob("*.yml")):
            text = f.read_text(encoding="utf-8", errors="replace")
            tags = [t.upper() for t in re.findall(r"^\s+-\s+attack\.(t\d{4}(?:\.\d{3})?)\s*$", text, re.M | re.I)]
            tagged.update(tags)
            for old in {r.upper() for r in re.findall(r"atomics/(T\d{4}(?:\.\d{3})?)/", text)}:
                votes[old].update(tags)
    out = {}
    for old, c in votes.items():
        top = c.most_common(2)
        if old not in tagged and top and top[0][1] >= min_votes and (len(top) == 1 or top[0][1] > top[1][1]):
            out[old] = top[0][0]
    return dict(sorted(out.items()))


def _rule_index(dirs: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Sigma rule id -> {techniques, tactics, title, level, path} read from the rule files' text."""
    from forensics.sigma import _technique_ids

    out: dict[str, dict[str, Any]] = {}
    for d in dirs:
        for f in [Path(d)] if Path(d).is_file() else sorted(Path(d).rglob("*.yml")):
            text = f.read_text(encoding="utf-8", errors="replace")
            m = re.search(r"^id:\s*['\"]?([0-9a-fA-F-]{36})", text, re.M)
            if not m:
                continue
            tags = re.findall(r"^\s+-\s+(attack\.[\w.-]+)\s*$", text, re.M)
            out[m.group(1).lower()] = {
                "techniques": _technique_ids(tags),
                "tactics": [t for x in tags if (t := _tactic_name(x))],
                "path": str(f)}
    return out


def tactic_of(technique: str, table: dict[str, str]) -> str:
    for t in (technique, SUCCESSORS.get(technique, technique)):
        if table.get(t) or table.get(t.split(".")[0]):
            return table.get(t) or table[t.split(".")[0]]
    return "?"


def _tactic(sample: dict[str, Any], technique: str, table: dict[str, str]) -> str:
    """A label's tactic: as the corpus gives it with the label, else as SigmaHQ's rules tag the technique."""
    if len(sample["tactics"]) == len(sample["techniques"]):
        return sample["tactics"][list(sample["techniques"]).index(technique)]
    return tactic_of(technique, table)


def _tactic_table(index: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Technique -> the tactic SigmaHQ's rules tag it with most often (for labels whose corpus names none)."""
    one: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    many: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in index.values():  # a rule with one tactic says which tactic its techniques are; the others fill gaps
        for t in r["techniques"]:
            for key in (t, t.split(".")[0]):
                (one if len(r["tactics"]) == 1 else many)[key].update(r["tactics"])
    return {t: (one.get(t) or c).most_common(1)[0][0] for t, c in {**many, **one}.items() if (one.get(t) or c)}


# --- the corpora's samples ------------------------------------------------------------------------------

def samples_regression(shared: Path = SHARED, index: dict | None = None) -> list[Sample]:
    import yaml

    base = shared / "sigma" / "regression_data"
    index = index if index is not None else _rule_index([shared / "sigma" / d for d in ("rules", "rules-emerging-threats")])
    out = []
    for info in sorted(base.rglob("info.yml")):
        meta = yaml.safe_load(info.read_text())
        rid, title = str(meta["rule_metadata"][0]["id"]).lower(), meta["rule_metadata"][0]["title"]
        evtx = shared / "sigma" / meta["regression_tests_info"][0]["path"]
        rule = index.get(rid, {"techniques": [], "tactics": []})
        techs = tuple(dict.fromkeys(rule["techniques"]))
        # a rule tags several tactics without saying which technique each goes with: the tactic is looked up
        out.append(Sample("regression", title, (str(evtx),), techs, (), "attack" if techs else "unlabelled",
                          f"rule {rid}"))
    return out


def samples_mitre(shared: Path = SHARED) -> list[Sample]:
    base = shared / "evidence" / "EVTX-to-MITRE-Attack"
    out = []
    for f in sorted(base.rglob("*.evtx")):
        rel = f.relative_to(base)
        techs = tuple(m.group(1) for p in rel.parts[:-1] if (m := _TID.match(p)))
        tactics = tuple(TACTICS[p[:6]] for p in rel.parts[:-1] if p[:6] in TACTICS)[:len(techs)]
        out.append(Sample("mitre", rel.as_posix(), (str(f),), techs, tactics, "attack" if techs else "unlabelled"))
    return out


def samples_museum(shared: Path = SHARED) -> list[Sample]:
    root = shared / "evidence" / MUSEUM_ROOT.relative_to(EVIDENCE)
    out = []
    for rel, techs in MUSEUM.items():
        for t, what in techs.items():
            out.append(Sample("museum", f"{rel.split('/')[0]}/{rel.split('/')[1]} {t}", (str(root / rel),), (t,),
                              note=what))
    for rel in MUSEUM_BASELINES:
        out.append(Sample("museum", f"{rel.split('/')[0]}/{rel.split('/')[1]} (clean baseline)", (str(root / rel),),
                          kind="baseline"))
    return out


def samples_splunk(shared: Path = SHARED) -> list[Sample]:
    import yaml

    base = shared / "evidence" / "splunk-attack_data" / "datasets"
    groups: dict[Path, list[Path]] = collections.defaultdict(list)
    for f in sorted(base.rglob("*")):
        if f.is_file() and f.suffix.lower() not in (".yml", ".yaml"):
            own = (m := _TID.match(f.parent.name)) is not None and m.group(1) == f.parent.name  # loose in Txxxx/
            groups[f if own else f.parent].append(f)
    out = []
    for key, files in sorted(groups.items()):
        rel = key.relative_to(base)
        techs = tuple(m.group(1) for p in rel.parts if (m := _TID.match(p)) and m.group(1) == p)
        folder = key if key.is_dir() else key.parent
        if not techs:
            for y in sorted(folder.glob("*.yml")):
                techs += tuple(str(t) for t in (yaml.safe_load(y.read_text()) or {}).get("mitre_technique") or ())
            techs = tuple(dict.fromkeys(techs))
        out.append(Sample("splunk", rel.as_posix(), tuple(str(f) for f in files), techs, (),
                          "attack" if techs else "unlabelled"))
    return out


def samples_otrf(shared: Path = SHARED) -> list[Sample]:
    import yaml

    base = shared / "evidence" / "OTRF-Security-Datasets" / "datasets"
    labels: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {}
    for y in sorted(base.rglob("_metadata/*.yaml")):
        meta = yaml.safe_load(y.read_text())
        techs, tactics = [], []
        for m in meta.get("attack_mappings") or ():
            sub = m.get("sub-technique")
            t = str(m["technique"]) + (f".{int(sub):03d}" if sub not in (None, "") else "")
            if t not in techs:
                techs.append(t)
                tactics.append(TACTICS.get(str((m.get("tactics") or ["?"])[0]), "?"))
        for f in meta.get("files") or ():
            labels[f["link"].rsplit("/", 1)[-1].lower()] = (tuple(techs), tuple(tactics),
                                                             f"{meta['id']}: {meta['title']}")
    out = []
    for z in sorted(base.rglob("*.zip")):
        techs, tactics, title = labels.get(z.name.lower(), ((), (), "no metadata"))
        out.append(Sample("otrf", z.relative_to(base).as_posix(), (str(z),), techs, tactics,
                          "attack" if techs else "unlabelled", title))
    return out


def corpus_samples(corpus: str, shared: Path = SHARED) -> list[Sample]:
    return {"regression": samples_regression, "mitre": samples_mitre, "museum": samples_museum,
            "splunk": samples_splunk, "otrf": samples_otrf}[corpus](shared)


# --- collecting ---------------------------------------------------------------------------------------------

def case_for(samples: list[Sample], case_dir: Path) -> tuple[Any, float]:
    """The case holding every sample's evidence items (collected once; reused while the items are the same),
    and the seconds collecting took (0 when reused)."""
    import forensics

    from collectors import collector_for

    items = sorted({p for s in samples for p in s.paths})
    marker = case_dir / "coverage-items.json"
    if marker.exists() and json.loads(marker.read_text())["items"] == items:
        return forensics.Case(case_dir), 0.0
    if case_dir.exists():
        shutil.rmtree(case_dir)
    # a file no collector takes is refused by collect: it is left out here, and the sample says why
    unknown: dict[str, str] = {}
    for p in items:
        cls = None if Path(p).is_dir() else collector_for(p)
        if Path(p).is_dir():
            continue
        if cls is None:
            unknown[p] = "no collector recognises its format"
        elif hasattr(cls, "check_compatible"):  # taken for a disk image: is there one?
            try:
                cls.check_compatible(p)
            except Exception as exc:  # noqa: BLE001 - the reason is reported
                unknown[p] = f"{cls.name}: {str(exc).split(': ', 1)[-1][:80]}"
    t0 = time.monotonic()
    case = forensics.Case(case_dir, create=True)
    case.collect([p for p in items if p not in unknown], workers=1)
    secs = time.monotonic() - t0
    marker.write_text(json.dumps({"items": items, "unknown": unknown}))
    return case, secs


def sample_rows(case: Any, samples: list[Sample]) -> dict[int, tuple[set[str], set[str]]]:
    """Sample number -> (its evidence ids, the event hashes sighted in them whose row is another item's: an event
    two items hold is one row, kept with its first sighting)."""
    import forensics

    by_path: dict[str, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(samples):
        for p in s.paths:
            by_path[os.path.realpath(p)].append(i)
    ev = {e["evidence_id"]: os.path.realpath(e["path"]) for e in case.info()["evidence"]}
    ids: dict[int, set[str]] = collections.defaultdict(set)
    for eid, path in ev.items():
        for i in by_path.get(path, ()):
            ids[i].add(eid)
    rows = forensics.open(case.path).to_arrow(["event_hash", "evidence_id"]).to_pydict()
    owner = dict(zip(rows["event_hash"], rows["evidence_id"]))
    sight = case.sightings().select(["event_hash", "evidence_id"]).to_pydict()
    extra: dict[int, set[str]] = collections.defaultdict(set)
    for h, eid in zip(sight["event_hash"], sight["evidence_id"]):
        for i in by_path.get(ev.get(eid, ""), ()):
            if owner.get(h) not in ids[i]:
                extra[i].add(h)
    return {i: (ids.get(i, set()), extra.get(i, set())) for i in range(len(samples))}


def view_of(tl: Any, ids: set[str], extra: set[str]) -> Any:
    """A sample's rows as a Timeline view (what ``forensics hunt`` reads had the sample its own case)."""
    parts, params = [], []
    if ids:
        parts.append(f"evidence_id IN ({', '.join('?' for _ in ids)})")
        params += sorted(ids)
    if extra:
        parts.append(f"event_hash IN ({', '.join('?' for _ in extra)})")
        params += sorted(extra)
    return tl._with("(" + " OR ".join(parts) + ")", *params) if parts else tl._with("FALSE")


# --- hunting ----------------------------------------------------------------------------------------------------

def hunt(view: Any, sigma_run: Any = None) -> Any:
    """The story of a view (``story(view, sigma=False)``), or with Sigma merged when ``sigma_run`` (a
    :class:`forensics.sigma.SigmaRun` restricted to the view's rows) is given.  Columns used here: host, technique,
    techniques (a list: every ATT&CK tag of a Sigma finding's rule, the story's technique otherwise), level, detector."""
    from forensics import hunt as _hunt
    from forensics.sigma import _technique_ids

    s = _hunt.story(view, sigma=sigma_run if sigma_run is not None else False)
    tags = {} if sigma_run is None else {
        rid: _technique_ids(ts) for rid, ts in zip(sigma_run.matches["rule_id"], sigma_run.matches["tags"])}
    s["techniques"] = [tags[r] if d == "sigma" and tags.get(r) else ([str(t)] if isinstance(t, str) and t else [])
                       for r, d, t in zip(s["rule_id"], s["detector"], s["technique"])]
    return s


def restrict(run: Any, hashes: set[str]) -> Any:
    """A Sigma run's matches on some rows only."""
    import dataclasses

    m = run.matches
    return dataclasses.replace(run, matches=m[m["event_hash"].isin(hashes)].reset_index(drop=True))


def _techs(story: Any) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for ts in story["techniques"]:
        c.update(dict.fromkeys(ts, 1))
    return c


def reason(rows: int, top: list[str], found: collections.Counter, unread: list[str]) -> str:
    """Why a labelled sample is missed."""
    if rows == 0:
        return "not collected: no rows" + (f" ({'; '.join(unread[:3])})" if unread else "")
    if not found:
        return f"no finding: {rows} rows ({', '.join(top)})"
    listed = [f"{t}×{n}" if n > 1 else t for t, n in sorted(found.items())]
    more = f", … {len(listed) - 20} more" if len(listed) > 20 else ""
    return "other techniques only: " + ", ".join(listed[:20]) + more


def top_events(view: Any, k: int = 6) -> list[str]:
    t = view._query("channel, event_id, source, count(*) AS n",
                    "GROUP BY channel, event_id, source ORDER BY n DESC, channel, event_id LIMIT " + str(k))
    d = t.to_pydict()
    return [f"{_short(c) if c else s}:{e if e is not None else '-'}×{n}"
            for c, e, s, n in zip(d["channel"], d["event_id"], d["source"], d["n"])]


# The events the curated detections of lateral movement and credential access read (issue 14 §3), counted per sample
# so that a miss tells whether the events a detection needs were there at all.
KEY_EVENTS = {
    "Security": (1102, 4624, 4625, 4648, 4656, 4661, 4662, 4663, 4672, 4688, 4697, 4698, 4720, 4732, 4768, 4769,
                 4771, 4776, 5140, 5145),
    "System": (104, 7045),
    "Microsoft-Windows-Sysmon/Operational": (1, 3, 8, 10, 11, 13, 17, 18, 19, 20, 21),
    "Microsoft-Windows-WMI-Activity/Operational": (5857, 5860, 5861),
    "Microsoft-Windows-WinRM/Operational": (6, 91),
    "Microsoft-Windows-PowerShell/Operational": (4103, 4104),
    "Windows PowerShell": (400, 800),
    "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational": (21, 22, 25),
    "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational": (1149,),
    "Microsoft-Windows-TaskScheduler/Operational": (106, 200),
}


def key_events(view: Any) -> list[str]:
    """How many of each :data:`KEY_EVENTS` event the view holds (those present), most frequent first."""
    clause = " OR ".join(f"(channel = ? AND event_id IN ({', '.join(map(str, ids))}))" for ids in KEY_EVENTS.values())
    t = view._with(f"({clause})", *KEY_EVENTS)._query("channel, event_id, count(*) AS n",
                                                         "GROUP BY channel, event_id ORDER BY n DESC, channel, event_id")
    d = t.to_pydict()
    return [f"{_short(c)}:{e}×{n}" for c, e, n in zip(d["channel"], d["event_id"], d["n"])]


def _short(channel: str) -> str:
    return (channel.replace("Microsoft-Windows-", "").replace("/Operational", "")
            .replace("TerminalServices-", "TS-"))


def evaluate(samples: list[Sample], case: Any, rules: list[Path] | None) -> dict[str, Any]:
    """Hunt every sample of a corpus: per sample, what the story and the story with Sigma found.  Samples with the
    same evidence items (the museum's, one per technique of an archive) are hunted once."""
    import forensics
    from forensics import sigma

    tl = forensics.open(case.path)
    where = sample_rows(case, samples)
    unread = _unread(case)
    run, sigma_s, sigma_cached = _sigma_run(tl, rules, Path(case.path)) if rules else (None, 0.0, False)
    story_s = 0.0
    told: dict[tuple[str, ...], dict[str, Any]] = {}
    out = []
    for i, s in enumerate(samples):
        if s.paths not in told:
            ids, extra = where[i]
            view = view_of(tl, ids, extra)
            hashes = set(view.to_arrow(["event_hash"]).column("event_hash").to_pylist())
            t1 = time.monotonic()
            plain = hunt(view)
            story_s += time.monotonic() - t1
            both = hunt(view, restrict(run, hashes)) if run is not None else None
            told[s.paths] = {"rows": len(hashes), "top": top_events(view) if hashes else [],
                             "key": key_events(view) if hashes else [], "story": plain,
                             "sigma": both, "hosts": view.hosts()}
        t = told[s.paths]
        rec = {**asdict(s), "rows": t["rows"], "top": t["top"], "key": t["key"]}
        for key in ("story", "sigma"):
            st = t[key]
            if st is None:
                continue
            found = _techs(st)
            rec[f"{key}_techniques"] = dict(found)
            rec[f"{key}_covered"] = covered(found, s.techniques) if s.techniques else None
            rec[f"{key}_labels"] = {lab: covered(found, [lab]) for lab in s.techniques}  # each label on its own
            rec[f"{key}_reason"] = None if rec[f"{key}_covered"] or not s.techniques else reason(
                t["rows"], t["top"], found, [u for p in s.paths for u in unread.get(os.path.realpath(p), [])])
            rec[f"{key}_findings"] = int(len(st))
            if s.kind == "baseline":
                hosts: dict[str, collections.Counter] = {}
                for host, lv in zip(st["host"].astype(object).where(st["host"].notna(), "(no host)"), st["level"]):
                    hosts.setdefault(str(host), collections.Counter())[lv] += 1
                rec[f"{key}_levels"] = {h_: dict(c) for h_, c in sorted(hosts.items())}
                rec[f"{key}_medium_up"] = [f"{h_}: {f}" for h_, f, lv in zip(st["host"], st["finding"], st["level"])
                                           if lv in MEDIUM_UP]
            if s.kind == "baseline" or not rec.get(f"{key}_covered", True):
                rec[f"{key}_examples"] = [f"{t_}: {f}"[:140] for t_, f in zip(st["technique"], st["finding"])][:6]
        if s.kind == "baseline":
            rec["hosts"] = {str(k): v for k, v in t["hosts"].items()}
        out.append(rec)
    return {"samples": out, "rows": len(tl), "sigma_s": sigma_s, "sigma_cached": sigma_cached, "story_s": story_s,
            "sigma_rules": (run.rules_loaded, run.rules_converted, run.rules_matched) if run else None}


def _sigma_run(tl: Any, rules: list[Path], case_dir: Path) -> tuple[Any, float, bool]:
    """One Sigma run over the corpus's case; kept beside the case (``sigma-run.pickle``) and reused while the rules,
    the engine's source and the case are the same, so that a rerun that changes only the story takes minutes less.
    Returns the run, the seconds it took when made, and whether it was reused."""
    import hashlib
    import pickle

    from forensics import sigma

    key = hashlib.sha256(json.dumps([sorted(map(str, rules)), Path(sigma.__file__).read_text(),
                                     (case_dir / "coverage-items.json").read_text(),
                                     sorted(p.name for p in (case_dir / "timeline").iterdir())]).encode()).hexdigest()
    cache = case_dir.parent / f"{case_dir.name}.sigma-run.pickle"
    if cache.exists():
        saved = pickle.loads(cache.read_bytes())
        if saved["key"] == key:
            return saved["run"], saved["seconds"], True
    t0 = time.monotonic()
    run = sigma.run(tl, rules)
    secs = time.monotonic() - t0
    cache.write_bytes(pickle.dumps({"key": key, "run": run, "seconds": secs}))
    return run, secs, False


def _unread(case: Any) -> dict[str, list[str]]:
    """Evidence item path -> files no collector read and problems, as short texts."""
    out: dict[str, list[str]] = {}
    for e in case.info()["evidence"]:
        out[os.path.realpath(e["path"])] = [str(u) for u in e.get("unread") or ()]
    marker = Path(case.path) / "coverage-items.json"
    for p, why in (json.loads(marker.read_text()).get("unknown", {}) if marker.exists() else {}).items():
        out[os.path.realpath(p)] = [f"{Path(p).name}: {why}"]
    return out


# --- one corpus, in its own process ----------------------------------------------------------------------------

def run_corpus(corpus: str, work: Path, rules: list[Path] | None, shared: Path = SHARED) -> dict[str, Any]:
    samples = corpus_samples(corpus, shared)
    SUCCESSORS.update(successors(rules or [SIGMA / d for d in RULE_DIRS]))
    case, collect_s = case_for(samples, work / f"case-{corpus}")
    res = evaluate(samples, case, rules)
    import forensics

    code = Path(forensics.__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(code), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    res.update(corpus=corpus, collect_s=collect_s, successors=dict(SUCCESSORS),
               code=f"{code} @ {head.stdout.strip()[:70]}")
    return res


# --- markdown ------------------------------------------------------------------------------------------------------

def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f} %)" if b else "0/0"


def summary(res: dict[str, Any]) -> dict[str, int]:
    lab = [s for s in res["samples"] if s["kind"] == "attack"]
    return {"samples": len(res["samples"]), "labelled": len(lab),
            "story": sum(bool(s.get("story_covered")) for s in lab),
            "sigma": sum(bool(s.get("sigma_covered")) for s in lab),
            "unlabelled": sum(s["kind"] == "unlabelled" for s in res["samples"]),
            "baselines": sum(s["kind"] == "baseline" for s in res["samples"])}


def markdown(results: list[dict[str, Any]], tactic_table: dict[str, str], commit: str = "") -> str:
    lines = []
    add = lines.append
    add("| corpus | samples | labelled | covered by the story | covered by the story with Sigma | rows | collect s | "
        "story s | Sigma s | wall s | CPU s | peak RSS MiB |")
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    tot = collections.Counter()
    for r in results:
        sm = summary(r)
        tot.update(sm)
        add(f"| {r['corpus']} | {sm['samples']} | {sm['labelled']} | {_pct(sm['story'], sm['labelled'])} | "
            f"{_pct(sm['sigma'], sm['labelled'])} | {r['rows']:,} | {r['collect_s']:.1f} | {r['story_s']:.1f} | "
            f"{r['sigma_s']:.1f}{' (earlier run)' if r.get('sigma_cached') else ''} | {r.get('wall_s', 0):.0f} | "
            f"{r.get('cpu_s', 0):.0f} | {r.get('peak_rss_mib', 0):,.0f} |")
    add(f"| **all** | {tot['samples']} | {tot['labelled']} | **{_pct(tot['story'], tot['labelled'])}** | "
        f"**{_pct(tot['sigma'], tot['labelled'])}** | {sum(r['rows'] for r in results):,} | "
        f"{sum(r['collect_s'] for r in results):.0f} | {sum(r['story_s'] for r in results):.0f} | "
        f"{sum(r['sigma_s'] for r in results):.0f} | {sum(r.get('wall_s', 0) for r in results):.0f} | "
        f"{sum(r.get('cpu_s', 0) for r in results):.0f} | |")
    add("")
    # per tactic, per technique
    by_tac: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    by_tech: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        for s in r["samples"]:
            if s["kind"] != "attack":
                continue
            for t in s["techniques"]:
                tac = _tactic(s, t, tactic_table)
                for c in (by_tac[tac], by_tech[(tac, t)]):
                    c["n"] += 1
                    c["story"] += bool(s.get("story_labels", {}).get(t))
                    c["sigma"] += bool(s.get("sigma_labels", {}).get(t))
    add("Per tactic and technique, each label of a sample on its own (a sample with several labels counts once per "
        "label, covered when a finding has that technique, its parent or a sub-technique); the tactic as the corpus "
        "labels it, else as SigmaHQ's rules tag the technique most often:\n")
    add("| tactic | labels | story | story + Sigma |")
    add("|---|---|---|---|")
    for tac, c in sorted(by_tac.items(), key=lambda kv: (-kv[1]["n"], kv[0])):
        add(f"| {tac} | {c['n']} | {_pct(c['story'], c['n'])} | {_pct(c['sigma'], c['n'])} |")
    add("")
    add("Per technique:\n")
    add("| tactic | technique | labels | story | story + Sigma |")
    add("|---|---|---|---|---|")
    for (tac, t), c in sorted(by_tech.items()):
        add(f"| {tac} | {t} | {c['n']} | {c['story']} | {c['sigma']} |")
    add("")
    # baselines
    base = [s for r in results for s in r["samples"] if s["kind"] == "baseline"]
    if base:
        add("Clean baselines: findings per host by level (goal: at most 5 of level medium or above per host; "
            "curated findings at the level the story gives them):\n")
        add("| baseline | host | rows | story: medium+ | story + Sigma: medium+ | story + Sigma: low / informational | "
            "medium+ findings |")
        add("|---|---|---|---|---|---|---|")
        for s in base:
            hosts = sorted(set(s.get("hosts", {})) | set(s.get("story_levels", {})) | set(s.get("sigma_levels", {})))
            for h in hosts:
                a = s.get("story_levels", {}).get(h, {})
                b = s.get("sigma_levels", {}).get(h, {})
                if h == "None" and not a and not b:  # the archive's own file-system rows: no host, no finding
                    continue
                kinds = collections.Counter(_kind(x.split(": ", 1)[1]) for x in s.get("sigma_medium_up", [])
                                            if x.split(": ", 1)[0] == h)
                med = [f"{k} ×{n}" if n > 1 else k for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))]
                add(f"| {s['name']} | {h} | {s.get('hosts', {}).get(h, 0):,} | {sum(a.get(lv, 0) for lv in MEDIUM_UP)} | "
                    f"{sum(b.get(lv, 0) for lv in MEDIUM_UP)} | {b.get('low', 0)} / {b.get('informational', 0)} | "
                    f"{'; '.join(med) or '-'} |")
        add("")
    # misses
    for r in results:
        miss = [s for s in r["samples"] if s["kind"] == "attack" and not s.get("sigma_covered", s.get("story_covered"))
                or (s["kind"] == "attack" and not s.get("story_covered"))]
        if not miss:
            continue
        add(f"Misses, {r['corpus']} ({len(miss)}):\n")
        add("| sample | label | story | story + Sigma |")
        add("|---|---|---|---|")
        for s in miss:
            a = "covered" if s.get("story_covered") else s.get("story_reason")
            b = "covered" if s.get("sigma_covered") else s.get("sigma_reason", "-")
            add(f"| {_cell(s['name'])} | {', '.join(s['techniques'])} | {_cell(a)} | {_cell(b)} |")
        add("")
    unl = [s for r in results for s in r["samples"] if s["kind"] == "unlabelled"]
    if unl:
        add("Unlabelled samples (not counted): " + "; ".join(f"{s['corpus']} {_cell(s['name'])}" for s in unl) + "\n")
    return "\n".join(lines)


def misses_markdown(results: list[dict[str, Any]], tactic_table: dict[str, str], commit: str = "") -> str:
    """Every labelled sample the story (without Sigma) misses, by corpus, tactic and technique, with why, what Sigma
    adds, the findings the story did give and the sample's most frequent events: a work list for the curated helpers."""
    lines = [f"# Attack coverage: misses of the story (without Sigma){' at ' + commit if commit else ''}", "",
             "Reasons: *not collected* (no rows from the sample); *no finding* (rows, but the story finds nothing: the "
             "most frequent channel:event id follow, to judge whether the events a detection needs are there); "
             "*other techniques only* (findings, none with the label or its parent/sub-technique).", ""]
    for r in results:
        sm = summary(r)
        lines.append(f"## {r['corpus']}: story {_pct(sm['story'], sm['labelled'])}, with Sigma "
                     f"{_pct(sm['sigma'], sm['labelled'])}")
        lines.append("")
        groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
        for s in r["samples"]:
            if s["kind"] == "attack" and not s.get("story_covered"):
                t = s["techniques"][0]
                groups[(_tactic(s, t, tactic_table), t)].append(s)
        first = ("Lateral Movement", "Credential Access")  # what the curated helpers work on
        for (tac, t), ss in sorted(groups.items(), key=lambda kv: (kv[0][0] not in first, kv[0])):
            lines.append(f"### {tac} / {t} ({len(ss)})")
            for s in ss:
                sig = "covered by Sigma" if s.get("sigma_covered") else f"Sigma: {s.get('sigma_reason', '-')}"
                sig_t = ", ".join(sorted(s.get("sigma_techniques") or {}))
                lines.append(f"- `{s['name']}` [{', '.join(s['techniques'])}]{' — ' + s['note'] if s['note'] else ''}")
                lines.append(f"  - story: {s['story_reason']}")
                if s.get("story_examples"):
                    lines.append(f"  - story findings: {' | '.join(s['story_examples'][:4])}")
                lines.append(f"  - {sig}" + (f" (Sigma techniques: {sig_t})" if sig_t and not s.get('sigma_covered') else ""))
                if s["rows"] and not s["story_reason"].startswith("no finding"):
                    lines.append(f"  - events: {', '.join(s['top'])}")
                if s["rows"]:
                    lines.append(f"  - key events: {', '.join(s.get('key') or []) or 'none of KEY_EVENTS'}")
            lines.append("")
    base = [s for r in results for s in r["samples"] if s["kind"] == "baseline"]
    if base:
        lines += ["## Clean baselines: the story's findings (at their levels; goal: at most 5 medium+ per host)", ""]
        for s in base:
            for h in sorted(s.get("story_levels", {})):
                kinds = collections.Counter(_kind(x.split(": ", 1)[1]) for x in s.get("story_medium_up", [])
                                            if x.split(": ", 1)[0] == h)
                listed = "; ".join(f"{k} ×{n}" if n > 1 else k for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
                lines.append(f"- {s['name']} / {h}: {sum(kinds.values())}: {listed}")
        lines.append("")
    return "\n".join(lines)


def _kind(finding: str) -> str:
    """What a finding is, without its details: the story's text before its colon, a Sigma rule's title."""
    return re.sub(r" \(\d+ events?\)$", "", finding.split(": ", 1)[0] if ": " in finding else finding)


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


# --- main -----------------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--corpus", default=",".join(CORPORA))
    ap.add_argument("--rules", type=Path, nargs="*", default=[SIGMA / d for d in RULE_DIRS])
    ap.add_argument("--no-sigma", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--misses", type=Path, help="also write the misses of the story, by technique, here")
    ap.add_argument("--report-only", action="store_true", help="render the markdown from --work's result files")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    rules = None if a.no_sigma else a.rules
    if a.child:  # one corpus, in this process
        res = run_corpus(a.corpus, a.work, rules)
        (a.work / f"result-{a.corpus}.json").write_text(json.dumps(res, default=str, indent=1))
        return
    results = []
    for corpus in a.corpus.split(","):
        if a.report_only:
            results.append(json.loads((a.work / f"result-{corpus}.json").read_text()))
            continue
        cmd = [sys.executable, __file__, "--work", str(a.work), "--corpus", corpus, "--child"]
        cmd += ["--no-sigma"] if a.no_sigma else ["--rules", *map(str, a.rules)]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            sys.exit(f"{corpus}: exit {proc.returncode}")
        res = json.loads((a.work / f"result-{corpus}.json").read_text())
        res["peak_rss_mib"] = usage.ru_maxrss / 1024
        res["wall_s"] = time.monotonic() - t0
        res["cpu_s"] = usage.ru_utime + usage.ru_stime
        (a.work / f"result-{corpus}.json").write_text(json.dumps(res, default=str, indent=1))
        print(f"{corpus}: {summary(res)} {res['wall_s']:.0f} s, {res['peak_rss_mib']:.0f} MiB", file=sys.stderr)
        results.append(res)
    for r in results:
        SUCCESSORS.update(r.get("successors") or {})
    table = _tactic_table(_rule_index([SIGMA / "rules", SIGMA / "rules-emerging-threats"]))
    text = markdown(results, table)
    if a.misses:
        a.misses.write_text(misses_markdown(results, table) + "\n")
    if a.out:
        a.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
