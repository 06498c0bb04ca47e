"""Every export checked against the PyTorch model it came from, on the same ``pixel_values``.

A trained model is judged by its decisions: top-1 agreement with PyTorch (fp32 also max |Δlogit|; int8 also
the accuracy drop on the labelled faces). An untrained model's logits are nearly uniform, so its top-1 choice
flips on noise and its accuracy is chance: it is judged by its outputs instead, max |Δlogit| for fp32 and the
correlation of the logits with PyTorch's for every precision. The limits of each format are in its entry of
the format table (``Format.trained`` / ``Format.untrained`` in fer_engine.formats).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fer_engine.formats import format_of
from fer_engine.runtime.backends import load_classifier


@dataclass(frozen=True)
class Weights:
    """Where the exported weights came from, and whether they were trained on FER2013."""
    trained: bool
    source: str

    def describe(self) -> str:
        if self.trained:
            return f"trained ({self.source})"
        return (f"untrained ({self.source}): accuracy is chance level, so each export is judged by its logits "
                "(max |Δlogit|, correlation with PyTorch's), not by top-1 agreement")

    def to_dict(self) -> dict:
        return {"trained": self.trained, "source": self.source}


@dataclass
class VerifyRow:
    file: str
    precision: str
    size_mb: float
    faces: int
    max_abs_diff: float
    correlation: float
    agreement: float
    accuracy: float | None
    reference_accuracy: float | None
    passed: bool
    failures: list[str]
    trained: bool = True
    judged_by: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def torch_logits(module, pixel_values: np.ndarray, batch_size: int = 64, progress=None) -> np.ndarray:
    """PyTorch's logits, ``batch_size`` faces at a time; ``progress.update(n)`` after each batch, if given."""
    import torch

    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(pixel_values), batch_size):
            out.append(module(torch.from_numpy(pixel_values[start:start + batch_size])).float().numpy())
            if progress is not None:
                progress.update(len(out[-1]))
    return np.concatenate(out)


def logit_correlation(logits: np.ndarray, reference: np.ndarray) -> float:
    """Pearson r of two [N, K] logit arrays after removing each face's mean (softmax ignores it) and each
    class's mean over the faces (an untrained head's fixed offset per class would make any outputs look alike):
    how well the export follows the way PyTorch's logits change from face to face."""
    def centred(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        return (x - x.mean(axis=0, keepdims=True)).ravel()

    a, b = centred(logits), centred(reference)
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if denominator == 0:  # constant outputs (one face): equal or not is all there is to say
        return 1.0 if np.allclose(logits, reference, atol=1e-3) else 0.0
    return float((a * b).sum() / denominator)


def verify_file(path: Path, reference: np.ndarray, pixel_values: np.ndarray, labels: np.ndarray | None,
                batch_size: int = 64, trained: bool = True, progress=None) -> VerifyRow:
    """The export at ``path`` against PyTorch's ``reference`` logits; ``progress.update(n)`` after each batch
    of faces, if given."""
    classifier = load_classifier(str(path))
    precision = classifier.spec.precision
    chunks = []
    for i in range(0, len(pixel_values), batch_size):
        chunks.append(classifier.predict_logits(pixel_values[i:i + batch_size]))
        if progress is not None:
            progress.update(len(chunks[-1]))
    logits = np.concatenate(chunks)
    agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
    max_diff = float(np.abs(logits - reference).max())
    correlation = logit_correlation(logits, reference)
    accuracy = ref_accuracy = None
    if labels is not None and trained:
        accuracy = float((logits.argmax(1) == labels).mean())
        ref_accuracy = float((reference.argmax(1) == labels).mean())
    limits = format_of(path, precision).thresholds(trained)
    failures = []
    if limits.max_abs_diff is not None and max_diff > limits.max_abs_diff:
        failures.append(f"max |Δlogit| {max_diff:.2e} > {limits.max_abs_diff:.0e}")
    if limits.correlation is not None and correlation < limits.correlation:
        failures.append(f"logit correlation {correlation:.4f} < {limits.correlation}")
    if limits.agreement is not None and agreement < limits.agreement:
        failures.append(f"top-1 agreement {agreement * 100:.2f}% < {limits.agreement * 100:.1f}%")
    if limits.accuracy_drop is not None and accuracy is not None and ref_accuracy - accuracy > limits.accuracy_drop:
        failures.append(f"accuracy drop {(ref_accuracy - accuracy) * 100:.2f} > {limits.accuracy_drop * 100:.1f} point")
    return VerifyRow(str(path), precision, path.stat().st_size / 1e6, len(logits), max_diff, correlation, agreement,
                     accuracy, ref_accuracy, not failures, failures, trained, limits.judged_by())


def verification_faces(data, size: int | None, seed: int = 0):
    """PublicTest faces and labels of a loaded ``FerData``; without data, random faces and no labels."""
    if data is not None:
        split = data.split("PublicTest").head(size)
        return split.images, split.labels, f"PublicTest of {data.source} ({len(split)} faces)"
    n = size or 256
    return (np.random.default_rng(seed).integers(0, 256, size=(n, 48, 48), dtype=np.uint8), None,
            f"{n} random faces (no --calibration-data given)")


def format_table(rows: list[VerifyRow]) -> str:
    lines = ["| file | precision | MB | max abs Δlogit | logit correlation | top-1 agreement | accuracy | "
             "PyTorch accuracy | result |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        acc = f"{r.accuracy * 100:.2f}%" if r.accuracy is not None else "–"
        ref = f"{r.reference_accuracy * 100:.2f}%" if r.reference_accuracy is not None else "–"
        if r.passed:
            verdict = "✅" if r.trained else "✅ untrained: logits match"
        else:
            verdict = "❌ " + "; ".join(r.failures)
        lines.append(f"| {Path(r.file).name} | {r.precision} | {r.size_mb:.2f} | {r.max_abs_diff:.2e} | "
                     f"{r.correlation:.4f} | {r.agreement * 100:.2f}% | {acc} | {ref} | {verdict} |")
    return "\n".join(lines)
