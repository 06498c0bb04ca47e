"""How often a small change of framing changes the classifier's label: FER2013 faces shifted, rescaled or
rotated by as much as a face detector's box moves from one video frame to the next.

A label that flips under a 1-pixel shift flickers in a video, and a re-classification policy that classifies a
face less often cannot agree with every-frame classification beyond what this allows (benchmarks/RESULTS.md).

    python -m fer_engine.benchmarks.stability --data fer2013.csv.gz [--model checkpoints/cnn | cnn-int8]
"""

from __future__ import annotations

import argparse
import json
from typing import Callable

import cv2
import numpy as np

from fer_engine.cli import add_verbose, run_cli

PROG = "python -m fer_engine.benchmarks.stability"
# name → (dx, dy, degrees, scale), about the size of a detector box's jitter between frames
PERTURBATIONS = {
    "shift 1 px": (1, 0, 0.0, 1.0), "shift 2 px diagonal": (2, 2, 0.0, 1.0), "shift 4 px": (4, 0, 0.0, 1.0),
    "scale 1.05": (0, 0, 0.0, 1.05), "scale 0.95": (0, 0, 0.0, 0.95),
    "rotate 5°": (0, 0, 5.0, 1.0), "rotate 10°": (0, 0, 10.0, 1.0),
}


def perturb(face: np.ndarray, dx: float, dy: float, degrees: float, scale: float) -> np.ndarray:
    height, width = face.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, scale)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(face, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def label_changes(labels_of: Callable[[np.ndarray], np.ndarray], faces: np.ndarray,
                  truth: np.ndarray | None = None) -> dict:
    """Per perturbation: the share of faces whose label changes, and the accuracy (with ``truth``)."""
    base = labels_of(faces)
    rows = {"unchanged": {"changed": 0.0, "accuracy": _accuracy(base, truth)}}
    for name, args in PERTURBATIONS.items():
        labels = labels_of(np.stack([perturb(face, *args) for face in faces]))
        rows[name] = {"changed": float(np.mean(labels != base)), "accuracy": _accuracy(labels, truth)}
    return rows


def labeller(probs_of: Callable[[np.ndarray], np.ndarray], flip: bool = False,
             batch: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """Labels from ``probs_of`` in batches; with ``flip``, from the probabilities averaged with the mirror's."""

    def labels_of(faces: np.ndarray) -> np.ndarray:
        labels = []
        for i in range(0, len(faces), batch):
            chunk = faces[i:i + batch]
            probs = probs_of(chunk)
            if flip:
                probs = probs + probs_of(np.ascontiguousarray(chunk[:, :, ::-1]))
            labels.append(probs.argmax(1))
        return np.concatenate(labels)

    return labels_of


def _accuracy(labels: np.ndarray, truth: np.ndarray | None) -> float | None:
    return None if truth is None else float(np.mean(labels == truth))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="FER2013 csv(.gz): PublicTest faces are perturbed")
    parser.add_argument("--model", help="a checkpoint folder, a model file or a shipped name (default: the shipped "
                                        "int8 cnn)")
    parser.add_argument("--flip", action="store_true",
                        help="label each face by its probabilities averaged with its mirror's (flip TTA)")
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    add_verbose(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda: _main(args), PROG, verbose=args.verbose)


def _main(args) -> int:
    from fer_engine.outputs import check_outputs, write_outputs
    from fer_engine.runtime.preprocess import faces_to_pixel_values, softmax
    from fer_engine.train.classifiers import load_classifier
    from fer_engine.train.data import load_fer2013

    check_outputs(files={"--json": args.json})
    split = load_fer2013(args.data).split("PublicTest")
    from pathlib import Path

    from fer_engine.runtime.backends import resolve_model

    model = args.model or "cnn-int8"
    classifier = load_classifier(model if Path(model).is_dir() else resolve_model(model), "cpu")

    def probs_of(faces: np.ndarray) -> np.ndarray:
        return softmax(classifier.predict_logits(faces_to_pixel_values(faces, classifier.spec)))

    rows = label_changes(labeller(probs_of, args.flip), split.images, split.labels)
    print(f"{args.model or 'cnn-int8'}{' with flip TTA' if args.flip else ''} on {len(split.images)} PublicTest faces\n\n| framing | label changed | accuracy |\n"
          "| --- | ---: | ---: |")
    for name, row in rows.items():
        print(f"| {name} | {row['changed']:.1%} | {row['accuracy']:.2%} |")
    write_outputs([("--json", args.json, lambda path: path.write_text(json.dumps(rows, indent=2)))])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
