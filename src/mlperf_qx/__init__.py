"""mlperf-qx: export, quantize and verify MLPerf reference models."""

__version__ = "0.1.0"
