"""Framework importers: a framework model in, an onnx_ir model and a way to run the original out."""
