"""runtime/tracking.py and runtime/smoothing.py: track ids across frames, carried boxes, per-track smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from fer_engine.runtime.results import Detections
from fer_engine.runtime.smoothing import Smoother
from fer_engine.runtime.tracking import Tracker, crop_signatures, signature_change


def dets(*boxes, landmarks=None) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9), landmarks)


def test_tracker_keeps_ids_for_moving_boxes_and_ends_lost_tracks():
    tracker = Tracker(max_missed=1)
    a, b = [10, 10, 50, 50], [200, 10, 50, 50]
    assert tracker.update(dets(a, b), 0.0) == ([1, 2], [])
    assert tracker.update(dets([205, 12, 50, 50], [14, 11, 50, 50]), 0.1) == ([2, 1], [])
    assert tracker.update(dets([400, 300, 50, 50]), 0.2) == ([3], [])
    assert tracker.update(dets([400, 302, 50, 50]), 0.3) == ([3], [1, 2])  # missed twice: ended, and said so
    assert [t.id for t in tracker.tracks] == [3]


def test_carried_boxes_move_at_the_tracks_velocity_with_their_landmarks():
    tracker = Tracker(velocity_smoothing=0.0)
    marks = np.array([[[20, 20], [40, 20], [30, 30], [22, 40], [38, 40]]], np.float32)
    tracker.update(dets([10, 10, 40, 40], landmarks=marks), 0.0)
    tracker.update(dets([20, 10, 40, 40], landmarks=marks + [10, 0]), 0.1)  # 100 px/s to the right
    carried, ids = tracker.carried(0.15)
    assert ids == [1]
    np.testing.assert_allclose(carried.boxes, [[25, 10, 40, 40]], atol=1e-4)
    np.testing.assert_allclose(carried.landmarks, marks + [15, 0], atol=1e-4)


def test_a_track_missed_at_the_last_detection_is_not_carried():
    tracker = Tracker()
    tracker.update(dets([10, 10, 40, 40], [200, 10, 40, 40]), 0.0)
    tracker.update(dets([10, 10, 40, 40]), 0.1)
    assert tracker.carried(0.2)[1] == [1]


def test_crop_signatures_see_another_face_but_not_brightness():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 255, (48, 48)).astype(np.uint8)
    other = rng.integers(0, 255, (48, 48)).astype(np.uint8)
    brighter = np.clip(face.astype(int) * 0.8 + 30, 0, 255).astype(np.uint8)
    sig = crop_signatures(np.stack([face, brighter, other]))
    assert signature_change(sig[0], sig[1]) < 0.05
    assert signature_change(sig[0], sig[2]) > 0.5


def test_smoothing_averages_classified_frames_and_holds_the_last_classification_between():
    smoother = Smoother(0.5)
    first = smoother.update([1], np.array([True]), np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(first, [[1.0, 0.0]])  # a new track starts at its first classification
    np.testing.assert_allclose(smoother.update([1], np.array([True]), np.array([[0.0, 1.0]])), [[0.5, 0.5]])
    # Not classified: the last classification stands for the frame, as if the classifier had said it again.
    np.testing.assert_allclose(smoother.update([1], np.array([False]), np.zeros((0, 2))), [[0.25, 0.75]])
    raw = Smoother(0.0)
    raw.update([1], np.array([True]), np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(raw.update([1], np.array([True]), np.array([[0.2, 0.8]])), [[0.2, 0.8]])


def test_a_forgotten_track_starts_afresh():
    smoother = Smoother(0.5)
    smoother.update([1], np.array([True]), np.array([[1.0, 0.0]]))
    smoother.forget([1])
    with pytest.raises(KeyError):  # never classified since: the policy must classify a new track at once
        smoother.update([1], np.array([False]), np.zeros((0, 2)))
    np.testing.assert_allclose(smoother.update([1], np.array([True]), np.array([[0.0, 1.0]])), [[0.0, 1.0]])


def test_a_missed_track_is_uncertain_while_its_face_may_still_be_in_the_frame():
    tracker = Tracker()
    a, b = [10, 10, 40, 40], [200, 10, 40, 40]
    tracker.update(dets(a, b), 0.0)
    tracker.update(dets(a), 0.1)
    assert not tracker.uncertain(0.15, 320, 240)  # b was seen once: maybe a false detection
    tracker = Tracker()
    tracker.update(dets(a, b), 0.0)
    tracker.update(dets(a, b), 0.1)
    assert not tracker.uncertain(0.15, 320, 240)
    tracker.update(dets(a), 0.2)  # the face at x=200 missed
    assert tracker.uncertain(0.25, 320, 240)
    assert not tracker.uncertain(0.25, 200, 240)  # a frame that ends before its centre: the face has left
    tracker.update(dets(a), 0.3)
    assert tracker.uncertain(0.35, 320, 240)
    tracker.update(dets(a), 0.4)  # missed three times in a row: left to the periodic detection
    assert not tracker.uncertain(0.45, 320, 240)


class _ScriptedDetector:
    """Gives the boxes scripted for each call, and counts the calls."""

    def __init__(self, script):
        self.script, self.calls = list(script), 0

    def detect(self, image):
        self.calls += 1
        return dets(*self.script.pop(0))


def test_detection_between_detections_detects_again_after_a_miss_instead_of_carrying_without_the_face():
    from fer_engine.runtime.reclassify import ReclassifyPolicy
    from fer_engine.runtime.sources import Frame
    from fer_engine.runtime.stages.detect import DetectStage

    a, b = [10, 10, 40, 40], [200, 10, 40, 40]
    stage = DetectStage([], 0, lambda image, d: np.zeros((len(d.boxes), 48, 48), np.uint8), None, None, None, None,
                        detect_every=3, independent=[False], keep_images=True, reclassify=ReclassifyPolicy("every"),
                        redetect_change=0.5)
    detector = _ScriptedDetector([[a]])  # frame 4 is detected again: it finds both faces
    image = np.zeros((240, 320, 3), np.uint8)

    def frame(index, detections=None):
        return stage._in_turn(Frame(0, index, index / 30, image, 0.0), detections, detector)

    assert len(frame(0, dets(a, b)).detections.boxes) == 2
    assert len(frame(1).detections.boxes) == 2 and detector.calls == 0  # carried
    assert len(frame(3, dets(a, b)).detections.boxes) == 2
    assert len(frame(6, dets(a)).detections.boxes) == 1  # the detection frame missed b
    detector.script = [[a, b]]
    assert len(frame(7).detections.boxes) == 2 and detector.calls == 1  # so frame 7 is detected, not carried
    assert len(frame(8).detections.boxes) == 2 and detector.calls == 1  # and frame 8 carried again
