"""The runtime's typed results: detections of one frame, a classified face, and a frame's result.

``FrameResult.to_dict()`` is the JSON Lines record of docs/architecture.md; the CSV writer flattens the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """Faces found in one frame: boxes ``[N, 4]`` as x, y, w, h in pixels of the source frame."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None  # [N, 5, 2]: right eye, left eye, nose tip, mouth right, mouth left

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(self.scores) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, np.float32).reshape(-1, 5, 2)
            if len(self.landmarks) != len(self.boxes):
                raise ValueError(f"{len(self.boxes)} boxes but {len(self.landmarks)} landmark sets")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray) -> "Detections":
        landmarks = None if self.landmarks is None else self.landmarks[keep]
        return Detections(self.boxes[keep], self.scores[keep], landmarks)


@dataclass
class Face:
    box: tuple[int, int, int, int]
    score: float
    label: str
    probs: dict[str, float]
    track: int | None = None

    @property
    def confidence(self) -> float:
        return self.probs[self.label]

    def to_dict(self) -> dict:
        return {
            "box": list(self.box),
            "score": round(self.score, 4),
            "track": self.track,
            "label": self.label,
            "probs": {name: round(p, 4) for name, p in self.probs.items()},
        }


@dataclass
class FrameResult:
    """One frame's faces. ``time`` is the source's timestamp in seconds (wall clock since start for live sources)."""

    frame: int
    time: float
    source: int
    faces: list[Face]
    name: str | None = None  # the file, for image sources
    image: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        record = {"frame": self.frame, "time": round(self.time, 4), "source": self.source}
        if self.name is not None:
            record["file"] = self.name
        record["faces"] = [face.to_dict() for face in self.faces]
        return record


def faces_from_probs(detections: Detections, probs: np.ndarray, labels: tuple[str, ...]) -> list[Face]:
    faces = []
    for box, score, row in zip(detections.boxes, detections.scores, probs):
        best = int(np.argmax(row))
        faces.append(Face(
            box=tuple(int(round(v)) for v in box),
            score=float(score),
            label=labels[best],
            probs={name: float(p) for name, p in zip(labels, row)},
        ))
    return faces
