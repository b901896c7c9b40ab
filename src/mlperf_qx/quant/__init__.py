"""Symmetric per-tensor int8 quantization: annotate -> observe -> scales -> insert Q/DQ -> [lower]."""
