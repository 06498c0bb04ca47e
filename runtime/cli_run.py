"""``fer-run``: emotion recognition on cameras, videos, streams and images, without torch.

    fer-run --camera 0
    fer-run --video in.mp4 --output out.mp4 --json out.jsonl
    fer-run --url rtsp://cam1/stream --url rtsp://cam2/stream --json out.jsonl --no-render

As a service: SIGTERM and SIGHUP stop a run as the first Ctrl-C does (stop reading, write the frames in
flight for at most --stop-timeout seconds, close every output valid, write --stats); a second signal
stops at once. The exit code is 0 when every source ended, 128 + the signal's number when one stopped
the run (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), 2 for an error (one line, `fer-run: error: ...`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable

from fer_engine.cli import (add_verbose, non_negative_float, non_negative_int, positive_float, positive_int, run_cli,
                            unit_interval)
from fer_engine.errors import FerError
from fer_engine.signals import StopSignalScope
from fer_engine.spec import ModelSpec

from .backends import DEFAULT_MODEL
from .detectors import DETECTORS, DetectorConfig
from .paths import NamedPath, check_distinct, check_writable
from .pipeline import Pipeline, PipelineConfig
from .progress import RunProgress
from .reclassify import POLICIES, ReclassifyPolicy
from .recognizer import RecognizerConfig
from .sources import FrameSource, SourceSpec, image_files
from .stats import Summary
from .writers import CsvWriter, JsonlWriter, VideoWriter, per_source_path

PROG = "fer-run"
log = logging.getLogger("fer_engine.runtime")


# Library errors name the field (FieldError); run_cli shows the option, --FIELD unless named here.
OPTIONS = {"scale": "--detect-scale", "max_age_ms": "--reclassify-age", "max_crop_change": "--reclassify-change"}


def detect_scale(text: str) -> float:
    value = positive_float(text)
    if not 0.05 <= value <= 4:
        raise argparse.ArgumentTypeError(f"{text} is out of range; it must be between 0.05 and 4")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Real-time facial emotion recognition (torch-free).")
    src = p.add_argument_group("sources (repeat any of them to run several streams at once)")
    src.add_argument("--camera", action="append", default=[], type=non_negative_int, metavar="N",
                     help="camera index, e.g. 0")
    src.add_argument("--video", action="append", default=[], metavar="PATH", help="video file")
    src.add_argument("--url", action="append", default=[], metavar="URL", help="RTSP/HTTP stream (reconnects)")
    src.add_argument("--gst", action="append", default=[], metavar="PIPELINE",
                     help="GStreamer pipeline ending in appsink (Jetson CSI/USB cameras)")
    src.add_argument("--images", action="append", default=[], metavar="DIR|GLOB",
                     help="image folder or glob: independent photos, each on its own (no tracking across them)")
    src.add_argument("--image-sequence", action="store_true",
                     help="--images are frames of one scene: track and smooth faces across them as in a video")
    src.add_argument("--width", type=positive_int, help="camera capture width")
    src.add_argument("--height", type=positive_int, help="camera capture height")
    src.add_argument("--fps", type=positive_float, help="camera capture frame rate")
    src.add_argument("--reconnect-timeout", type=non_negative_float, default=60.0, metavar="SECONDS",
                     help="give a --url stream up after this long without a frame (default 60; 0 = retry for ever); "
                          "the run ends when no source is left")

    m = p.add_argument_group("model")
    m.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model file (.onnx, .engine, .plan), shipped model name (default {DEFAULT_MODEL}), or a model "
                        "on a Triton server: triton://HOST:8001/NAME (gRPC) or triton+http://HOST:8000/NAME")
    m.add_argument("--providers", help="onnxruntime providers in order, e.g. cuda,cpu (default: TensorRT > CUDA > CPU)")
    m.add_argument("--threads", type=positive_int,
                   help="classifier threads (default: the cores the detector leaves, at least 1)")
    m.add_argument("--detector-threads", type=positive_int,
                   help="detection workers, one thread each, on frames side by side (default: half the cores, at least 1)")
    m.add_argument("--max-batch", type=positive_int, default=32, help="most faces per inference call (default 32)")
    m.add_argument("--max-wait-ms", type=non_negative_float, default=2.0,
                   help="how long a batch waits for more faces (default 2)")

    d = p.add_argument_group("detection and tracking")
    d.add_argument("--detector", default="yunet", help=f"{' | '.join(DETECTORS)} (default yunet)")
    d.add_argument("--detector-model", help="YuNet .onnx file (default: $FER_ENGINE_YUNET, else the one shipped in the package)")
    d.add_argument("--detect-scale", type=detect_scale, default=0.5,
                   help="detect on the frame scaled by this, 0.05 to 4 (default 0.5)")
    d.add_argument("--min-face", type=non_negative_int, default=24, help="smallest face side in pixels (default 24)")
    d.add_argument("--detect-every", type=positive_int, default=1,
                   help="detect every Nth frame; in between, tracked boxes move on at their velocity (default 1)")
    d.add_argument("--redetect-change", type=non_negative_float, default=PipelineConfig.redetect_change, metavar="D",
                   help="with --detect-every: detect at once when a carried box's crop differs from the face detected "
                        "there by more than D (mean difference of 8x8 normalised crops, in deviations; "
                        "default %(default)s)")
    policy = ReclassifyPolicy()
    d.add_argument("--reclassify", choices=POLICIES, default=policy.mode,
                   help="every: classify every face on every frame; changed: classify a tracked face again only "
                        "when it moved, rescaled or changed, or after --reclassify-age (default %(default)s)")
    d.add_argument("--reclassify-age", type=non_negative_float, default=policy.max_age_ms, metavar="MS",
                   help="with --reclassify changed: classify a face again at least this often (default %(default)s)")
    d.add_argument("--reclassify-change", type=non_negative_float, default=policy.max_crop_change, metavar="D",
                   help="with --reclassify changed: classify again when the crop differs from the one last "
                        "classified by more than D (as --redetect-change; default %(default)s)")
    d.add_argument("--align", action="store_true", help="rotate crops so the eyes are level (YuNet landmarks)")
    d.add_argument("--smooth", type=unit_interval, default=0.5,
                   help="per-track smoothing of probabilities, 0 = raw, below 1 (default 0.5)")

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
    o.add_argument("--stop-timeout", type=non_negative_float, default=4.0, metavar="SECONDS",
                   help="after Ctrl-C, SIGTERM or SIGHUP, how long the frames already read get to be written before "
                        "the rest is dropped (default 4; keep it a few seconds below a container's stop grace "
                        "period, 10 s in Docker)")
    o.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    add_verbose(p)
    return p


def display_available() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def source_specs(args) -> list[SourceSpec]:
    specs = [SourceSpec("camera", str(c), args.width, args.height, args.fps) for c in args.camera]
    specs += [SourceSpec("video", v) for v in args.video]
    specs += [SourceSpec("url", u, reconnect_timeout=args.reconnect_timeout) for u in args.url]
    specs += [SourceSpec("gst", g) for g in args.gst]
    specs += [SourceSpec("images", i, image_sequence=args.image_sequence) for i in args.images]
    if not specs:
        raise FerError("no source: pass --camera N, --video PATH, --url URL, --gst PIPELINE or --images DIR")
    return specs


def input_paths(args) -> list[NamedPath]:
    inputs = [NamedPath("--video", Path(v).expanduser()) for v in args.video]
    inputs += [NamedPath("--images", file) for pattern in args.images for file in image_files(pattern)]
    for option, value in (("--model", args.model), ("--detector-model", args.detector_model)):
        if value and Path(value).expanduser().is_file():
            inputs.append(NamedPath(option, Path(value).expanduser()))
    return inputs


def output_paths(args, n_sources: int) -> list[NamedPath]:
    outputs = []
    for option, value in (("--output", args.output), ("--json", args.json), ("--csv", args.csv)):
        if value:
            outputs += [NamedPath(option, per_source_path(value, i, n_sources)) for i in range(n_sources)]
    if args.stats:
        outputs.append(NamedPath("--stats", Path(args.stats).expanduser()))
    return outputs


def check_paths(args, n_sources: int) -> None:
    """Before anything is opened for writing: no output is an input or another output, and each is writable."""
    outputs = output_paths(args, n_sources)
    check_distinct(input_paths(args), outputs)
    for output in outputs:
        check_writable(output)


def sink_opener(args) -> Callable[[list[FrameSource], ModelSpec], dict[int, list]]:
    """The pipeline opens the outputs once its sources are open (their frame rates known) and the model loaded."""
    return lambda sources, spec: open_sinks(args, sources, spec.labels)


def open_sinks(args, sources: list[FrameSource], labels: tuple[str, ...]) -> dict[int, list]:
    n = len(sources)
    sinks: dict[int, list] = {i: [] for i in range(n)}
    try:
        for i, source in enumerate(sources):
            if args.json:
                path = per_source_path(args.json, i, n)
                sinks[i].append(JsonlWriter(path, label=f"{path} (--json)"))
            if args.csv:
                path = per_source_path(args.csv, i, n)
                sinks[i].append(CsvWriter(path, labels, label=f"{path} (--csv)"))
            if args.output and not args.no_render:
                path = per_source_path(args.output, i, n)
                sinks[i].append(VideoWriter(path, source.fps, label=f"{path} (--output)"))
    except FerError:
        for opened in sinks.values():
            for sink in opened:
                sink.close()
        raise
    return sinks


def write_stats(path: str, summary: Summary) -> None:
    try:
        Path(path).expanduser().write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise FerError(f"cannot write {path} (--stats): {exc.strerror or exc}; the other outputs are complete") from None


class StoppedBeforeStart(BaseException):
    """A stop signal while the sources open and the model loads: nothing is open for writing yet."""


class StopSignals(StopSignalScope):
    """SIGINT (Ctrl-C), SIGTERM (docker stop, systemd) and SIGHUP (the terminal or the service manager hung
    up) stop a run the same way: the first stops reading and lets the frames in flight be written (for at
    most the pipeline's stop_timeout); a second stops at once. Both close every output. Before the pipeline
    exists (``pipeline`` None) a signal ends the setup at once: a container's PID 1 would otherwise ignore
    SIGTERM while the model loads, and be killed after the grace period."""

    def __init__(self, pipeline: Pipeline | None = None):
        super().__init__()
        self.pipeline = pipeline
        self.run_ended = False

    def _handle(self, number: int, frame) -> None:
        name = signal.Signals(number).name
        if self.run_ended:  # every output is closed; only the summary is left to write
            log.warning("%s: the run has ended; writing its summary", name)
            return
        self.received.append(number)
        if self.pipeline is None:
            if len(self.received) == 1:  # a second one, while the first unwinds, adds nothing
                raise StoppedBeforeStart(name)
            return
        if len(self.received) == 1:
            again = "Ctrl-C again" if number == signal.SIGINT else "a second signal"
            log.warning("%s: stopping: finishing the frames already read, for at most %g s (%s stops at once)",
                        name, self.pipeline.config.stop_timeout, again)
            self.pipeline.request_stop()
        else:
            log.warning("%s: stopping at once", name)
            self.pipeline.abort()

    @property
    def first(self) -> str | None:
        return signal.Signals(self.received[0]).name if self.received else None

    @property
    def exit_code(self) -> int:
        """128 + the number of the signal that stopped the run, as a shell reports a process it ended."""
        return 128 + self.received[0] if self.received else 0


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
    return run_cli(lambda: run(args), PROG, OPTIONS, verbose=args.verbose)


def run(args) -> int:
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING if args.quiet else logging.INFO)
    # FFmpeg's own log lines (a refused connection, a damaged packet) would come before fer-run's one-line error
    # or its count of unreadable frames. OpenCV reads this once, when it first uses FFmpeg; the user's value wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if args.output and args.no_render:
        raise FerError("--output needs rendering: drop --no-render, or drop --output")
    if args.image_sequence and not args.images:
        raise FerError("--image-sequence is about --images: add --images DIR, or drop --image-sequence")
    display = display_available() if args.display is None else args.display
    display = display and not args.no_render
    specs = source_specs(args)
    check_paths(args, len(specs))
    with StopSignals() as stops:
        try:
            stops.pipeline = Pipeline(specs, pipeline_config(args, display), sinks=sink_opener(args))
        except StoppedBeforeStart:
            log.warning("%s: stopped before the run started; nothing was written", stops.first)
            return stops.exit_code
        pipeline = stops.pipeline
        try:
            window = Window(pipeline) if display else None
        except BaseException:
            pipeline.close_sources()
            pipeline.close_sinks()
            raise
        log.info("%s", pipeline.summary.description)
        for i, source in enumerate(pipeline.sources):
            log.info("source %d: %s", i, source.name)
        progress = RunProgress(lambda: pipeline.frames_written, pipeline.expected_frames(),
                               RunProgress.wanted(args.quiet))

        def poll() -> None:
            progress.poll()
            if window:
                window.poll()

        try:
            summary = pipeline.run(poll, poll_every=0.005 if window else 0.1)
        except FerError as exc:
            pipeline.summary.stopped_by, pipeline.summary.error = stops.first, str(exc)
            if args.stats:  # what the run did up to the error; the error is the one line said
                try:
                    write_stats(args.stats, pipeline.summary)
                except FerError:
                    pass
            raise
        finally:
            progress.close()
            if window:
                window.close()
        # Still inside the scope: a signal that lands while the summary is written (a second Ctrl-C, a
        # service manager's SIGTERM right after the first) must not take the default action, which would
        # kill the process before --stats is written and make the exit code depend on timing.
        stops.run_ended = True
        summary.stopped_by = stops.first
        print(summary.format(), file=sys.stderr)
        if args.stats:
            write_stats(args.stats, summary)
        return stops.exit_code


def pipeline_config(args, display: bool) -> PipelineConfig:
    providers = tuple(p for p in args.providers.split(",") if p) if args.providers else None
    return PipelineConfig(
        recognizer=RecognizerConfig(
            model=args.model, providers=providers, threads=args.threads, align=args.align,
            detector=DetectorConfig(args.detector, args.detector_model, args.detect_scale, args.min_face)),
        detect_every=args.detect_every, redetect_change=args.redetect_change,
        reclassify=ReclassifyPolicy(args.reclassify, max_age_ms=args.reclassify_age,
                                    max_crop_change=args.reclassify_change),
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        smooth=args.smooth, render=not args.no_render and bool(args.output or display), realtime=args.realtime,
        detector_threads=args.detector_threads, stop_timeout=args.stop_timeout)


if __name__ == "__main__":
    sys.exit(main())
