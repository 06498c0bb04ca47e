"""Per-stage latency samples (bounded, so a long run stays flat in memory) and the end-of-run summary."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

STAGES = ("queue", "detect", "infer", "track+render", "write", "end-to-end")


class StageTimes:
    def __init__(self, keep: int = 20_000):
        self._samples = {stage: deque(maxlen=keep) for stage in STAGES}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds * 1000.0)

    def percentiles(self) -> dict[str, dict[str, float]]:
        with self._lock:
            snapshot = {stage: np.array(values) for stage, values in self._samples.items() if values}
        return {stage: {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
                for stage, v in snapshot.items()}


@dataclass
class Summary:
    frames: int = 0
    faces: int = 0
    dropped: int = 0  # live frames replaced by a newer one before detection took them
    corrupt: int = 0  # unreadable frames or images skipped
    seconds: float = 0.0
    batches: int = 0
    batched_faces: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"frames": self.frames, "faces": self.faces, "dropped": self.dropped, "corrupt": self.corrupt,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 1), "batches": self.batches,
                "mean_batch": round(self.batched_faces / self.batches, 2) if self.batches else 0.0,
                "latency_ms": {k: {q: round(v, 2) for q, v in d.items()} for k, d in self.latency_ms.items()},
                "description": self.description}

    def format(self) -> str:
        mean_batch = self.batched_faces / self.batches if self.batches else 0.0
        lines = [f"{self.frames} frames, {self.faces} faces, {self.dropped} dropped, {self.corrupt} unreadable "
                 f"in {self.seconds:.1f} s: {self.fps:.1f} frames/s; {self.batches} inference calls "
                 f"(mean batch {mean_batch:.1f} faces)"]
        if self.latency_ms:
            lines.append("latency ms  " + "  ".join(f"{stage} p50 {d['p50']:.1f} / p99 {d['p99']:.1f}"
                                                    for stage, d in self.latency_ms.items()))
        return "\n".join(lines)
