"""A test video with known faces: FER2013 faces pasted at known places on a textured background.

Each of ``faces_per_frame`` people sits in its own cell, drifts a few pixels per frame, and shows a new
FER2013 face every ``hold`` frames; the ground truth (box of the pasted face and its label) is returned
per frame and can be written as JSON beside the video. Without FER2013, ``drawn_faces`` gives simple
drawn faces (for tests of the plumbing, not of accuracy).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class PastedFace:
    box: tuple[int, int, int, int]  # x, y, w, h of the pasted face in the frame
    label: int
    face: int  # index into the faces given

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "face": self.face}


def background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    width, height = size
    low = rng.integers(40, 200, (6, 8, 3)).astype(np.uint8)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, (height, width, 3))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def drawn_faces(n: int, seed: int = 0) -> np.ndarray:
    """Gray 48×48 cartoon faces (an oval, eyes, a mouth) for when FER2013 is not at hand."""
    rng = np.random.default_rng(seed)
    faces = np.empty((n, 48, 48), np.uint8)
    for i in range(n):
        face = np.full((48, 48), int(rng.integers(20, 60)), np.uint8)
        cv2.ellipse(face, (24, 25), (17, 22), 0, 0, 360, int(rng.integers(150, 220)), -1)
        for x in (17, 31):
            cv2.circle(face, (x, 20), 3, 30, -1)
        cv2.ellipse(face, (24, 34), (7, int(rng.integers(2, 5))), 0, 0, 180, 40, 2)
        faces[i] = face
    return faces


def make_face_video(path: str | Path, faces: np.ndarray, labels: np.ndarray, frames: int = 90,
                    size: tuple[int, int] = (640, 480), faces_per_frame: int = 5, face_side: tuple[int, int] = (88, 128),
                    hold: int = 15, fps: float = 30.0, seed: int = 0, truth_path: str | Path | None = None,
                    tilt: float = 0.0) -> list[list[PastedFace]]:
    """Writes the video (mp4v) and returns, per frame, the faces pasted into it.

    ``tilt`` rotates each pasted face by a random angle in ±tilt degrees (as heads tilt in real video).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    cols = math.ceil(math.sqrt(faces_per_frame * width / height))
    rows = math.ceil(faces_per_frame / cols)
    cell_w, cell_h = width // cols, height // rows
    sides = rng.integers(face_side[0], face_side[1] + 1, faces_per_frame)
    sides = np.minimum(sides, min(cell_w, cell_h) - 12)
    phases = rng.uniform(0, 2 * math.pi, (faces_per_frame, 2))
    order = rng.permutation(len(faces))
    angles = rng.uniform(-tilt, tilt, len(faces))
    base = background(size, rng)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    truth: list[list[PastedFace]] = []
    try:
        for t in range(frames):
            frame = base.copy()
            pasted = []
            for person in range(faces_per_frame):
                side = int(sides[person])
                cell_x, cell_y = (person % cols) * cell_w, (person // cols) * cell_h
                room_x, room_y = cell_w - side, cell_h - side
                x = cell_x + int(room_x / 2 * (1 + 0.8 * math.sin(phases[person, 0] + t / 20)))
                y = cell_y + int(room_y / 2 * (1 + 0.8 * math.sin(phases[person, 1] + t / 27)))
                index = int(order[(person + faces_per_frame * (t // hold)) % len(order)])
                tile = cv2.resize(faces[index], (side, side), interpolation=cv2.INTER_CUBIC)
                region = frame[y:y + side, x:x + side]
                if tilt:
                    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), float(angles[index]), 1.0)
                    mask = cv2.warpAffine(np.full_like(tile, 255), matrix, (side, side)) > 127
                    tile = cv2.warpAffine(tile, matrix, (side, side))
                    region[mask] = tile[mask][:, None]
                else:
                    region[:] = tile[:, :, None]
                pasted.append(PastedFace((x, y, side, side), int(labels[index]), index))
            writer.write(frame)
            truth.append(pasted)
    finally:
        writer.release()
    if truth_path is not None:
        Path(truth_path).write_text(json.dumps([[p.to_dict() for p in frame] for frame in truth]))
    return truth
