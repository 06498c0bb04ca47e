"""The multithreaded pipeline: capture → detect + crop → batched inference → track + render → write.

Each stage is one thread; stages are joined by bounded queues, so memory stays flat however long the
run. Live sources keep only their newest frame (counting what they drop); files lose no frame (unless
``realtime``). All faces waiting for the classifier — of one frame, or of several frames and sources
when it is behind — go into one call of at most ``max_batch`` faces.

End of stream drains every stage. ``request_stop()`` (Ctrl-C, SIGTERM) stops the sources and drains the
rest, so files end complete at the last frame read; frames still in flight ``stop_timeout`` seconds later
are dropped (``abort()``), so a service stops well inside its grace period. A failing stage stops
everything and ``run()`` raises its error; no stage can block forever, because every queue operation
wakes up to check for a stop.

    pipeline = Pipeline([SourceSpec("video", "in.mp4")])
    for result in pipeline:          # FrameResult, in frame order per source
        print(result.to_dict())
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from fer_engine.errors import FerError, FieldError

from .recognizer import Recognizer, RecognizerConfig
from .render import Annotator
from .results import Detections, Face, FrameResult, faces_from_probs
from .sources import Frame, FrameSource, SourceSpec
from .stats import StageTimes, Summary
from .tracking import Tracker

log = logging.getLogger("fer_engine.runtime")

END = object()  # end of stream, passed down the stages
POLL = 0.1  # seconds a blocked queue operation waits before checking for a stop
SPARE_BACKLOG = 1  # frames waiting for the classifier that pause the spare detection workers
JOIN_GRACE = 1.5  # seconds all stages together get to exit after a hard stop


@dataclass(frozen=True)
class PipelineConfig:
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    detect_every: int = 1  # run the detector on every Nth frame of a source; reuse its boxes in between
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


class FrameMux:
    """Frames of all sources, taken round-robin by the detection stage.

    A live source has one slot: a new frame replaces a waiting one (counted as dropped). A file source
    has ``capacity`` slots and its reader waits when they are full, so no frame is lost.
    """

    def __init__(self, live: list[bool], capacity: int, stopped: threading.Event):
        self._buffers = [deque() for _ in live]
        self._capacity = [1 if is_live else capacity for is_live in live]
        self._live = live
        self._open = [True] * len(live)
        self._next = 0
        self._cond = threading.Condition()
        self._stopped = stopped
        self.dropped = [0] * len(live)

    def put(self, source: int, frame: Frame) -> bool:
        """False when the frame is refused: the run stopped, or reading stopped (``close_all``)."""
        with self._cond:
            if not self._open[source]:
                return False
            buffer = self._buffers[source]
            if self._live[source]:
                if buffer:
                    buffer.popleft()
                    self.dropped[source] += 1
            else:
                while len(buffer) >= self._capacity[source] and not self._stopped.is_set():
                    self._cond.wait(POLL)
                if self._stopped.is_set() or not self._open[source]:
                    return False
            buffer.append(frame)
            self._cond.notify_all()
            return True

    def close(self, source: int) -> None:
        with self._cond:
            self._open[source] = False
            self._cond.notify_all()

    def close_all(self) -> None:
        """No more frames from any source: the frames already here drain, even while a capture thread is
        still blocked in a read (a stream waiting for its server)."""
        with self._cond:
            self._open = [False] * len(self._open)
            self._cond.notify_all()

    def get(self):
        """The next frame, round-robin over sources; END when every source has ended and been drained."""
        with self._cond:
            while not self._stopped.is_set():
                count = len(self._buffers)
                for step in range(count):
                    source = (self._next + step) % count
                    if self._buffers[source]:
                        self._next = source + 1
                        frame = self._buffers[source].popleft()
                        self._cond.notify_all()
                        return frame
                if not any(self._open):
                    return END
                self._cond.wait(POLL)
            return END


class _Turns:
    """Numbered tickets for parallel detection workers: they take frames in order, work side by side, and
    hand the frames on in the order they took them (the tracker and the files need capture order)."""

    def __init__(self, workers: int):
        self._cond = threading.Condition()
        self._take = threading.Lock()
        self._issued = 0
        self._turn = 0
        self._running = workers

    def take(self, mux: FrameMux):
        with self._take:
            frame = mux.get()
            if frame is END:
                return END, -1
            self._issued += 1
            return frame, self._issued - 1

    def wait(self, ticket: int, stopped: threading.Event) -> bool:
        with self._cond:
            while self._turn != ticket:
                if stopped.is_set():
                    return False
                self._cond.wait(POLL)
            return True

    def done(self) -> None:
        with self._cond:
            self._turn += 1
            self._cond.notify_all()

    def finished(self) -> bool:
        """True for the last worker to end: it passes END on once every frame has gone."""
        with self._cond:
            self._running -= 1
            return self._running == 0


@dataclass
class _Work:
    frame: Frame
    detections: Detections
    crops: np.ndarray
    detected: float = 0.0
    probs: np.ndarray | None = None
    inferred: float = 0.0


class Pipeline:
    def __init__(self, sources: list[SourceSpec | FrameSource], config: PipelineConfig | None = None,
                 sinks: dict[int, list] | None = None, recognizer: Recognizer | None = None):
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
            spare = classifier_threads
            self._detectors = [self.recognizer.detector] + [
                self.recognizer.detector.clone() for _ in range(self.detector_threads - 1 + spare)]
        except BaseException:
            self.close_sources()
            raise
        self.sinks = sinks or {}
        self.times = StageTimes()
        self.summary = Summary(description=self.recognizer.describe())
        self._stopped = threading.Event()  # hard stop: every stage exits now
        self._sources_stopped = threading.Event()  # soft stop: no new frames, the rest drains
        self._error: tuple[str, BaseException] | None = None
        self._error_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._trackers: dict[int, Tracker] = {}
        self._last_detections: dict[int, Detections] = {}
        self._annotator = Annotator()
        self._fps = 0.0
        self._results: queue.Queue | None = None
        self._mux: FrameMux | None = None
        self._stop_deadline: float | None = None
        self._capture_threads: dict[int, threading.Thread] = {}
        self._frames_read = [0] * len(self.sources)
        self.display_slot: deque = deque(maxlen=1)  # newest annotated frame, for a window on the main thread
        self.on_result: Callable[[FrameResult], None] | None = None

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
        self._stopped.set()

    def _stop_reading(self) -> None:
        self._sources_stopped.set()
        if self._mux is not None:
            self._mux.close_all()
        for source in self.sources:
            source.interrupt()

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = (stage, exc)
        self.abort()

    def _stage(self, name: str, body: Callable[[], None]) -> threading.Thread:
        def guarded():
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - any failure ends the run with its message
                log.debug("stage %s failed", name, exc_info=True)
                self._fail(name, exc)

        thread = threading.Thread(target=guarded, name=f"fer-{name}", daemon=True)
        self._threads.append(thread)
        return thread

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stopped.is_set():
            try:
                q.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, timeout: float | None = None):
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._stopped.is_set():
            wait = POLL if deadline is None else min(POLL, deadline - time.perf_counter())
            if wait <= 0:
                raise queue.Empty
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                continue
        return END

    # ---- stages --------------------------------------------------------------------------------------
    def _capture(self, index: int, source: FrameSource, mux: FrameMux) -> None:
        realtime = self.config.realtime and not source.live
        start = time.perf_counter()
        count = 0
        try:
            while not self._sources_stopped.is_set():
                item = source.read()
                if item is None:
                    break
                image, stamp, name = item
                if realtime:
                    delay = start + stamp - time.perf_counter()
                    if delay > 0 and self._sources_stopped.wait(delay):
                        break
                if not mux.put(index, Frame(index, count, stamp, image, time.perf_counter(), name)):
                    break
                count += 1
                self._frames_read[index] = count
        finally:
            mux.close(index)

    def _detect(self, detector, mux: FrameMux, turns: "_Turns", out: queue.Queue, spare: bool = False) -> None:
        """A detection worker: workers detect frames side by side and hand them on in capture order. A spare
        worker takes a frame only while the classifier keeps up (its inbox nearly empty): then detection is
        what holds the run back, and the classifier's cores are free to help."""
        every = self.config.detect_every
        keep_images = self.config.render
        while True:
            while spare and out.qsize() >= SPARE_BACKLOG and not self._stopped.is_set():
                time.sleep(0.001)
            frame, ticket = turns.take(mux)
            if frame is END:
                break
            started = time.perf_counter()
            self.times.add("queue", started - frame.captured)
            reuse = frame.index % every != 0 and not self.sources[frame.source].independent
            detections = None if reuse else detector.detect(frame.image)
            computed = time.perf_counter() - started
            if not turns.wait(ticket, self._stopped):
                return
            try:
                # In turn: a frame that reuses boxes gets those of its source's last detected frame.
                resumed = time.perf_counter()
                if detections is None:
                    detections = self._last_detections.get(frame.source)
                    if detections is None:  # a live source dropped the frame that was to be detected
                        detections = detector.detect(frame.image)
                self._last_detections[frame.source] = detections
                crops = self.recognizer.crop(frame.image, detections)
                if not keep_images:
                    frame.image = None
                done = time.perf_counter()
                self.times.add("detect", computed + done - resumed)
                if not self._put(out, _Work(frame, detections, crops, done)):
                    return
            finally:
                turns.done()
        if turns.finished():
            self._put(out, END)

    def _infer(self, inbox: queue.Queue, out: queue.Queue) -> None:
        max_batch, wait = self.config.max_batch, self.config.max_wait_ms / 1000.0
        ended = False
        while not ended:
            first = self._get(inbox)
            if first is END:
                break
            batch, faces = [first], len(first.crops)
            deadline = time.perf_counter() + wait
            while faces < max_batch:
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.perf_counter()
                    if faces == 0 or remaining <= 0:
                        break
                    try:
                        item = self._get(inbox, remaining)
                    except queue.Empty:
                        break
                if item is END:
                    ended = True
                    break
                batch.append(item)
                faces += len(item.crops)
            started = time.perf_counter()
            if faces:
                crops = np.concatenate([work.crops for work in batch])
                probs = self.recognizer.classify(crops, max_batch)
                self.summary.batches += -(-faces // max_batch)
                self.summary.batched_faces += faces
                offset = 0
                for work in batch:
                    work.probs = probs[offset:offset + len(work.crops)]
                    offset += len(work.crops)
            done = time.perf_counter()
            self.times.add("infer", done - started)
            for work in batch:
                work.inferred = done
                if not self._put(out, work):
                    return
        self._put(out, END)

    def _post(self, inbox: queue.Queue, out: queue.Queue) -> None:
        labels = self.recognizer.spec.labels
        frames_seen: deque = deque(maxlen=30)
        while True:
            work = self._get(inbox)
            if work is END:
                break
            started = time.perf_counter()
            frame = work.frame
            probs = work.probs if work.probs is not None else np.zeros((0, len(labels)), np.float32)
            if self.sources[frame.source].independent:  # unrelated photos: no tracks, nothing carried over
                faces: list[Face] = faces_from_probs(work.detections, probs, labels)
            else:
                tracker = self._trackers.setdefault(frame.source, Tracker(self.config.smooth))
                track_ids, smoothed = tracker.update(work.detections.boxes, probs)
                faces = faces_from_probs(work.detections, smoothed, labels)
                for face, track in zip(faces, track_ids):
                    face.track = track
            result = FrameResult(frame.index, frame.time, frame.source, faces, frame.name)
            frames_seen.append(started)
            if len(frames_seen) > 1:
                self._fps = (len(frames_seen) - 1) / max(frames_seen[-1] - frames_seen[0], 1e-6)
            if self.config.render and frame.image is not None:
                latency = (started - frame.captured) * 1000.0
                overlay = f"{self._fps:.0f} FPS  {latency:.0f} ms  {len(faces)} faces"
                result.image = self._annotator.annotate(frame.image, result, overlay)
            self.times.add("track+render", time.perf_counter() - started)
            if not self._put(out, (result, frame.captured)):
                return
        self._put(out, END)

    def _write(self, inbox: queue.Queue) -> None:
        try:
            while True:
                item = self._get(inbox)
                if item is END:
                    break
                result, captured = item
                started = time.perf_counter()
                for sink in self.sinks.get(result.source, ()):
                    sink.write(result, result.image)
                if result.image is not None:
                    self.display_slot.append((result.source, result.image))
                self.summary.frames += 1
                self.summary.faces += len(result.faces)
                done = time.perf_counter()
                self.times.add("write", done - started)
                self.times.add("end-to-end", done - captured)
                if self.on_result is not None:
                    self.on_result(result)
                if self._results is not None:
                    if not self._put(self._results, result):
                        return
        finally:
            if self._results is not None:
                self._put(self._results, END)  # waits for the consumer, or gives up at a stop

    # ---- running -------------------------------------------------------------------------------------
    def start(self) -> None:
        import cv2

        # OpenCV's thread count is process-wide: set for the run, given back in finish(). One thread: the
        # detection workers already run side by side, and OpenCV's own pool would contend with them.
        self._cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        size = self.config.queue_size
        mux = FrameMux([s.live or self.config.realtime for s in self.sources], size, self._stopped)
        self._mux = mux
        if self._sources_stopped.is_set():  # stopped before it started (a signal while the model loaded)
            mux.close_all()
        to_infer, to_post, to_write = queue.Queue(size), queue.Queue(size), queue.Queue(size)
        for index, source in enumerate(self.sources):
            self._capture_threads[index] = self._stage(f"capture-{index}",
                                                       lambda i=index, s=source: self._capture(i, s, mux))
        turns = _Turns(len(self._detectors))
        for index, detector in enumerate(self._detectors):
            spare = index >= self.detector_threads
            self._stage(f"detect-{index}", lambda d=detector, s=spare: self._detect(d, mux, turns, to_infer, s))
        self._stage("infer", lambda: self._infer(to_infer, to_post))
        self._stage("post", lambda: self._post(to_post, to_write))
        self._write_thread = self._stage("write", lambda: self._write(to_write))
        self._started = time.perf_counter()
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads[-4:])

    def finish(self) -> Summary:
        """Wait for every stage, close sources and sinks, and raise the first stage error if any."""
        try:
            self._join_stages()
        finally:
            self.summary.seconds = time.perf_counter() - self._started
            self.summary.dropped = sum(self._mux.dropped)
            self.summary.corrupt = sum(source.corrupt for source in self.sources)
            self.summary.sources = self._source_summaries()
            self.summary.latency_ms = self.times.percentiles()
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

    def _join_stages(self) -> None:
        """Every stage, however long the run drains; after a hard stop, JOIN_GRACE seconds for all of them.
        Capture threads come last: once reading has stopped their frames are refused anyway, and one may
        be blocked in a read of a stalled stream for as long as FFmpeg's timeout."""
        captures = set(self._capture_threads.values())
        deadline = None
        for thread in [t for t in self._threads if t not in captures] + [t for t in self._threads if t in captures]:
            while thread.is_alive():
                self._enforce_stop_timeout()
                if self._stopped.is_set() or (thread in captures and self._sources_stopped.is_set()):
                    deadline = deadline or time.perf_counter() + JOIN_GRACE
                    thread.join(max(0.0, deadline - time.perf_counter()))
                    break
                thread.join(POLL)

    def _source_summaries(self) -> list:
        summaries = [source.summary() for source in self.sources]
        for summary, read, dropped in zip(summaries, self._frames_read, self._mux.dropped):
            summary.frames, summary.dropped = read, dropped
        return summaries

    def _close_finished_sources(self) -> None:
        # A capture thread still blocked in a device or network read (a daemon) keeps its source: releasing
        # a capture under a read in progress can crash OpenCV's backend. The process exit frees it.
        for index, source in enumerate(self.sources):
            thread = self._capture_threads.get(index)
            if thread is not None and thread.is_alive():
                log.debug("%s is still in a read: left open", source.name)
                continue
            self._close_source(source)

    def _close_sinks_after_writer(self) -> FerError | None:
        writer = getattr(self, "_write_thread", None)
        if writer is not None:
            writer.join(0.5)  # _join_stages waited for it already, unless the run was stopped hard
            if writer.is_alive():  # stuck in a write (a hung network drive): closing under it is not safe
                log.warning("the writer did not finish its last frame: outputs left as they are")
                return None
        return self.close_sinks()

    def run(self, poll: Callable[[], None] | None = None) -> Summary:
        """Run to the end of every source (or ``request_stop()``); ``poll`` runs on this thread meanwhile."""
        self.start()
        try:
            while self.running and not self._stopped.is_set():
                if poll is not None:
                    poll()
                self._enforce_stop_timeout()
                time.sleep(0.005 if poll is not None else POLL)
        except BaseException:
            self.request_stop()  # Ctrl-C in an embedding application: drain what was read, then re-raise
            try:
                self.finish()
            except FerError:
                pass
            raise
        return self.finish()

    def __iter__(self) -> Iterator[FrameResult]:
        self._results = queue.Queue(self.config.queue_size)
        self.start()
        try:
            while True:
                item = self._get(self._results)
                if item is END:
                    break
                yield item
        finally:
            self._stopped.set()  # the caller stopped iterating, or the run ended
            self.finish()

    def _enforce_stop_timeout(self) -> None:
        if self._stop_deadline is not None and time.perf_counter() > self._stop_deadline and not self._stopped.is_set():
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
