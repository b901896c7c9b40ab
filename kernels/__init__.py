"""Numba kernels of mlperf-qx (installed as ``mlperf_qx.kernels``).

Every kernel has a plain-numpy reference beside it; property tests assert they agree exactly.
"""
