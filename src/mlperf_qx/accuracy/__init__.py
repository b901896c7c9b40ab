"""Standalone accuracy scripts in MLPerf's shape (numpy only; runnable without qx installed)."""
