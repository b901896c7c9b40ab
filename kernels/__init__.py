"""Numba kernels of mlperf-qx (installed as ``mlperf_qx.kernels``).

Every kernel has a plain-numpy reference beside it; property tests assert they agree exactly.
"""

from . import _parallel  # noqa: F401  (numba's threads start with passive waits before any parallel kernel runs)
