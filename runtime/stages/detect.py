"""Detect, track and crop: parallel workers, each with its own detector, hand frames on in capture order.

In turn (one frame at a time, in capture order) each frame's faces get their track ids, and the
re-classification policy picks the faces the classifier has to see; only their crops go on to inference.
Between two detections (``detect_every`` > 1) the tracks' boxes are carried forward at their velocity; a
carried box whose crop no longer looks like the face detected there makes the frame a detection frame, and so
does a track the last detection missed while its face may still be in the frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..reclassify import ClassificationMemory, ReclassifyPolicy
from ..results import Detections
from ..scheduling import END, Channel, FrameMux, Stops, Turns
from ..sources import Frame
from ..stats import StageTimes
from ..tracking import Tracker, crop_signatures

SPARE_BACKLOG = 1  # frames waiting for the classifier that pause the spare workers


@dataclass
class Work:
    """One frame on its way from detection to the track stage: its faces, the crops to classify (the faces
    ``classified`` marks, in order), then their probabilities."""
    frame: Frame
    detections: Detections
    crops: np.ndarray
    classified: np.ndarray  # bool per face
    track_ids: list[int] | None = None  # None for independent photos
    ended: list[int] = field(default_factory=list)  # tracks that ended at this frame
    probs: np.ndarray | None = None


class SourceFaces:
    """What detection keeps per source: its tracks and when each was last classified."""

    def __init__(self, policy: ReclassifyPolicy):
        self.tracker = Tracker()
        self.memory = ClassificationMemory(policy)


class DetectStage:
    """``detectors[:dedicated]`` always work; the rest are spares that take a frame only while the classifier
    keeps up (its inbox nearly empty): then detection is what holds the run back, and the classifier's cores
    are free to help.

    With ``detect_every`` N > 1 a source's frames between two detected ones get its tracks' boxes carried
    forward, except for ``independent`` sources (unrelated photos), whose every image is detected."""

    def __init__(self, detectors: list, dedicated: int, crop: Callable[[np.ndarray, Detections], np.ndarray],
                 mux: FrameMux, out: Channel, stops: Stops, times: StageTimes, *, detect_every: int,
                 independent: list[bool], keep_images: bool, reclassify: ReclassifyPolicy,
                 redetect_change: float):
        self.detectors, self.dedicated, self.crop = detectors, dedicated, crop
        self.mux, self.out, self.stops, self.times = mux, out, stops, times
        self.detect_every, self.independent, self.keep_images = detect_every, independent, keep_images
        self.reclassify, self.redetect_change = reclassify, redetect_change
        # Crop signatures cost a resize per face: computed only where a policy compares them.
        self._signatures = reclassify.mode != "every" or detect_every > 1
        self._turns = Turns(len(detectors))
        self._sources: dict[int, SourceFaces] = {}
        self.detected_frames = 0

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
            carry = frame.index % self.detect_every != 0 and not self.independent[frame.source]
            detections = None if carry else detector.detect(frame.image)
            computed = time.perf_counter() - started
            if not turns.wait(ticket, stopped):
                return
            try:
                resumed = time.perf_counter()
                work = self._in_turn(frame, detections, detector)
                if not self.keep_images:
                    frame.image = None
                self.times.add("detect", computed + time.perf_counter() - resumed)
                if not self.out.put(work):
                    return
            finally:
                turns.done()
        if turns.finished():
            self.out.put(END)

    def _in_turn(self, frame: Frame, detections: Detections | None, detector) -> Work:
        """Track ids, carried boxes and the faces to classify: one frame at a time, in capture order."""
        if self.independent[frame.source]:  # unrelated photos: each detected, every face classified
            self.detected_frames += 1
            crops = self.crop(frame.image, detections)
            return Work(frame, detections, crops, np.ones(len(crops), bool))
        faces = self._sources.setdefault(frame.source, SourceFaces(self.reclassify))
        tracker, signatures, ended = faces.tracker, None, []
        track_ids = None
        height, width = frame.image.shape[:2]
        if detections is None and tracker.detected and not tracker.uncertain(frame.time, width, height):
            carried, carried_ids = tracker.carried(frame.time)
            crops = self.crop(frame.image, carried)
            signatures = crop_signatures(crops)
            if not tracker.lost(carried_ids, signatures, self.redetect_change):
                detections, track_ids = carried, carried_ids
        if track_ids is None:
            if detections is None:  # the first frame of a source, or a carried box lost its face
                detections = detector.detect(frame.image)
            self.detected_frames += 1
            track_ids, ended = tracker.update(detections, frame.time)
            crops = self.crop(frame.image, detections)
            signatures = crop_signatures(crops) if self._signatures else None
            if signatures is not None:
                tracker.remember(track_ids, signatures)
            faces.memory.forget(ended)
        chosen = faces.memory.select(track_ids, detections.boxes, signatures, frame.time)
        return Work(frame, detections, crops[chosen], chosen, track_ids, ended)
