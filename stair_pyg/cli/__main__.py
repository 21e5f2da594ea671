r"""``python -m stair_pyg.cli`` (for example
``torchrun --nproc-per-node 4 -m stair_pyg.cli train ...``)."""
import sys

from stair_pyg.cli import main

sys.exit(main())
