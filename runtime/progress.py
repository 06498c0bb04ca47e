"""fer-run's progress on a terminal: frames done of the total with frames/s and the time left (files, image
folders), or a live frames/s (cameras, streams). Off when stderr is not a terminal (a log, a service) or
with ``-q``: there the start lines and the summary say enough."""

from __future__ import annotations

import sys
from typing import Callable, TextIO

from tqdm import tqdm

from fer_engine.progress import wanted


class RunProgress:
    def __init__(self, frames_done: Callable[[], int], total: int | None, enabled: bool,
                 stream: TextIO | None = None):
        self._frames_done = frames_done
        self._bar = tqdm(total=total, unit="frame", desc="fer-run", file=stream or sys.stderr, dynamic_ncols=True,
                         mininterval=0.25, smoothing=0.1, leave=False) if enabled else None

    @staticmethod
    def wanted(quiet: bool, stream: TextIO | None = None) -> bool:
        return wanted(quiet, stream)  # the rule of every fer-* bar (core/progress.py)

    def poll(self) -> None:
        if self._bar is not None:
            done = self._frames_done()
            if done > self._bar.n:
                self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self.poll()
            self._bar.close()  # leave=False: the bar gives its line back to the summary
