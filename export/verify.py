"""Every export checked against the PyTorch model it came from, on the same ``pixel_values``.

Thresholds (top-1 agreement with PyTorch; fp32 also max |Δlogit|; int8 also the accuracy drop on the
labelled faces): fp32 ≤ 1e-3 and ≥ 99.9 %, fp16 ≥ 99.5 %, int8 ≥ 98 % and a drop ≤ 0.5 point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fer_engine.runtime.onnx_model import OnnxClassifier

THRESHOLDS = {"fp32": {"max_abs_diff": 1e-3, "agreement": 0.999},
              "fp16": {"agreement": 0.995},
              "int8": {"agreement": 0.98, "accuracy_drop": 0.005}}


@dataclass
class VerifyRow:
    file: str
    precision: str
    size_mb: float
    faces: int
    max_abs_diff: float
    agreement: float
    accuracy: float | None
    reference_accuracy: float | None
    passed: bool
    failures: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def torch_logits(module, pixel_values: np.ndarray, batch_size: int = 64) -> np.ndarray:
    import torch

    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(pixel_values), batch_size):
            out.append(module(torch.from_numpy(pixel_values[start:start + batch_size])).float().numpy())
    return np.concatenate(out)


def verify_file(path: Path, reference: np.ndarray, pixel_values: np.ndarray, labels: np.ndarray | None,
                batch_size: int = 64) -> VerifyRow:
    classifier = OnnxClassifier(path)
    precision = classifier.spec.precision
    logits = np.concatenate([classifier.predict_logits(pixel_values[i:i + batch_size])
                             for i in range(0, len(pixel_values), batch_size)])
    agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
    max_diff = float(np.abs(logits - reference).max())
    accuracy = ref_accuracy = None
    if labels is not None:
        accuracy = float((logits.argmax(1) == labels).mean())
        ref_accuracy = float((reference.argmax(1) == labels).mean())
    limits = THRESHOLDS[precision]
    failures = []
    if "max_abs_diff" in limits and max_diff > limits["max_abs_diff"]:
        failures.append(f"max |Δlogit| {max_diff:.2e} > {limits['max_abs_diff']:.0e}")
    if agreement < limits["agreement"]:
        failures.append(f"top-1 agreement {agreement * 100:.2f}% < {limits['agreement'] * 100:.1f}%")
    if "accuracy_drop" in limits and accuracy is not None and ref_accuracy - accuracy > limits["accuracy_drop"]:
        failures.append(f"accuracy drop {(ref_accuracy - accuracy) * 100:.2f} > {limits['accuracy_drop'] * 100:.1f} point")
    return VerifyRow(str(path), precision, path.stat().st_size / 1e6, len(logits), max_diff, agreement,
                     accuracy, ref_accuracy, not failures, failures)


def verification_faces(data_path: str | None, size: int | None, seed: int = 0):
    """PublicTest faces and labels when the data is at hand; else random faces without labels."""
    if data_path:
        from fer_engine.train.data import load_fer2013

        split = load_fer2013(data_path).split("PublicTest").head(size)
        return split.images, split.labels, f"PublicTest of {data_path} ({len(split)} faces)"
    n = size or 256
    return (np.random.default_rng(seed).integers(0, 256, size=(n, 48, 48), dtype=np.uint8), None,
            f"{n} random faces (no --calibration-data given)")


def format_table(rows: list[VerifyRow]) -> str:
    lines = ["| file | precision | MB | max abs Δlogit | top-1 agreement | accuracy | PyTorch accuracy | result |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        acc = f"{r.accuracy * 100:.2f}%" if r.accuracy is not None else "–"
        ref = f"{r.reference_accuracy * 100:.2f}%" if r.reference_accuracy is not None else "–"
        verdict = "✅" if r.passed else "❌ " + "; ".join(r.failures)
        lines.append(f"| {Path(r.file).name} | {r.precision} | {r.size_mb:.2f} | {r.max_abs_diff:.2e} | "
                     f"{r.agreement * 100:.2f}% | {acc} | {ref} | {verdict} |")
    return "\n".join(lines)

