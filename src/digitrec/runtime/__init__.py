"""Running trained models: inference backends (PyTorch, ONNX Runtime) and exported files."""
