"""Draws results on frames: box, label and confidence, track id, a per-emotion bar chart, an FPS overlay."""

from __future__ import annotations

import cv2
import numpy as np

from .results import FrameResult

# BGR, one per emotion; unknown labels get grey.
EMOTION_COLOURS = {
    "angry": (40, 40, 220), "disgust": (60, 150, 60), "fear": (160, 60, 160), "happy": (40, 200, 240),
    "sad": (200, 120, 40), "surprise": (240, 200, 40), "neutral": (190, 190, 190),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour_of(label: str) -> tuple[int, int, int]:
    return EMOTION_COLOURS.get(label, (160, 160, 160))


class Annotator:
    def __init__(self, bars: bool = True):
        self.bars = bars

    def annotate(self, frame: np.ndarray, result: FrameResult, overlay: str | None = None) -> np.ndarray:
        """Draws on ``frame`` in place (it is the pipeline's own copy) and returns it."""
        for face in result.faces:
            x, y, w, h = face.box
            colour = colour_of(face.label)
            thickness = max(1, min(frame.shape[:2]) // 240)
            cv2.rectangle(frame, (x, y), (x + w, y + h), colour, thickness)
            track = f"#{face.track} " if face.track is not None else ""
            text = f"{track}{face.label} {face.confidence:.0%}"
            (tw, th), base = cv2.getTextSize(text, FONT, 0.5, 1)
            top = y - th - base - 4 if y - th - base - 4 >= 0 else y + h
            cv2.rectangle(frame, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
            cv2.putText(frame, text, (x + 2, top + th + 2), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            if self.bars:
                self._bars(frame, face.probs, x + w + 4, y, max(28, h))
        if overlay:
            cv2.putText(frame, overlay, (8, 20), FONT, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(frame, overlay, (8, 20), FONT, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        return frame

    @staticmethod
    def _bars(frame: np.ndarray, probs: dict[str, float], x: int, y: int, height: int) -> None:
        width = 40
        if x + width > frame.shape[1]:
            return
        row = max(3, height // max(1, len(probs)))
        for i, (label, p) in enumerate(probs.items()):
            top = y + i * row
            if top + row > frame.shape[0]:
                break
            cv2.rectangle(frame, (x, top), (x + int(width * p), top + row - 1), colour_of(label), -1)
