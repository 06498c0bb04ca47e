"""Classification metrics from a confusion matrix (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Report:
    labels: tuple[str, ...]
    confusion: np.ndarray  # [true, predicted]

    @classmethod
    def from_predictions(cls, y_true, y_pred, labels) -> "Report":
        k = len(labels)
        confusion = np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)
        return cls(tuple(labels), confusion)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.count, 1))

    def per_class(self) -> dict[str, dict[str, float]]:
        tp = np.diag(self.confusion).astype(float)
        predicted = self.confusion.sum(0)
        actual = self.confusion.sum(1)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        return {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                for name, p, r, f, s in zip(self.labels, precision, recall, f1, actual)}

    @property
    def macro_f1(self) -> float:
        return float(np.mean([c["f1"] for c in self.per_class().values()]))

    def to_dict(self) -> dict:
        return {"count": self.count, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "per_class": self.per_class(), "labels": list(self.labels),
                "confusion": self.confusion.tolist()}

    def format(self) -> str:
        lines = [f"accuracy {self.accuracy * 100:.2f}%   macro-F1 {self.macro_f1 * 100:.2f}%   ({self.count} faces)", "",
                 f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
        for name, c in self.per_class().items():
            lines.append(f"{name:<10}{c['precision'] * 100:>9.1f}%{c['recall'] * 100:>9.1f}%{c['f1'] * 100:>9.1f}%{c['support']:>10}")
        width = max(7, max(len(n) for n in self.labels) + 1)
        lines += ["", "confusion (rows: true, columns: predicted)",
                  " " * width + "".join(f"{n[:7]:>8}" for n in self.labels)]
        for name, row in zip(self.labels, self.confusion):
            lines.append(f"{name:<{width}}" + "".join(f"{v:>8}" for v in row))
        return "\n".join(lines)
