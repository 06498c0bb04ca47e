"""``fer-run``: emotion recognition on cameras, videos, streams and images, without torch.

    fer-run --camera 0
    fer-run --video in.mp4 --output out.mp4 --json out.jsonl
    fer-run --url rtsp://cam1/stream --url rtsp://cam2/stream --json out.jsonl --no-render
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from fer_engine.cli import run_cli
from fer_engine.errors import FerError

from .backends import DEFAULT_MODEL
from .detectors import DETECTORS, DetectorConfig
from .pipeline import Pipeline, PipelineConfig
from .recognizer import RecognizerConfig
from .sources import SourceSpec
from .writers import CsvWriter, JsonlWriter, VideoWriter, per_source_path

PROG = "fer-run"
log = logging.getLogger("fer_engine.runtime")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Real-time facial emotion recognition (torch-free).")
    src = p.add_argument_group("sources (repeat any of them to run several streams at once)")
    src.add_argument("--camera", action="append", default=[], metavar="N", help="camera index, e.g. 0")
    src.add_argument("--video", action="append", default=[], metavar="PATH", help="video file")
    src.add_argument("--url", action="append", default=[], metavar="URL", help="RTSP/HTTP stream (reconnects)")
    src.add_argument("--gst", action="append", default=[], metavar="PIPELINE",
                     help="GStreamer pipeline ending in appsink (Jetson CSI/USB cameras)")
    src.add_argument("--images", action="append", default=[], metavar="DIR|GLOB", help="image folder or glob")
    src.add_argument("--width", type=int, help="camera capture width")
    src.add_argument("--height", type=int, help="camera capture height")
    src.add_argument("--fps", type=float, help="camera capture frame rate")

    m = p.add_argument_group("model")
    m.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model file (.onnx, .engine, .plan), shipped model name (default {DEFAULT_MODEL}), or a model "
                        "on a Triton server: triton://HOST:8001/NAME (gRPC) or triton+http://HOST:8000/NAME")
    m.add_argument("--providers", help="onnxruntime providers in order, e.g. cuda,cpu (default: TensorRT > CUDA > CPU)")
    m.add_argument("--threads", type=int,
                   help="classifier threads (default: the cores the detector leaves, at least 1)")
    m.add_argument("--detector-threads", type=int,
                   help="detection workers, one thread each, on frames side by side (default: half the cores, at least 1)")
    m.add_argument("--max-batch", type=int, default=32, help="most faces per inference call (default 32)")
    m.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits for more faces (default 2)")

    d = p.add_argument_group("detection and tracking")
    d.add_argument("--detector", default="yunet", help=f"{' | '.join(DETECTORS)} (default yunet)")
    d.add_argument("--detector-model", help="YuNet .onnx file (default: $FER_ENGINE_YUNET, the cache, or a one-time download)")
    d.add_argument("--detect-scale", type=float, default=0.5, help="detect on the frame scaled by this (default 0.5)")
    d.add_argument("--min-face", type=int, default=24, help="smallest face side in pixels (default 24)")
    d.add_argument("--detect-every", type=int, default=1, help="detect every Nth frame, reuse boxes in between")
    d.add_argument("--align", action="store_true", help="rotate crops so the eyes are level (YuNet landmarks)")
    d.add_argument("--smooth", type=float, default=0.5, help="per-track smoothing of probabilities, 0 = raw (default 0.5)")

    o = p.add_argument_group("outputs")
    o.add_argument("--output", metavar="VIDEO", help="annotated video, e.g. out.mp4")
    o.add_argument("--json", metavar="PATH", help="JSON Lines, one object per frame")
    o.add_argument("--csv", metavar="PATH", help="CSV, one row per face")
    o.add_argument("--stats", metavar="PATH", help="write the end-of-run summary as JSON")
    o.add_argument("--display", action="store_true", default=None,
                   help="show a window (default: on where a display exists); q or Esc quits")
    o.add_argument("--no-display", dest="display", action="store_false", help="never show a window")
    o.add_argument("--no-render", action="store_true", help="analytics only: draw nothing")
    o.add_argument("--realtime", action="store_true", help="read files at their frame rate, dropping frames when behind")
    o.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p


def display_available() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def source_specs(args) -> list[SourceSpec]:
    specs = [SourceSpec("camera", c, args.width, args.height, args.fps) for c in args.camera]
    specs += [SourceSpec("video", v) for v in args.video]
    specs += [SourceSpec("url", u) for u in args.url]
    specs += [SourceSpec("gst", g) for g in args.gst]
    specs += [SourceSpec("images", i) for i in args.images]
    if not specs:
        raise FerError("no source: pass --camera N, --video PATH, --url URL, --gst PIPELINE or --images DIR")
    return specs


def open_sinks(args, pipeline: Pipeline) -> dict[int, list]:
    n = len(pipeline.sources)
    sinks: dict[int, list] = {i: [] for i in range(n)}
    try:
        for i, source in enumerate(pipeline.sources):
            if args.json:
                sinks[i].append(JsonlWriter(per_source_path(args.json, i, n)))
            if args.csv:
                sinks[i].append(CsvWriter(per_source_path(args.csv, i, n), pipeline.recognizer.spec.labels))
            if args.output and not args.no_render:
                sinks[i].append(VideoWriter(per_source_path(args.output, i, n), source.fps))
    except FerError:
        for opened in sinks.values():
            for sink in opened:
                sink.close()
        raise
    return sinks


class Window:
    """A window per source on the main thread (OpenCV's GUI wants that); q or Esc asks the pipeline to stop."""

    def __init__(self, pipeline: Pipeline):
        import cv2

        self.cv2, self.pipeline = cv2, pipeline
        try:
            cv2.namedWindow(PROG, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise FerError("this OpenCV has no GUI (opencv-python-headless): pip install opencv-python "
                           "for --display, or run with --no-display") from None

    def poll(self) -> None:
        while self.pipeline.display_slot:
            source, image = self.pipeline.display_slot.popleft()
            self.cv2.imshow(PROG if source == 0 else f"{PROG} {source}", image)
        if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.pipeline.request_stop()

    def close(self) -> None:
        self.cv2.destroyAllWindows()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), PROG)


def run(args) -> int:
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING if args.quiet else logging.INFO)
    # FFmpeg's own log lines (a refused connection, a damaged packet) would come before fer-run's one-line error
    # or its count of unreadable frames. OpenCV reads this once, when it first uses FFmpeg; the user's value wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if args.output and args.no_render:
        raise FerError("--output needs rendering: drop --no-render, or drop --output")
    display = display_available() if args.display is None else args.display
    display = display and not args.no_render
    providers = tuple(p for p in args.providers.split(",") if p) if args.providers else None
    config = PipelineConfig(
        recognizer=RecognizerConfig(
            model=args.model, providers=providers, threads=args.threads, align=args.align,
            detector=DetectorConfig(args.detector, args.detector_model, args.detect_scale, args.min_face)),
        detect_every=args.detect_every, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        smooth=args.smooth, render=not args.no_render and bool(args.output or display), realtime=args.realtime,
        detector_threads=args.detector_threads)
    pipeline = Pipeline(source_specs(args), config)
    try:
        pipeline.sinks = open_sinks(args, pipeline)
        window = Window(pipeline) if display else None
    except BaseException:
        pipeline.close_sources()
        raise
    log.info("%s", pipeline.summary.description)
    for i, source in enumerate(pipeline.sources):
        log.info("source %d: %s", i, source.name)

    interrupts = []

    def on_sigint(signum, frame):
        interrupts.append(signum)
        if len(interrupts) == 1:
            log.warning("stopping: finishing the frames already read (Ctrl-C again to stop at once)")
            pipeline.request_stop()
        else:
            pipeline.abort()

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    try:
        summary = pipeline.run(window.poll if window else None)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if window:
            window.close()
    print(summary.format(), file=sys.stderr)
    if args.stats:
        Path(args.stats).write_text(json.dumps(summary.to_dict(), indent=2))
    return 130 if interrupts else 0


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
