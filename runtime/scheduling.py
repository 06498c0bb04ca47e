"""What the pipeline's stages are joined with: stop flags, bounded channels, the frame multiplexer, ordered
tickets for parallel workers, and the named threads that run the stages.

No operation here blocks for longer than ``POLL`` seconds without checking for a stop, so a stage can never
hang a run that is being stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Callable

log = logging.getLogger("fer_engine.runtime")

END = object()  # end of stream, passed down the stages
POLL = 0.1  # seconds a blocked operation waits before checking for a stop


class Stops:
    """The two ways a run stops. ``reading``: no new frames, the ones read drain through every stage (a first
    Ctrl-C, the end of the sources). ``now``: every stage exits at once (a second Ctrl-C, a failing stage)."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.now = threading.Event()


class Channel:
    """A bounded queue from one stage to the next whose blocking operations give up at a hard stop."""

    def __init__(self, size: int, stops: Stops):
        self._queue: queue.Queue = queue.Queue(size)
        self._stops = stops

    def put(self, item) -> bool:
        """Waits for room; False when the run stopped first."""
        while not self._stops.now.is_set():
            try:
                self._queue.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def get(self, timeout: float | None = None):
        """The next item, or END at a hard stop; raises ``queue.Empty`` once ``timeout`` seconds pass."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._stops.now.is_set():
            wait = POLL if deadline is None else min(POLL, deadline - time.perf_counter())
            if wait <= 0:
                raise queue.Empty
            try:
                return self._queue.get(timeout=wait)
            except queue.Empty:
                continue
        return END

    def get_nowait(self):
        return self._queue.get_nowait()

    def backlog(self) -> int:
        return self._queue.qsize()


class FrameMux:
    """Frames of all sources, taken round-robin by the detection stage.

    A live source has one slot: a new frame replaces a waiting one (counted as dropped). A file source
    has ``capacity`` slots and its reader waits when they are full, so no frame is lost.
    """

    def __init__(self, live: list[bool], capacity: int, stops: Stops):
        self._buffers = [deque() for _ in live]
        self._capacity = [1 if is_live else capacity for is_live in live]
        self._live = live
        self._open = [True] * len(live)
        self._next = 0
        self._cond = threading.Condition()
        self._stopped = stops.now
        self.dropped = [0] * len(live)

    def put(self, source: int, frame) -> bool:
        """False when the frame is refused: the run stopped, or reading stopped (``close_all``)."""
        with self._cond:
            if not self._open[source]:
                return False
            buffer = self._buffers[source]
            if self._live[source]:
                if buffer:
                    buffer.popleft()
                    self.dropped[source] += 1
            else:
                while len(buffer) >= self._capacity[source] and not self._stopped.is_set():
                    self._cond.wait(POLL)
                if self._stopped.is_set() or not self._open[source]:
                    return False
            buffer.append(frame)
            self._cond.notify_all()
            return True

    def close(self, source: int) -> None:
        with self._cond:
            self._open[source] = False
            self._cond.notify_all()

    def close_all(self) -> None:
        """No more frames from any source: the frames already here drain, even while a capture thread is
        still blocked in a read (a stream waiting for its server)."""
        with self._cond:
            self._open = [False] * len(self._open)
            self._cond.notify_all()

    def get(self):
        """The next frame, round-robin over sources; END when every source has ended and been drained."""
        with self._cond:
            while not self._stopped.is_set():
                count = len(self._buffers)
                for step in range(count):
                    source = (self._next + step) % count
                    if self._buffers[source]:
                        self._next = source + 1
                        frame = self._buffers[source].popleft()
                        self._cond.notify_all()
                        return frame
                if not any(self._open):
                    return END
                self._cond.wait(POLL)
            return END


class Turns:
    """Numbered tickets for parallel workers: they take frames in order, work side by side, and hand the
    frames on in the order they took them (the tracker and the files need capture order)."""

    def __init__(self, workers: int):
        self._cond = threading.Condition()
        self._take = threading.Lock()
        self._issued = 0
        self._turn = 0
        self._running = workers

    def take(self, mux: FrameMux):
        """(frame, ticket), or (END, -1) once the frames are all taken."""
        with self._take:
            frame = mux.get()
            if frame is END:
                return END, -1
            self._issued += 1
            return frame, self._issued - 1

    def wait(self, ticket: int, stopped: threading.Event) -> bool:
        """Until it is ``ticket``'s turn; False at a hard stop."""
        with self._cond:
            while self._turn != ticket:
                if stopped.is_set():
                    return False
                self._cond.wait(POLL)
            return True

    def done(self) -> None:
        with self._cond:
            self._turn += 1
            self._cond.notify_all()

    def finished(self) -> bool:
        """True for the last worker to end: it passes END on once every frame has gone."""
        with self._cond:
            self._running -= 1
            return self._running == 0


class StageThreads:
    """One named daemon thread per stage loop. A loop that raises stops the run: ``on_failure(stage, error)``."""

    def __init__(self, on_failure: Callable[[str, BaseException], None]):
        self._on_failure = on_failure
        self.threads: list[threading.Thread] = []

    def add(self, name: str, loop: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                loop()
            except BaseException as exc:  # noqa: BLE001 - any failure ends the run with its message
                log.debug("stage %s failed", name, exc_info=True)
                self._on_failure(name, exc)

        thread = threading.Thread(target=guarded, name=f"fer-{name}", daemon=True)
        self.threads.append(thread)
        return thread

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
