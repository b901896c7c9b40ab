"""Calibration data: readers (npy folder, npz, MLPerf calibration lists), preprocessing, caches."""
