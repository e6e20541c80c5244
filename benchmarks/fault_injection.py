"""More kills than CI runs: tests/test_faults.py with INTERP_FAULT_KILLS set.

    python benchmarks/fault_injection.py [--kills 100]

Kills training ``kills - 8`` times at random moments (one run, resumed after each kill), plus
the four injected kills inside checkpoint and metrics writes and six kills of ``interp
analyze``; every check of the test applies (docs in tests/test_faults.py). Prints pytest's
summary and the wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="kills in all (at least 12)")
    args = parser.parse_args()
    started = time.time()
    test = Path(__file__).parents[1] / "tests" / "test_faults.py"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                            env={**os.environ, "INTERP_FAULT_KILLS": str(max(args.kills, 12))})
    print(f"{args.kills} kills requested, {time.time() - started:.0f} s")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
