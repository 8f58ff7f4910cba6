"""One command for the hub benchmark: ``python benchmarks/run_hub_bench.py [--quick]``.

See benchmarks/README.md for what it measures and how to read results/RESULTS.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubbench.runner import main

if __name__ == "__main__":
    sys.exit(main())
