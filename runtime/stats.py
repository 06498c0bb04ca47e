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
class SourceSummary:
    """What one source gave: frames read, and the events a run over many hours must not hide."""

    name: str
    frames: int = 0  # frames read from the source (written ones are the run's ``frames``)
    dropped: int = 0  # live frames replaced by a newer one before detection took them
    corrupt: int = 0  # unreadable frames or images skipped
    declared_frames: int | None = None  # a video file's frame count, as its container declares it
    ended_early: bool = False  # a video file that ended before its declared frame count
    reconnects: int | None = None  # streams: connections made again after the stream dropped
    seconds_without_frames: float | None = None  # streams: time spent reconnecting
    frames_lost: int | None = None  # streams: seconds without frames × the stream's frame rate (an estimate)
    gave_up: bool = False  # a stream given up after --reconnect-timeout without a frame

    def to_dict(self) -> dict:
        record = {"name": self.name, "frames": self.frames, "dropped": self.dropped, "corrupt": self.corrupt}
        if self.declared_frames is not None:
            record.update(declared_frames=self.declared_frames, ended_early=self.ended_early)
        if self.reconnects is not None:
            record.update(reconnects=self.reconnects, seconds_without_frames=round(self.seconds_without_frames or 0.0, 2),
                          frames_lost=self.frames_lost, gave_up=self.gave_up)
        return record

    def notable(self) -> bool:
        """Worth a line of its own in the summary: a stream, or a file that ended early."""
        return self.reconnects is not None or self.ended_early

    def format(self, index: int) -> str:
        line = f"source {index} ({self.name}): {self.frames} frames read"
        if self.ended_early:
            line += f" of {self.declared_frames} declared (the file ended early)"
        if self.reconnects is not None:
            plural = "" if self.reconnects == 1 else "s"
            line += f", {self.reconnects} reconnect{plural}, {self.seconds_without_frames or 0.0:.1f} s without frames"
            if self.frames_lost:
                line += f" (about {self.frames_lost} frames lost)"
            if self.gave_up:
                line += ", given up"
        return line + f", {self.dropped} dropped"


@dataclass
class Summary:
    frames: int = 0
    faces: int = 0
    dropped: int = 0  # live frames replaced by a newer one before detection took them
    corrupt: int = 0  # unreadable frames or images skipped
    seconds: float = 0.0
    batches: int = 0
    batched_faces: int = 0  # faces classified: all of them, unless a re-classification policy skipped some
    detected_frames: int = 0  # frames the detector ran on: all of them, unless --detect-every carried boxes
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""
    sources: list[SourceSummary] = field(default_factory=list)
    stopped_by: str | None = None  # the signal that stopped the run early (SIGINT, SIGTERM, SIGHUP)
    error: str | None = None  # the error that ended the run, if one did

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        ended = {key: value for key, value in (("stopped_by", self.stopped_by), ("error", self.error)) if value}
        return {**ended, "frames": self.frames, "faces": self.faces, "dropped": self.dropped, "corrupt": self.corrupt,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 1), "batches": self.batches,
                "mean_batch": round(self.batched_faces / self.batches, 2) if self.batches else 0.0,
                "classified_faces": self.batched_faces, "detected_frames": self.detected_frames,
                "latency_ms": {k: {q: round(v, 2) for q, v in d.items()} for k, d in self.latency_ms.items()},
                "description": self.description, "sources": [source.to_dict() for source in self.sources]}

    def _skipped(self) -> str:
        """What the re-classification policy and --detect-every saved, when they saved something."""
        parts = []
        if self.batched_faces < self.faces:
            parts.append(f"{self.batched_faces} of {self.faces} faces classified")
        if self.detected_frames < self.frames:
            parts.append(f"{self.detected_frames} of {self.frames} frames detected")
        return "; " + ", ".join(parts) if parts else ""

    def format(self) -> str:
        mean_batch = self.batched_faces / self.batches if self.batches else 0.0
        lines = [f"{self.frames} frames, {self.faces} faces, {self.dropped} dropped, {self.corrupt} unreadable "
                 f"in {self.seconds:.1f} s: {self.fps:.1f} frames/s; {self.batches} inference calls "
                 f"(mean batch {mean_batch:.1f} faces)" + self._skipped()
                 + (f"; stopped by {self.stopped_by}" if self.stopped_by else "")]
        lines += [source.format(i) for i, source in enumerate(self.sources) if source.notable()]
        if self.latency_ms:
            lines.append("latency ms  " + "  ".join(f"{stage} p50 {d['p50']:.1f} / p99 {d['p99']:.1f}"
                                                    for stage, d in self.latency_ms.items()))
        return "\n".join(lines)
