"""Runtime side of fer_engine: numpy, OpenCV and onnxruntime only (never torch), so it runs on a Jetson."""
