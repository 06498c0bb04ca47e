"""The multithreaded pipeline: capture → detect + crop → batched inference → track + render → write.

Each stage (``runtime/stages/``) runs on its own thread (capture one per source, detection several);
stages are joined by bounded channels (``runtime/scheduling.py``), so memory stays flat however long the
run. Live sources keep only their newest frame (counting what they drop); files lose no frame (unless
``realtime``).

End of stream drains every stage. ``request_stop()`` (Ctrl-C, SIGTERM) stops the sources and drains the
rest, so files end complete at the last frame read; frames still in flight ``stop_timeout`` seconds later
are dropped (``abort()``), so a service stops well inside its grace period. A failing stage stops
everything and ``run()`` raises its error; no stage can block forever, because every channel operation
wakes up to check for a stop.

    pipeline = Pipeline([SourceSpec("video", "in.mp4")])
    for result in pipeline:          # FrameResult, in frame order per source
        print(result.to_dict())
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Mapping, Union

from fer_engine.errors import FerError, FieldError
from fer_engine.spec import ModelSpec

from .reclassify import ReclassifyPolicy
from .recognizer import Recognizer, RecognizerConfig
from .results import FrameResult
from .scheduling import END, POLL, Channel, FrameMux, StageThreads, Stops
from .sources import FrameSource, SourceSpec
from .stages.capture import CaptureStage
from .stages.detect import DetectStage
from .stages.infer import InferStage
from .stages.track import TrackStage
from .stages.write import WriteStage
from .stats import StageTimes, Summary

log = logging.getLogger("fer_engine.runtime")

JOIN_GRACE = 1.5  # seconds all stages together get to exit after a hard stop

# The outputs of each source (index → objects with ``write(result, image)`` and ``close()``), or a function
# that opens them once the sources are open and the model is loaded (their frame rates and labels known).
Sinks = Union[Mapping[int, list], Callable[[List[FrameSource], ModelSpec], Mapping[int, list]]]  # typing.List: Python 3.8 (JetPack 5)


@dataclass(frozen=True)
class PipelineConfig:
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    detect_every: int = 1  # run the detector on every Nth frame of a source; carry its tracks' boxes in between
    # A carried box whose crop differs from the face detected there by more than this (the crop signatures of
    # tracking.py) makes its frame a detection frame: the face moved otherwise than its track predicted.
    redetect_change: float = 0.5
    reclassify: ReclassifyPolicy = field(default_factory=ReclassifyPolicy)
    max_batch: int = 32
    max_wait_ms: float = 2.0  # how long a batch waits for more faces once it has some
    smooth: float = 0.5  # per-track weight of past probabilities; 0 = raw per-frame output
    render: bool = True  # draw results on frames (needed for --output and the window)
    realtime: bool = False  # read files at their frame rate and drop frames like a live source
    queue_size: int = 8
    # Detection and classification run at the same time on their own threads: each gets a share of the cores
    # instead of both spreading over all of them and contending (measured in benchmarks/RESULTS.md).
    # None = half the cores for detection workers, the rest for the classifier unless its threads are set.
    detector_threads: int | None = None
    # After request_stop(), the frames in flight get this long to be written; then the rest is dropped.
    stop_timeout: float = 4.0

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise FieldError("detect_every", f"must be 1 or more, got {self.detect_every}")
        if self.redetect_change < 0:
            raise FieldError("redetect_change", f"cannot be negative, got {self.redetect_change}")
        if self.max_batch < 1:
            raise FieldError("max_batch", f"must be 1 or more, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise FieldError("max_wait_ms", f"cannot be negative, got {self.max_wait_ms}")
        if self.detector_threads is not None and self.detector_threads < 1:
            raise FieldError("detector_threads", f"must be 1 or more, got {self.detector_threads}")
        if not 0.0 <= self.smooth < 1.0:
            raise FieldError("smooth", f"must be in [0, 1), got {self.smooth}")
        if self.stop_timeout < 0:
            raise FieldError("stop_timeout", f"cannot be negative, got {self.stop_timeout}")

    def thread_split(self, cores: int | None = None) -> tuple[int, int]:
        """(detector threads, classifier threads) for this many cores."""
        cores = cores or os.cpu_count() or 2
        detector = self.detector_threads or max(1, cores // 2)
        return detector, self.recognizer.threads or max(1, cores - detector)


class Pipeline:
    def __init__(self, sources: list[SourceSpec | FrameSource], config: PipelineConfig | None = None,
                 sinks: Sinks | None = None, recognizer: Recognizer | None = None,
                 on_result: Callable[[FrameResult], None] | None = None):
        self.config = config or PipelineConfig()
        if not sources:
            raise FerError("no source: pass --camera, --video, --url, --gst or --images")
        # Sources first: a camera that isn't there is reported before the model and detector load.
        self.sources: list[FrameSource] = []
        try:
            for source in sources:
                self.sources.append(source.open() if isinstance(source, SourceSpec) else source)
            self.detector_threads, classifier_threads = self.config.thread_split()
            base = self.config.recognizer
            # Detection runs as detector_threads workers of one thread each, on frames side by side: on small
            # images that scales better than one detector on several threads (benchmarks/RESULTS.md).
            self.recognizer = recognizer or Recognizer(dataclasses.replace(
                base, threads=classifier_threads,
                detector=dataclasses.replace(base.detector, threads=base.detector.threads or 1)))
            # Plus one spare worker per classifier thread, which helps only while the classifier keeps up.
            self._detectors = self.recognizer.detector_pool(self.detector_threads + classifier_threads)
            self.sinks: dict[int, list] = dict(sinks(self.sources, self.recognizer.spec) if callable(sinks)
                                               else sinks or {})
        except BaseException:
            self.close_sources()
            raise
        self.on_result = on_result
        self.times = StageTimes()
        self.summary = Summary(description=self.recognizer.describe())
        self.display_slot: deque = deque(maxlen=1)  # newest annotated frame, for a window on the main thread
        self._stops = Stops()
        self._error: tuple[str, BaseException] | None = None
        self._error_lock = threading.Lock()
        self._stages = StageThreads(self._fail)
        self._mux: FrameMux | None = None
        self._captures: list[CaptureStage] = []
        self._capture_threads: list[threading.Thread] = []
        self._write_thread: threading.Thread | None = None
        self._detect: DetectStage | None = None
        self._infer: InferStage | None = None
        self._writer: WriteStage | None = None
        self._results: Channel | None = None
        self._stop_deadline: float | None = None

    # ---- control -------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop reading sources; the frames already read are still processed and written, for at most
        ``config.stop_timeout`` seconds in ``run()``."""
        if self._stop_deadline is None:
            self._stop_deadline = time.perf_counter() + self.config.stop_timeout
        self._stop_reading()

    def abort(self) -> None:
        """Stop every stage now (a second Ctrl-C); files keep what was written."""
        self._stop_reading()
        self._stops.now.set()

    def _stop_reading(self) -> None:
        self._stops.reading.set()
        if self._mux is not None:
            self._mux.close_all()
        for source in self.sources:
            source.interrupt()

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:  # the first failure is the one reported; later ones follow from the stop
                self._error = (stage, exc)
        self.abort()

    # ---- running -------------------------------------------------------------------------------------
    def start(self) -> None:
        import cv2

        # OpenCV's thread count is process-wide: set for the run, given back in finish(). One thread: the
        # detection workers already run side by side, and OpenCV's own pool would contend with them.
        self._cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        config, stops, size = self.config, self._stops, self.config.queue_size
        self._mux = FrameMux([s.live or config.realtime for s in self.sources], size, stops)
        if stops.reading.is_set():  # stopped before it started (a signal while the model loaded)
            self._mux.close_all()
        to_infer, to_track, to_write = Channel(size, stops), Channel(size, stops), Channel(size, stops)
        independent = [source.independent for source in self.sources]
        self._captures = [CaptureStage(i, source, self._mux, stops, config.realtime)
                          for i, source in enumerate(self.sources)]
        self._detect = DetectStage(self._detectors, self.detector_threads, self.recognizer.crop, self._mux, to_infer, stops,
                             self.times, detect_every=config.detect_every, independent=independent,
                             keep_images=config.render, reclassify=config.reclassify,
                             redetect_change=config.redetect_change)
        self._infer = InferStage(self.recognizer.classify, to_infer, to_track, self.times,
                                 max_batch=config.max_batch, max_wait_ms=config.max_wait_ms)
        track = TrackStage(to_track, to_write, self.times, labels=self.recognizer.spec.labels,
                           independent=independent, smooth=config.smooth, render=config.render)
        self._writer = WriteStage(to_write, self.sinks, self.times, self.display_slot,
                                  results=self._results, on_result=self.on_result)
        self._capture_threads = [self._stages.add(f"capture-{c.index}", c.run) for c in self._captures]
        for name, loop in self._detect.workers():
            self._stages.add(name, loop)
        self._stages.add("infer", self._infer.run)
        self._stages.add("track", track.run)
        self._write_thread = self._stages.add("write", self._writer.run)
        self._started = time.perf_counter()
        self._stages.start()

    @property
    def frames_written(self) -> int:
        """Frames through every stage so far (for progress)."""
        return self._writer.frames if self._writer is not None else 0

    def expected_frames(self) -> int | None:
        """Frames the sources will give, when every source knows (files, image folders)."""
        counts = [source.expected_frames() for source in self.sources]
        return None if any(count is None for count in counts) else sum(counts)

    @property
    def running(self) -> bool:
        """True until every stage after capture has ended (captures may still be blocked in a read)."""
        return any(t.is_alive() for t in self._stages.threads if t not in self._capture_threads)

    def finish(self) -> Summary:
        """Wait for every stage, close sources and sinks, and raise the first stage error if any."""
        try:
            self._join_stages()
        finally:
            self._summarise()
            self._restore_cv_threads()
            self._close_finished_sources()
            closing_error = self._close_sinks_after_writer()
        if self._error is not None:
            stage, exc = self._error
            if isinstance(exc, FerError):
                raise exc
            raise FerError(f"the {stage} stage failed: {type(exc).__name__}: {exc}") from exc
        if closing_error is not None:
            raise closing_error
        return self.summary

    def _summarise(self) -> None:
        summary = self.summary
        summary.seconds = time.perf_counter() - self._started
        summary.frames, summary.faces = self._writer.frames, self._writer.faces
        summary.batches, summary.batched_faces = self._infer.calls, self._infer.faces
        summary.detected_frames = self._detect.detected_frames
        summary.dropped = sum(self._mux.dropped)
        summary.corrupt = sum(source.corrupt for source in self.sources)
        summary.sources = [source.summary() for source in self.sources]
        for source_summary, capture, dropped in zip(summary.sources, self._captures, self._mux.dropped):
            source_summary.frames, source_summary.dropped = capture.frames_read, dropped
        summary.latency_ms = self.times.percentiles()

    def _join_stages(self) -> None:
        """Every stage, however long the run drains; after a hard stop, JOIN_GRACE seconds for all of them.
        Capture threads come last: once reading has stopped their frames are refused anyway, and one may
        be blocked in a read of a stalled stream for as long as FFmpeg's timeout."""
        captures = set(self._capture_threads)
        deadline = None
        for thread in [t for t in self._stages.threads if t not in captures] + self._capture_threads:
            while thread.is_alive():
                self._enforce_stop_timeout()
                if self._stops.now.is_set() or (thread in captures and self._stops.reading.is_set()):
                    deadline = deadline or time.perf_counter() + JOIN_GRACE
                    thread.join(max(0.0, deadline - time.perf_counter()))
                    break
                thread.join(POLL)

    def _close_finished_sources(self) -> None:
        # A capture thread still blocked in a device or network read (a daemon) keeps its source: releasing
        # a capture under a read in progress can crash OpenCV's backend. The process exit frees it.
        for source, thread in zip(self.sources, self._capture_threads):
            if thread.is_alive():
                log.debug("%s is still in a read: left open", source.name)
                continue
            self._close_source(source)

    def _close_sinks_after_writer(self) -> FerError | None:
        if self._write_thread is None:
            return self.close_sinks()
        self._write_thread.join(0.5)  # _join_stages waited for it already, unless the run was stopped hard
        if self._write_thread.is_alive():  # stuck in a write (a hung network drive): closing under it is not safe
            log.warning("the writer did not finish its last frame: outputs left as they are")
            return None
        return self.close_sinks()

    def run(self, poll: Callable[[], None] | None = None, poll_every: float = 0.005) -> Summary:
        """Run to the end of every source (or ``request_stop()``); ``poll`` runs on this thread every
        ``poll_every`` seconds meanwhile (a window's events, progress)."""
        self.start()
        try:
            while self.running and not self._stops.now.is_set():
                if poll is not None:
                    poll()
                self._enforce_stop_timeout()
                self._wait(poll_every if poll is not None else POLL)
        except BaseException:
            self.request_stop()  # Ctrl-C in an embedding application: drain what was read, then re-raise
            try:
                self.finish()
            except FerError:
                pass
            raise
        return self.finish()

    def __iter__(self) -> Iterator[FrameResult]:
        self._results = Channel(self.config.queue_size, self._stops)
        self.start()
        try:
            while True:
                item = self._results.get()
                if item is END:
                    break
                yield item
        finally:
            self._stops.now.set()  # the caller stopped iterating, or the run ended
            self.finish()

    def _wait(self, seconds: float) -> None:
        """Up to ``seconds``, ending early when the writer (the last stage) does: a run returns when its work
        is done, not at the next tick, which a fixed sleep would add to every run's time (up to 0.1 s)."""
        writer = self._write_thread
        if writer is not None and writer.is_alive():
            writer.join(seconds)
        else:  # another stage still draining after the writer ended (a failure): a tick, not a busy loop
            time.sleep(seconds)

    def _enforce_stop_timeout(self) -> None:
        if self._stop_deadline is not None and time.perf_counter() > self._stop_deadline and not self._stops.now.is_set():
            log.warning("the frames in flight were not done %g s after the stop: dropping them",
                        self.config.stop_timeout)
            self.abort()

    def _restore_cv_threads(self) -> None:
        if getattr(self, "_cv_threads", None) is not None:
            import cv2

            cv2.setNumThreads(self._cv_threads)
            self._cv_threads = None

    def close_sources(self) -> None:
        for source in self.sources:
            self._close_source(source)

    @staticmethod
    def _close_source(source: FrameSource) -> None:
        try:
            source.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            log.debug("closing %s failed", source.name, exc_info=True)

    def close_sinks(self) -> FerError | None:
        """Close every sink, even after one fails; returns the first failure (naming its output), if any."""
        first: FerError | None = None
        for sinks in self.sinks.values():
            for sink in sinks:
                try:
                    sink.close()
                except Exception as exc:  # noqa: BLE001 - the other outputs are closed all the same
                    error = exc if isinstance(exc, FerError) else FerError(
                        f"cannot finish {getattr(sink, 'label', sink)}: {exc}")
                    first = first or error
        return first
