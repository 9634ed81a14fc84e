"""Sigma on real evidence: what fires where.  Run by hand:

    .venv/bin/pip install -e '.[bench,sigma]'
    .venv/bin/python benchmarks/sigma_real.py --work /tmp/sr [--part regression,archives]

* ``regression``: the 96 SigmaHQ regression samples (``../shared/sigma/regression_data``) collected into one
  case and all SigmaHQ rules run over it; per sample: does its rule fire, how many times against the
  sample's ``match_count``, and which other rules fire on it.
* ``archives``: every EVTX 7z archive of ``AndrewRathbun-DFIRArtifactMuseum/Windows/EventLogs`` (clean
  baselines RathbunVM Win10/Win11, the APTSimulator runs, the Belkasoft CTF host, the Stolen Szechuan
  intrusion) extracted with ``7z x`` into ``--work`` (the loose EVTX, whatever reads the archive), collected, and
  all rules of ``rules/windows`` run over it; per host: findings (``sigma.findings``, 1 h bursts) by level,
  and the medium-and-above rules that fired.

Markdown goes to stdout; copy it into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
RULE_DIRS = ["rules", "rules-emerging-threats", "rules-threat-hunting", "rules-dfir"]
ARCHIVES = SHARED / "evidence" / "AndrewRathbun-DFIRArtifactMuseum" / "Windows" / "EventLogs"
MEDIUM_UP = ("medium", "high", "critical")


def _case(evidence: Path, case_dir: Path):
    import forensics

    if (case_dir / "case.json").exists():
        return forensics.Case(case_dir)
    case = forensics.Case(case_dir, create=True)
    case.collect([evidence], workers=1, only=["evtx"])
    return case


def regression(work: Path) -> None:
    import forensics
    from forensics import sigma

    case = _case(SHARED / "sigma" / "regression_data", work / "case-regression")
    t0 = time.monotonic()
    run = sigma.run(forensics.open(case.path), [SHARED / "sigma" / d for d in RULE_DIRS])
    secs = time.monotonic() - t0
    seen_in = case.sightings().to_pandas().groupby("event_hash")["evidence_path"].apply(set).to_dict()
    fired: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)  # sample -> rule id -> matches
    titles = dict(zip(run.matches["rule_id"], run.matches["title"]))
    for rid, h in zip(run.matches["rule_id"], run.matches["event_hash"]):
        for path in seen_in[h]:
            fired[path][rid] += 1
    print(f"### The 96 regression samples ({run.rules_loaded:,} rules, {run.rows} rows, {secs:.1f} s)\n")
    print("| sample (rule it tests) | its rule fires | its matches / match_count | other rules firing on the sample |")
    print("|---|---|---|---|")
    ok = exact = 0
    for info in sorted((SHARED / "sigma" / "regression_data").rglob("info.yml")):
        meta = yaml.safe_load(info.read_text())
        rid, title = meta["rule_metadata"][0]["id"], meta["rule_metadata"][0]["title"]
        test = meta["regression_tests_info"][0]
        path = test["path"].removeprefix("regression_data/")
        got = fired.get(path, collections.Counter())
        ok += rid in got
        exact += got.get(rid, 0) == test.get("match_count")
        others = ", ".join(sorted(f"{titles[r]}" + (f" ×{n}" if n > 1 else "") for r, n in got.items() if r != rid))
        print(f"| {title} | {'yes' if rid in got else '**no**'} | {got.get(rid, 0)} / {test.get('match_count')} | "
              f"{others or '-'} |")
    print(f"\n{ok}/96 samples fire their rule; {exact}/96 with exactly the sample's match_count.\n")


def archives(work: Path) -> None:
    import forensics
    from forensics import sigma

    print("### All rules of rules/windows over the EVTX archives of the DFIR Artifact Museum\n")
    print("| archive | rows | host | findings medium+ (matches) | low | informational | medium+ rules that fired (bursts) |")
    print("|---|---|---|---|---|---|---|")
    for archive in sorted(ARCHIVES.rglob("*.7z")):
        name = archive.relative_to(ARCHIVES).parent.as_posix().replace("/", "-")
        out = work / "extract" / name
        if not out.exists():
            subprocess.run(["7z", "x", "-y", f"-o{out}", str(archive)], check=True, capture_output=True)
        case = _case(out, work / f"case-{name}")
        tl = forensics.open(case.path)
        run = sigma.run(tl, SHARED / "sigma" / "rules" / "windows")
        f = sigma.findings(run)
        m = run.matches
        for host in sorted(set(tl.hosts()) | set(f["host"])):
            fh = f[f["host"] == host]
            up = fh[fh["level"].isin(MEDIUM_UP)]
            rules = collections.Counter(up["title"])
            ranked = sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))
            listed = "; ".join(f"{t} ({n})" for t, n in ranked[:8]) + (f"; … {len(ranked) - 8} more" if len(ranked) > 8 else "")
            mh = m[m["host"].astype(object).fillna(sigma.UNKNOWN_HOST) == host]
            print(f"| {name} | {tl.hosts().get(host, 0):,} | {host} | {len(up)} ({int(mh['level'].isin(MEDIUM_UP).sum())}) | "
                  f"{int((fh['level'] == 'low').sum())} | {int((fh['level'] == 'informational').sum())} | {listed or '-'} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--part", default="regression,archives")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    parts = a.part.split(",")
    if "regression" in parts:
        regression(a.work)
    if "archives" in parts:
        archives(a.work)


if __name__ == "__main__":
    main()
