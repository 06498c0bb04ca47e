"""runtime/scheduling.py: the frame multiplexer drops only for live sources."""

from __future__ import annotations

import threading
import time

import numpy as np

from fer_engine.runtime.scheduling import END, FrameMux, Stops
from fer_engine.runtime.sources import Frame


def frame(source: int, index: int) -> Frame:
    return Frame(source, index, index / 30, np.zeros((4, 4, 3), np.uint8), time.perf_counter())


def test_live_sources_keep_only_the_newest_frame_and_count_drops():
    mux = FrameMux([True], capacity=8, stops=Stops())
    for i in range(5):
        assert mux.put(0, frame(0, i))
    assert mux.get().index == 4 and mux.dropped == [4]
    mux.close(0)
    assert mux.get() is END


def test_file_sources_wait_instead_of_dropping():
    mux = FrameMux([False], capacity=2, stops=Stops())
    mux.put(0, frame(0, 0))
    mux.put(0, frame(0, 1))
    writer = threading.Thread(target=mux.put, args=(0, frame(0, 2)))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()  # full: the reader waits
    assert [mux.get().index for _ in range(3)] == [0, 1, 2] and mux.dropped == [0]
    writer.join(1)
    assert not writer.is_alive()
