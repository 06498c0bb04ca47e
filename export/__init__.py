"""Export side of fer_engine: checkpoints to ONNX (fp32, int8, fp16) and TensorRT engines."""
