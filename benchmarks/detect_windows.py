"""Could detection between full passes run YuNet only in windows around the tracked faces and still give the
boxes a full-frame pass gives?

A carried (predicted) box is a few pixels off the detector's, and a few pixels change the classifier's label
often enough to hold every cheaper policy under 98 % agreement (benchmarks/RESULTS.md). A window cut from the
same downscaled image, its corner on YuNet's 32-pixel grid, keeps the anchors where the full pass has them; what
it loses is the image beyond the window, which the network's receptive field still sees in a full pass. This
measures, per window margin, how much of the image the windows cover and how far their boxes land from the full
pass's, on the generated moving-face videos of ``fer-bench --pipeline``.

    python -m fer_engine.benchmarks.detect_windows --data fer2013.csv.gz [--grow 0.5,0.75,1,1.25] [--frames 120]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fer_engine.runtime.detectors import DetectorConfig, downscale, resolve_yunet_model
from fer_engine.runtime.yunet import DIVISOR, YuNetOnnx

from .measure_cli import run_measure
from .moving_faces import VIDEOS
from .pipeline import FRAMING_NOISE, _faces

PROG = "python -m fer_engine.benchmarks.detect_windows"
FRAMING_SCALE = FRAMING_NOISE[1]["detect_scale"]  # fer-bench --pipeline's framing-noise row
EXACT = 0.05  # pixels of the downscaled image: a box this close is the full pass's box
X_COLUMNS = [0, 4, 6, 8, 10, 12]  # x of the box and of the five landmarks in a YuNet row
Y_COLUMNS = [1, 5, 7, 9, 11, 13]


def window_around(box, grow: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): ``box`` widened by ``grow`` times its longer side on every side, corners moved out to
    YuNet's grid, clipped to the image."""
    x, y, w, h = box
    margin = grow * max(w, h)
    height, width = shape[:2]
    x0 = max(0, math.floor((x - margin) / DIVISOR) * DIVISOR)
    y0 = max(0, math.floor((y - margin) / DIVISOR) * DIVISOR)
    x1 = min(width, math.ceil((x + w + margin) / DIVISOR) * DIVISOR)
    y1 = min(height, math.ceil((y + h + margin) / DIVISOR) * DIVISOR)
    return x0, y0, x1, y1


def detect_in_window(net: YuNetOnnx, image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """YuNet rows for the faces in ``window`` of ``image``, in the image's pixels."""
    x0, y0, x1, y1 = window
    rows = net.detect(np.ascontiguousarray(image[y0:y1, x0:x1])).copy()
    rows[:, X_COLUMNS] += x0
    rows[:, Y_COLUMNS] += y0
    return rows


def compare_windows(frames, net: YuNetOnnx, scale: float, grow: float) -> dict:
    """Each full-pass face against the nearest box its own window finds: share of the image the windows cover,
    share of faces found again, share found at the same box (within ``EXACT``), offsets in full-frame pixels."""
    offsets, areas, faces, found = [], [], 0, 0
    for frame in frames:
        image = downscale(frame, scale)
        full = net.detect(image)
        for row in full:
            window = window_around(row[:4], grow, image.shape)
            areas.append((window[2] - window[0]) * (window[3] - window[1]) / (image.shape[0] * image.shape[1]))
            faces += 1
            rows = detect_in_window(net, image, window)
            if len(rows):
                found += 1
                offsets.append(float(np.abs(rows[:, :4] - row[:4]).max(1).min()))
    row = {"grow": grow, "faces": faces, "window_area_share": float(np.mean(areas)) if areas else 0.0,
           "found": found / max(faces, 1), "same_box": 0.0, "offset_px_p50": None, "offset_px_p90": None}
    if offsets:
        offsets = np.asarray(offsets)
        row.update(same_box=float(np.mean(offsets < EXACT)), offset_px_p50=float(np.median(offsets) / scale),
                   offset_px_p90=float(np.percentile(offsets, 90) / scale))
    return row


def rescaled_offsets(frames, net: YuNetOnnx, scale: float, other: float) -> dict:
    """The framing noise to set those offsets against: each full-pass face at ``scale`` against the nearest face
    a full pass at ``other`` finds (the row ``fer-bench --pipeline`` calls framing noise), in full-frame pixels."""
    offsets = []
    for frame in frames:
        base, moved = net.detect(downscale(frame, scale)), net.detect(downscale(frame, other))
        for row in base:
            if len(moved):
                offsets.append(float(np.abs(moved[:, :4] / other - row[:4] / scale).max(1).min()))
    return {"offset_px_p50": float(np.median(offsets)), "offset_px_p90": float(np.percentile(offsets, 90))} \
        if offsets else {"offset_px_p50": None, "offset_px_p90": None}


def read_frames(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def measure(data: str | None, grows: list[float], frames: int, seed: int, out=print) -> list[dict]:
    faces, labels = _faces(data, skip_bad_rows=False)
    net = YuNetOnnx(resolve_yunet_model(), threads=1)
    scale = DetectorConfig().scale
    rows = []
    out("| video | grow | windows' share of the image | found again | same box | offset p50 / p90 (px) |")
    out("| --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for title, maker in VIDEOS:
            video = Path(tmp) / "video.mp4"
            maker(video, faces, labels, frames=frames, seed=seed)
            images = read_frames(video)
            noise = {"video": title, "detect_scale": FRAMING_SCALE, **rescaled_offsets(images, net, scale, FRAMING_SCALE)}
            rows.append(noise)
            out(f"| {title} | full pass at scale {FRAMING_SCALE:g} (framing noise) | 100% | — | — | "
                f"{noise['offset_px_p50']:.2f} / {noise['offset_px_p90']:.2f} |")
            for grow in grows:
                row = {"video": title, **compare_windows(images, net, scale, grow)}
                rows.append(row)
                offsets = "—" if row["offset_px_p50"] is None else \
                    f"{row['offset_px_p50']:.2f} / {row['offset_px_p90']:.2f}"
                out(f"| {title} | {grow:g} | {row['window_area_share']:.0%} | {row['found']:.1%} | "
                    f"{row['same_box']:.1%} | {offsets} |")
    return rows


def build_parser() -> argparse.ArgumentParser:
    from fer_engine.cli import comma_separated, non_negative_int, positive_float, positive_int

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 csv(.gz): paste PublicTest faces (default: drawn faces)")
    parser.add_argument("--grow", type=comma_separated(positive_float), default=[0.5, 0.75, 1.0, 1.25],
                        help="window margins, in face sides on every side (default: 0.5,0.75,1,1.25)")
    parser.add_argument("--frames", type=positive_int, default=120)
    parser.add_argument("--seed", type=non_negative_int, default=3)
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_measure(PROG, args, lambda: measure(args.data, args.grow, args.frames, args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
