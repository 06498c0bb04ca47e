"""Smooth and render: tracked faces get smoothed probabilities, frames their overlay."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from ..render import Annotator
from ..results import Face, FrameResult, faces_from_probs
from ..scheduling import END, Channel
from ..stats import StageTimes
from ..smoothing import Smoother


class TrackStage:
    """Track ids come from the detect stage; here each source's tracks get their probabilities smoothed, except
    ``independent`` sources (unrelated photos: no tracks, nothing carried over). With ``render``, each frame
    that kept its image is annotated, with the run's frame rate and latency."""

    def __init__(self, inbox: Channel, out: Channel, times: StageTimes, *, labels: tuple[str, ...],
                 independent: list[bool], smooth: float, render: bool):
        self.inbox, self.out, self.times = inbox, out, times
        self.labels, self.independent, self.smooth, self.render = labels, independent, smooth, render
        self._smoothers: dict[int, Smoother] = {}
        self._annotator = Annotator()
        self._frames_seen: deque = deque(maxlen=30)
        self._fps = 0.0

    def run(self) -> None:
        while True:
            work = self.inbox.get()
            if work is END:
                break
            started = time.perf_counter()
            result = self._result(work)
            self._count_frame(started)
            frame = work.frame
            if self.render and frame.image is not None:
                latency = (started - frame.captured) * 1000.0
                overlay = f"{self._fps:.0f} FPS  {latency:.0f} ms  {len(result.faces)} faces"
                result.image = self._annotator.annotate(frame.image, result, overlay)
            self.times.add("track+render", time.perf_counter() - started)
            if not self.out.put((result, frame.captured)):
                return
        self.out.put(END)

    def _result(self, work) -> FrameResult:
        frame = work.frame
        probs = work.probs if work.probs is not None else np.zeros((0, len(self.labels)), np.float32)
        if self.independent[frame.source]:
            faces: list[Face] = faces_from_probs(work.detections, probs, self.labels)
        else:
            smoother = self._smoothers.setdefault(frame.source, Smoother(self.smooth))
            smoothed = smoother.update(work.track_ids, work.classified, probs)
            smoother.forget(work.ended)
            faces = faces_from_probs(work.detections, smoothed, self.labels)
            for face, track in zip(faces, work.track_ids):
                face.track = track
        return FrameResult(frame.index, frame.time, frame.source, faces, frame.name)

    def _count_frame(self, now: float) -> None:
        self._frames_seen.append(now)
        if len(self._frames_seen) > 1:
            self._fps = (len(self._frames_seen) - 1) / max(self._frames_seen[-1] - self._frames_seen[0], 1e-6)
