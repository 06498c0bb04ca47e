"""Face crops as docs/architecture.md says: the detector box widened by the model's margin, made square, gray, resized.

Where the square leaves the frame, the frame's edge pixels are repeated rather than the square clipped,
so a face at the border is not stretched. ``align=True`` also rotates the crop so the eyes (YuNet's
first two landmarks) are level.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .results import Detections

SQRT2 = math.sqrt(2.0)


def to_gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def square_region(box, margin: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square around ``box`` widened by ``margin`` (a fraction of its longer side)."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + margin)
    return int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), max(1, int(round(side)))


def cut_square(gray: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    height, width = gray.shape
    x1, y1 = x0 + side, y0 + side
    # Clamped at 0 too: a square wholly left of or above the frame must not become a negative (wrapping) index.
    inside = gray[max(y0, 0):max(min(y1, height), 0), max(x0, 0):max(min(x1, width), 0)]
    if inside.size == 0:
        return np.zeros((side, side), np.uint8)
    if inside.shape == (side, side):
        return inside
    return cv2.copyMakeBorder(inside, max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width),
                              cv2.BORDER_REPLICATE)


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if image.shape == (height, width):
        return np.ascontiguousarray(image)
    shrinking = image.shape[0] > height
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def eye_angle(landmarks: np.ndarray) -> float:
    """Degrees to rotate (counter-clockwise, OpenCV's convention) so the eyes are level."""
    right_eye, left_eye = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0]))


def crop_face(gray: np.ndarray, box, size: tuple[int, int], margin: float = 0.0,
              landmarks: np.ndarray | None = None) -> np.ndarray:
    x0, y0, side = square_region(box, margin)
    if landmarks is None:
        return resize_to(cut_square(gray, x0, y0, side), size)
    # Cut a square √2 larger so the rotation has pixels in its corners, shrink it first (area filter),
    # then rotate at the small size and keep the centre.
    outer = int(math.ceil(side * SQRT2))
    shift = (outer - side) // 2
    big = (int(math.ceil(size[0] * SQRT2)), int(math.ceil(size[1] * SQRT2)))
    region = resize_to(cut_square(gray, x0 - shift, y0 - shift, outer), big)
    center = (big[1] / 2.0, big[0] / 2.0)
    matrix = cv2.getRotationMatrix2D(center, eye_angle(landmarks), 1.0)
    matrix[0, 2] -= (big[1] - size[1]) / 2.0
    matrix[1, 2] -= (big[0] - size[0]) / 2.0
    return cv2.warpAffine(region, matrix, (size[1], size[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_faces(frame: np.ndarray, detections: Detections, size: tuple[int, int], margin: float = 0.0,
               align: bool = False) -> np.ndarray:
    """All faces of a frame as uint8 gray crops ``[N, H, W]``.

    Only each face's square (inside the frame) is converted to gray, not the whole frame: on a 1280×720
    frame with one face that is a few percent of the pixels, and the crop is the same."""
    out = np.empty((len(detections), size[0], size[1]), np.uint8)
    if not len(detections):
        return out
    use_landmarks = align and detections.landmarks is not None
    height, width = frame.shape[:2]
    for i, box in enumerate(detections.boxes):
        x0, y0, side = square_region(box, margin)
        if use_landmarks:  # crop_face cuts a square √2 larger to rotate
            grow = (int(math.ceil(side * SQRT2)) - side) // 2 + 1
            x0, y0, side = x0 - grow, y0 - grow, side + 2 * grow
        landmarks = detections.landmarks[i] if use_landmarks else None
        left, top, right, bottom = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
        if left >= right or top >= bottom:  # wholly outside the frame: nothing to cut (cut_square's black)
            out[i] = 0
            continue
        shifted = (box[0] - left, box[1] - top, box[2], box[3])
        out[i] = crop_face(to_gray(frame[top:bottom, left:right]), shifted, size, margin, landmarks)
    return out
