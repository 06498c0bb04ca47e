"""Inference: the faces waiting for the classifier — of one frame, or of several frames and sources when it
is behind — go into one call of at most ``max_batch`` faces."""

from __future__ import annotations

import queue
import time
from typing import Callable

import numpy as np

from ..scheduling import END, Channel
from ..stats import StageTimes


class InferStage:
    def __init__(self, classify: Callable[[np.ndarray, int], np.ndarray], inbox: Channel, out: Channel,
                 times: StageTimes, *, max_batch: int, max_wait_ms: float):
        self.classify, self.inbox, self.out, self.times = classify, inbox, out, times
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.calls = 0  # classifier calls
        self.faces = 0  # faces classified

    def run(self) -> None:
        ended = False
        while not ended:
            first = self.inbox.get()
            if first is END:
                break
            batch, ended = self._gather(first)
            started = time.perf_counter()
            self._classify(batch)
            self.times.add("infer", time.perf_counter() - started)
            for work in batch:
                if not self.out.put(work):
                    return
        self.out.put(END)

    def _gather(self, first) -> tuple[list, bool]:
        """``first`` and the work behind it, up to ``max_batch`` faces or ``max_wait`` once there are faces;
        True with it when the end of the stream came."""
        batch, faces = [first], len(first.crops)
        deadline = time.perf_counter() + self.max_wait
        while faces < self.max_batch:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if faces == 0 or remaining <= 0:
                    break
                try:
                    item = self.inbox.get(remaining)
                except queue.Empty:
                    break
            if item is END:
                return batch, True
            batch.append(item)
            faces += len(item.crops)
        return batch, False

    def _classify(self, batch: list) -> None:
        faces = sum(len(work.crops) for work in batch)
        if not faces:
            return
        probs = self.classify(np.concatenate([work.crops for work in batch]), self.max_batch)
        self.calls += -(-faces // self.max_batch)
        self.faces += faces
        offset = 0
        for work in batch:
            work.probs = probs[offset:offset + len(work.crops)]
            offset += len(work.crops)
