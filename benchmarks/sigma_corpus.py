"""All SigmaHQ rules over a case (run by hand):

    .venv/bin/python benchmarks/sigma_corpus.py CASE_DIR [RULES_ROOT]

Prints rules loaded / converted / matched, conversion and evaluation errors by kind, and the
runtime.  Figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import collections
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import forensics  # noqa: E402
from forensics import sigma  # noqa: E402


def main() -> None:
    case = sys.argv[1]
    rules_root = Path(sys.argv[2] if len(sys.argv) > 2 else ROOT.parent / "shared" / "sigma")
    dirs = [rules_root / d for d in ("rules", "rules-emerging-threats", "rules-threat-hunting", "rules-dfir")]
    tl = forensics.open(case)
    t = time.perf_counter()
    run = sigma.run(tl, dirs)
    elapsed = time.perf_counter() - t
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"case: {case}, {len(tl)} rows")
    print(f"rules loaded {run.rules_loaded}, converted {run.rules_converted}, matched {run.rules_matched} "
          f"({len(run.matches)} rows), {elapsed:.1f} s")
    print("not convertible:", dict(collections.Counter(v.split(':')[0] for v in run.conversion_errors.values())))
    print("failed to evaluate:", dict(collections.Counter(v.split(':')[0] for v in run.evaluation_errors.values())))
    for rid, why in sorted(run.evaluation_errors.items()):
        print(f"  {rid}: {why[:160]}")


if __name__ == "__main__":
    main()
