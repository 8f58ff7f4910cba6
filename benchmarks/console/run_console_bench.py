"""The console benchmark, one command: ``python benchmarks/console/run_console_bench.py [--quick]``.

See benchmarks/README.md ("Console benchmark") for what it measures and how to read
results/CONSOLE.md.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # consolebench, and hubbench's helpers

from consolebench.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
