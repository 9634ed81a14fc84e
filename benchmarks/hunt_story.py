"""One hunt on real evidence: the story without and with Sigma, its time, memory and findings per level.  By hand:

    .venv/bin/python benchmarks/hunt_story.py --work /tmp/hs [--rules ../shared/sigma/rules/windows]

Each EVTX 7z archive of ``AndrewRathbun-DFIRArtifactMuseum/Windows/EventLogs`` (clean baselines, the APTSimulator
runs, the Belkasoft CTF host, the Stolen Szechuan intrusion) and the sample case are collected into a case of
their own (the archive read as it is, by the ``target`` collector); then, each in a fresh process so that its
peak memory is its own: ``story()`` (curated helpers), and ``story(sigma=RULES)`` (curated + every rule).
Markdown goes to stdout; copy it into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARCHIVES = SHARED / "evidence" / "AndrewRathbun-DFIRArtifactMuseum" / "Windows" / "EventLogs"

_MEASURE = """
import json, re, sys, time
import forensics
from forensics import hunt
tl = forensics.open(sys.argv[1])
t0 = time.monotonic()
st = tl.story(sigma=sys.argv[2] if len(sys.argv) > 2 else False)
s = hunt.summary(st)
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))  # this process's own peak
print(json.dumps({"seconds": time.monotonic() - t0, "rss_mb": peak / 1024,
                  "rows": len(tl), "findings": s["findings"], "sigma": s["by_detector"]["sigma"], "levels": s["levels"],
                  "hosts": len(s["hosts"])}))
"""


def _measure(case: Path, rules: Path | None) -> dict:
    args = [sys.executable, "-c", _MEASURE, str(case)] + ([str(rules)] if rules else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--rules", type=Path, default=SHARED / "sigma" / "rules" / "windows")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import forensics
    from forensics import sample

    cases = []
    for archive in sorted(ARCHIVES.rglob("*.7z")):
        case_dir = args.work / archive.stem
        if not (case_dir / "case.json").exists():
            forensics.Case(case_dir, create=True).collect([archive], workers=1)
        cases.append((archive.relative_to(ARCHIVES).as_posix(), case_dir))
    sample_dir = args.work / "sample"
    if not (sample_dir / "case" / "case.json").exists():
        sample.build(sample_dir / "evidence", seed=7)
        forensics.Case(sample_dir / "case", create=True, tz="Asia/Kolkata").collect([sample_dir / "evidence"], workers=1)
    cases.append(("sample case (seed 7)", sample_dir / "case"))

    print(f"| evidence | rows | story: s / MB | findings (crit/high/med/low/info) | with `{args.rules.name}` rules: "
          "s / MB | findings (of which Sigma) | crit/high/med/low/info |")
    print("|---|---:|---:|---|---:|---:|---|")
    for name, case_dir in cases:
        a, b = _measure(case_dir, None), _measure(case_dir, args.rules)

        def lv(m: dict) -> str:
            return "/".join(str(m["levels"][k]) for k in ("critical", "high", "medium", "low", "informational"))

        print(f"| {name} | {a['rows']:,} | {a['seconds']:.1f} / {a['rss_mb']:.0f} | {a['findings']} ({lv(a)}) | "
              f"{b['seconds']:.1f} / {b['rss_mb']:.0f} | {b['findings']} ({b['sigma']}) | {lv(b)} |", flush=True)


if __name__ == "__main__":
    main()
