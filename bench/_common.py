"""What every benchmark shares: the tiny mode the test suite runs them in.

`--tiny` on the command line (or SLUICE_BENCH_TINY=1) runs a benchmark through the same code path at a size that
takes seconds, so `./sluice test` notices a benchmark that a later change broke. Figures from a tiny run say
nothing about performance.
"""

from __future__ import annotations

import os
import sys
from typing import TypeVar

T = TypeVar("T")

TINY = "--tiny" in sys.argv[1:] or os.environ.get("SLUICE_BENCH_TINY") == "1"


def size(full: T, tiny: T) -> T:
    """The full-size value, or the tiny one when the benchmark runs in tiny mode."""
    return tiny if TINY else full
