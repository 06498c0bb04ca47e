"""runtime/stages/track.py: track ids across frames and per-track smoothing."""

from __future__ import annotations

import numpy as np

from fer_engine.runtime.tracking import Tracker


def test_tracker_keeps_ids_for_moving_boxes_and_smooths():
    tracker = Tracker(smooth=0.5)
    a, b = [10, 10, 50, 50], [200, 10, 50, 50]
    p1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    ids, probs = tracker.update(np.array([a, b]), p1)
    assert ids == [1, 2]
    ids, probs = tracker.update(np.array([[205, 12, 50, 50], [14, 11, 50, 50]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert ids == [2, 1]
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.5, 0.5]])
    ids, _ = tracker.update(np.array([[400, 300, 50, 50]]), np.array([[1.0, 0.0]]))
    assert ids == [3]
    raw = Tracker(smooth=0.0)
    raw.update(np.array([a]), np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(raw.update(np.array([a]), np.array([[0.2, 0.8]]))[1], [[0.2, 0.8]])
