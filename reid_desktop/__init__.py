"""reid-desktop: detect, track and re-identify people across cameras."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

# numpy's OpenBLAS threads spin after each product and starve FAISS's OpenMP threads (and the
# other way round) on small machines: the matcher's per-frame product plus an index look-up took
# 7.7 ms with both pools at 2 threads, 3.0 ms with numpy's BLAS on one (bench/scale_bench.py).
# Its products are small, so one thread loses nothing. Set before numpy loads; a user's value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

try:
    __version__ = version("reid-desktop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
