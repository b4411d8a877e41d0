"""Front doors: turn a quantized model into faithful Relax (see ``tvm_qdq.frontend.onnx``)."""
