r"""``python -m stair_pyg.profiling``: the profile of :mod:`stair_pyg.profiling.bench` (also the
entry point of its isolated workers)."""
import sys

from stair_pyg.profiling.bench import main

sys.exit(main())
