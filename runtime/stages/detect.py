"""Detect and crop: parallel workers, each with its own detector, hand frames on in capture order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..results import Detections
from ..scheduling import END, Channel, FrameMux, Stops, Turns
from ..sources import Frame
from ..stats import StageTimes

SPARE_BACKLOG = 1  # frames waiting for the classifier that pause the spare workers


@dataclass
class Work:
    """One frame on its way from detection to the tracker: its faces, their crops, then their probabilities."""
    frame: Frame
    detections: Detections
    crops: np.ndarray
    probs: np.ndarray | None = None


class DetectStage:
    """``detectors[:dedicated]`` always work; the rest are spares that take a frame only while the classifier
    keeps up (its inbox nearly empty): then detection is what holds the run back, and the classifier's cores
    are free to help.

    With ``detect_every`` N > 1 a source's frames between two detected ones reuse its boxes, except for
    ``independent`` sources (unrelated photos)."""

    def __init__(self, detectors: list, dedicated: int, crop: Callable[[np.ndarray, Detections], np.ndarray],
                 mux: FrameMux, out: Channel, stops: Stops, times: StageTimes, *, detect_every: int,
                 independent: list[bool], keep_images: bool):
        self.detectors, self.dedicated, self.crop = detectors, dedicated, crop
        self.mux, self.out, self.stops, self.times = mux, out, stops, times
        self.detect_every, self.independent, self.keep_images = detect_every, independent, keep_images
        self._turns = Turns(len(detectors))
        self._last_detections: dict[int, Detections] = {}

    def workers(self) -> list[tuple[str, Callable[[], None]]]:
        """(thread name, loop) for each worker."""
        return [(f"detect-{i}", lambda d=detector, s=i >= self.dedicated: self.run(d, s))
                for i, detector in enumerate(self.detectors)]

    def run(self, detector, spare: bool) -> None:
        turns, stopped = self._turns, self.stops.now
        while True:
            while spare and self.out.backlog() >= SPARE_BACKLOG and not stopped.is_set():
                time.sleep(0.001)
            frame, ticket = turns.take(self.mux)
            if frame is END:
                break
            started = time.perf_counter()
            self.times.add("queue", started - frame.captured)
            reuse = frame.index % self.detect_every != 0 and not self.independent[frame.source]
            detections = None if reuse else detector.detect(frame.image)
            computed = time.perf_counter() - started
            if not turns.wait(ticket, stopped):
                return
            try:
                # In turn: a frame that reuses boxes gets those of its source's last detected frame.
                resumed = time.perf_counter()
                if detections is None:
                    detections = self._last_detections.get(frame.source)
                    if detections is None:  # a live source dropped the frame that was to be detected
                        detections = detector.detect(frame.image)
                self._last_detections[frame.source] = detections
                crops = self.crop(frame.image, detections)
                if not self.keep_images:
                    frame.image = None
                self.times.add("detect", computed + time.perf_counter() - resumed)
                if not self.out.put(Work(frame, detections, crops)):
                    return
            finally:
                turns.done()
        if turns.finished():
            self.out.put(END)
