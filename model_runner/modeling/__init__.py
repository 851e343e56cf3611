"""The deployable classifier, its heads, its serving variants (int8, ONNX Runtime) and
``serving.load_for_serving``, the one place that picks among them."""
