"""Capture: one thread per source reads frames into the multiplexer."""

from __future__ import annotations

import time

from ..scheduling import FrameMux, Stops
from ..sources import Frame, FrameSource


class CaptureStage:
    """Reads ``source`` until it ends or reading stops. A file read with ``realtime`` is paced at its frame
    rate, so that, like a live source, it drops the frames the pipeline cannot keep up with."""

    def __init__(self, index: int, source: FrameSource, mux: FrameMux, stops: Stops, realtime: bool):
        self.index, self.source, self.mux, self.stops = index, source, mux, stops
        self.realtime = realtime and not source.live
        self.frames_read = 0

    def run(self) -> None:
        start = time.perf_counter()
        try:
            while not self.stops.reading.is_set():
                item = self.source.read()
                if item is None:
                    break
                image, stamp, name = item
                if self.realtime:
                    delay = start + stamp - time.perf_counter()
                    if delay > 0 and self.stops.reading.wait(delay):
                        break
                if not self.mux.put(self.index, Frame(self.index, self.frames_read, stamp, image,
                                                      time.perf_counter(), name)):
                    break
                self.frames_read += 1
        finally:
            self.mux.close(self.index)
