"""Soak test of fer-run: a long run at real-time pace, its resident memory sampled every second.

    python -m fer_engine.benchmarks.soak --minutes 30 --out soak
    python -m fer_engine.benchmarks.soak --minutes 1 --out soak -- --detector haar   # after --: fer-run options

A clip with drawn faces is generated and written over and over into one video as long as the run, and
fer-run reads it with ``--realtime`` (at its frame rate, as a camera would give it: little CPU, and the
run lasts as long as the video) with the default model, writing JSON Lines and --stats. At the end:
RSS first (at the first frame written, the model loaded) / after a minute / peak / last (MB), and frames
in and out. No frame may go unaccounted for:
frames read = frames written + frames dropped (``--realtime`` drops a frame only when the pipeline is
behind, and counts it); the JSON Lines hold one line per frame written. The figures go to stdout and to
OUT/soak.json, the samples to OUT/rss.csv. Exit code 1 when a frame is lost or fer-run fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_engine.cli import positive_float, positive_int

from .face_video import drawn_faces, make_face_video
from .rss import rss_mb

PROG = "python -m fer_engine.benchmarks.soak"


@dataclass
class SoakResult:
    seconds: float
    exit_code: int
    video_frames: int
    frames_read: int
    frames_written: int
    frames_dropped: int
    json_lines: int
    rss_first_mb: float
    rss_after_1min_mb: float
    rss_peak_mb: float
    rss_last_mb: float
    rss_samples: int

    @property
    def frames_lost(self) -> int:
        """Frames read but neither written nor counted as dropped, or written but missing from the JSON."""
        return (self.frames_read - self.frames_written - self.frames_dropped) + (self.frames_written - self.json_lines)

    def format(self) -> str:
        return (f"{self.seconds / 60:.1f} min, exit {self.exit_code}: RSS MB first {self.rss_first_mb:.0f}, after 1 min "
                f"{self.rss_after_1min_mb:.0f}, peak {self.rss_peak_mb:.0f}, last {self.rss_last_mb:.0f} "
                f"({self.rss_samples} samples); frames: video {self.video_frames}, read {self.frames_read}, "
                f"written {self.frames_written}, dropped {self.frames_dropped}, JSON lines {self.json_lines}, "
                f"lost {self.frames_lost}")


def looped_video(path: Path, seconds: float, fps: float, size: tuple[int, int], clip_seconds: float = 10.0) -> int:
    """A clip of drawn faces, written over and over until the video lasts ``seconds``; returns its frames."""
    clip_path = path.with_name("clip.mp4")
    make_face_video(clip_path, drawn_faces(8), np.arange(8) % 7, frames=round(clip_seconds * fps), size=size,
                    faces_per_frame=2, face_side=(size[1] // 3, size[1] // 3 + 10), hold=round(2 * fps), fps=fps)
    capture = cv2.VideoCapture(str(clip_path))
    clip = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        clip.append(frame)
    capture.release()
    total = round(seconds * fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(total):
        writer.write(clip[i % len(clip)])
    writer.release()
    clip_path.unlink()
    return total


def soak(out: Path, seconds: float, fps: float, size: tuple[int, int], extra: list[str]) -> SoakResult:
    out.mkdir(parents=True, exist_ok=True)
    video = out / "looped.mp4"
    frames = looped_video(video, seconds, fps, size)
    jsonl, stats_path = out / "faces.jsonl", out / "stats.json"
    command = [sys.executable, "-m", "fer_engine.runtime.cli_run", "--video", str(video), "--realtime",
               "--json", str(jsonl), "--stats", str(stats_path), "--no-render", "--no-display", "-q", *extra]
    print(" ".join(command), file=sys.stderr)
    started = time.monotonic()
    process = subprocess.Popen(command)
    samples: list[tuple[float, float]] = []
    first = None  # the first sample once a frame was written: the model is loaded and the run going
    with open(out / "rss.csv", "w") as csv_file:
        csv_file.write("seconds,rss_mb\n")
        while process.poll() is None:
            value = rss_mb(process.pid)
            if value is not None:
                samples.append((time.monotonic() - started, value))
                csv_file.write(f"{samples[-1][0]:.1f},{value:.1f}\n")
                csv_file.flush()
                if first is None and jsonl.is_file() and jsonl.stat().st_size:
                    first = len(samples) - 1
            time.sleep(1.0)
    code = process.wait()
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    source = (stats.get("sources") or [{}])[0]
    json_lines = sum(1 for _ in open(jsonl)) if jsonl.is_file() else 0
    running = samples[first or 0:]
    values = [v for _, v in running] or [0.0]
    after_1min = next((v for t, v in running if t - running[0][0] >= 60), values[-1]) if running else 0.0
    return SoakResult(seconds=time.monotonic() - started, exit_code=code, video_frames=frames,
                      frames_read=source.get("frames", 0), frames_written=stats.get("frames", 0),
                      frames_dropped=stats.get("dropped", 0), json_lines=json_lines, rss_first_mb=values[0],
                      rss_after_1min_mb=after_1min, rss_peak_mb=max(values), rss_last_mb=values[-1],
                      rss_samples=len(samples))


def size_arg(text: str) -> tuple[int, int]:
    try:
        width, height = (positive_int(part) for part in text.lower().split("x"))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a size like 320x240") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=positive_float, default=30.0, help="length of the run (default 30)")
    p.add_argument("--fps", type=positive_float, default=10.0, help="frame rate of the video (default 10)")
    p.add_argument("--size", type=size_arg, default=(320, 240), help="frame size (default 320x240)")
    p.add_argument("--out", type=Path, default=Path("soak"), help="folder for the video, outputs and figures")
    args = p.parse_args(own)
    result = soak(args.out, args.minutes * 60, args.fps, args.size, extra)
    (args.out / "soak.json").write_text(json.dumps({**asdict(result), "frames_lost": result.frames_lost}, indent=2))
    print(result.format())
    return 0 if result.exit_code == 0 and result.frames_lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
