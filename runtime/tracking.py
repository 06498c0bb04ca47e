"""Face tracks of one source: IoU association of each detection with a track, and the track's motion, so
that frames between two detections get boxes carried forward (constant velocity).

Greedy matching by IoU (faces in a frame are few, so the O(n·m) matrix is cheap). A track that misses
``max_missed`` detections in a row ends; the ids of ended tracks are returned so that what other stages
keep per track (probabilities, the last classified crop) can be dropped with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .results import Detections

# Crops are compared by 8×8 area averages normalised to zero mean and unit deviation: coarse enough that the
# detector's jitter of a few pixels and a change of light barely count, fine enough that another face does.
# Measured on generated videos of FER2013 faces (benchmarks/RESULTS.md): the same face from one frame to the
# next differs by 0.16 (median) to 0.46 (99th percentile), another face by 0.56 or more.
SIGNATURE_SIDE = 8
# With --detect-every, a track the last detection missed makes the next frame a detection frame while it is
# "uncertain": seen at least twice (a one-off false detection does not count) and missed at most twice in a row
# (a face gone for longer waits for the periodic detection). Measured on the moving-face videos of seeds 0-3
# (benchmarks/RESULTS.md): recall back to every-frame detection's, 8-18 % more frames detected than without.
UNCERTAIN_HITS = 2
UNCERTAIN_MISSES = 2


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4], boxes as x, y, w, h."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * \
        np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-6)


def crop_signatures(crops: np.ndarray) -> np.ndarray:
    """``[N, 8, 8]`` normalised area averages of gray crops ``[N, H, W]``, for comparing crops cheaply."""
    out = np.empty((len(crops), SIGNATURE_SIDE, SIGNATURE_SIDE), np.float32)
    for i, crop in enumerate(crops):
        small = cv2.resize(crop.astype(np.float32), (SIGNATURE_SIDE, SIGNATURE_SIDE), interpolation=cv2.INTER_AREA)
        out[i] = (small - small.mean()) / (small.std() + 1.0)  # +1 gray level: a flat crop stays flat
    return out


def signature_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two crop signatures, in standard deviations of the crop."""
    return float(np.mean(np.abs(a - b)))


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, w, h at the last detection
    time: float  # source time of the last detection, seconds
    score: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # box change per second
    landmarks: np.ndarray | None = None  # [5, 2] relative to the box (0..1), for carried boxes
    signature: np.ndarray | None = None  # crop signature at the last detection
    missed: int = 0
    hits: int = 1  # detections matched to the track

    def box_at(self, time: float) -> np.ndarray:
        box = self.box + self.velocity * (time - self.time)
        box[2:] = np.maximum(box[2:], 1.0)
        return box


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 15, velocity_smoothing: float = 0.5):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.velocity_smoothing = velocity_smoothing
        self.tracks: list[Track] = []
        self.detected = False  # a source's first frame is always detected
        self._next_id = 1

    def update(self, detections: Detections, time: float) -> tuple[list[int], list[int]]:
        """Track ids for this frame's detections (same order), and the ids of the tracks that ended."""
        self.detected = True
        boxes = detections.boxes
        ious = iou_matrix(boxes, np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4))
        assigned: list[Track | None] = [None] * len(boxes)
        taken: set[int] = set()
        for flat in np.argsort(-ious, axis=None):
            face, track = np.unravel_index(flat, ious.shape)
            if ious[face, track] < self.iou_threshold:
                break
            if assigned[face] is None and track not in taken:
                assigned[face] = self.tracks[track]
                taken.add(track)
        for i, track in enumerate(assigned):
            landmarks = None if detections.landmarks is None else _relative(detections.landmarks[i], boxes[i])
            if track is None:
                track = Track(self._next_id, boxes[i].copy(), time, float(detections.scores[i]), landmarks=landmarks)
                self._next_id += 1
                self.tracks.append(track)
                taken.add(len(self.tracks) - 1)
            else:
                self._moved(track, boxes[i], time)
                track.score, track.landmarks, track.missed = float(detections.scores[i]), landmarks, 0
                track.hits += 1
            assigned[i] = track
        for index, track in enumerate(self.tracks):
            if index not in taken:
                track.missed += 1
        ended = [t.id for t in self.tracks if t.missed > self.max_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [t.id for t in assigned], ended

    def _moved(self, track: Track, box: np.ndarray, time: float) -> None:
        elapsed = time - track.time
        if elapsed > 0:
            velocity = (box - track.box) / elapsed
            track.velocity = self.velocity_smoothing * track.velocity + (1 - self.velocity_smoothing) * velocity
        track.box, track.time = box.copy(), time

    def carried(self, time: float) -> tuple[Detections, list[int]]:
        """The faces seen at the last detection, moved to ``time`` at their velocity, and their track ids."""
        live = [t for t in self.tracks if t.missed == 0]
        boxes = np.array([t.box_at(time) for t in live], np.float32).reshape(-1, 4)
        landmarks = None
        if live and all(t.landmarks is not None for t in live):
            landmarks = np.stack([box[:2] + t.landmarks * box[2:] for t, box in zip(live, boxes)])
        return Detections(boxes, [t.score for t in live], landmarks), [t.id for t in live]

    def uncertain(self, time: float, width: int, height: int) -> bool:
        """True when an established track the last detection missed may still be in the frame: a face the
        detector lost for a frame (turned, blurred) that every-frame detection would find again on the next
        one, so the next frame is detected rather than carried without it. A track predicted outside the frame
        (a face that left) does not count: it only waits to end."""
        for track in self.tracks:
            if track.hits >= UNCERTAIN_HITS and 0 < track.missed <= UNCERTAIN_MISSES:
                x, y, w, h = track.box_at(time)
                if 0 <= x + w / 2 < width and 0 <= y + h / 2 < height:
                    return True
        return False

    def remember(self, track_ids: list[int], signatures: np.ndarray) -> None:
        """The crop signatures at this detection, to judge later carried boxes by."""
        by_id = {t.id: t for t in self.tracks}
        for track_id, signature in zip(track_ids, signatures):
            if track_id in by_id:
                by_id[track_id].signature = signature

    def lost(self, track_ids: list[int], signatures: np.ndarray, max_change: float) -> bool:
        """True when a carried box no longer shows the face seen at its track's last detection."""
        by_id = {t.id: t for t in self.tracks}
        return any(by_id[i].signature is not None and signature_change(s, by_id[i].signature) > max_change
                   for i, s in zip(track_ids, signatures) if i in by_id)


def _relative(landmarks: np.ndarray, box: np.ndarray) -> np.ndarray:
    return (landmarks - box[:2]) / np.maximum(box[2:], 1.0)
