"""IR-lowering on onnx_ir: a pass framework and the canonicalization passes."""
