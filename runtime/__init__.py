"""Runtime side of fer_engine: numpy, OpenCV and onnxruntime only (never torch), so it runs on a Jetson.

    from fer_engine.runtime import Recognizer, Pipeline, SourceSpec
    faces = Recognizer().predict(image)                       # one image -> list[Face]
    for result in Pipeline([SourceSpec("video", "in.mp4")]):  # a stream -> FrameResult per frame
        ...
"""

from .detectors import DetectorConfig
from .pipeline import Pipeline, PipelineConfig
from .recognizer import Recognizer, RecognizerConfig
from .results import Detections, Face, FrameResult
from .sources import SourceSpec

__all__ = ["DetectorConfig", "Detections", "Face", "FrameResult", "Pipeline", "PipelineConfig", "Recognizer",
           "RecognizerConfig", "SourceSpec"]
