"""Write: each result goes to its source's sinks (files), the display slot and the caller, in frame order."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from ..results import FrameResult
from ..scheduling import END, Channel
from ..stats import StageTimes


class WriteStage:
    """``results`` (a channel the caller iterates) and ``on_result`` (a callback) are optional. The newest
    annotated frame replaces the one waiting in ``display_slot`` (for a window on the main thread)."""

    def __init__(self, inbox: Channel, sinks: dict[int, list], times: StageTimes, display_slot: deque, *,
                 results: Channel | None = None, on_result: Callable[[FrameResult], None] | None = None):
        self.inbox, self.sinks, self.times, self.display_slot = inbox, sinks, times, display_slot
        self.results, self.on_result = results, on_result
        self.frames = 0
        self.faces = 0

    def run(self) -> None:
        try:
            while True:
                item = self.inbox.get()
                if item is END:
                    break
                result, captured = item
                started = time.perf_counter()
                for sink in self.sinks.get(result.source, ()):
                    sink.write(result, result.image)
                if result.image is not None:
                    self.display_slot.append((result.source, result.image))
                self.frames += 1
                self.faces += len(result.faces)
                done = time.perf_counter()
                self.times.add("write", done - started)
                self.times.add("end-to-end", done - captured)
                if self.on_result is not None:
                    self.on_result(result)
                if self.results is not None and not self.results.put(result):
                    return
        finally:
            if self.results is not None:
                self.results.put(END)  # waits for the consumer, or gives up at a stop
