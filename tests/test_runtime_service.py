"""fer-run as a service: SIGTERM, SIGHUP and Ctrl-C stop it with every output valid; streams that drop
reconnect, and a stream gone for good ends the run after --reconnect-timeout.

The stream tests serve a generated video with ffmpeg on 127.0.0.1 (HTTP, NUT container, MJPEG frames:
OpenCV's FFmpeg backend opens it at once); they skip when ffmpeg is not installed.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO
from fer_engine.benchmarks.face_video import drawn_faces, make_face_video
from fer_engine.runtime import DetectorConfig, Pipeline, PipelineConfig, RecognizerConfig
from fer_engine.runtime.sources import FrameSource

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
# This project's CI machines also train models: timings here carry generous margins for a loaded CPU.
SLACK = 45.0


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """300 frames (10 s at 30 frames/s) with three drawn faces each."""
    path = tmp_path_factory.mktemp("service") / "long.mp4"
    make_face_video(path, drawn_faces(8), np.arange(8) % 7, frames=300, faces_per_frame=3)
    return path


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    """A small clip to stream: little work for ffmpeg and for fer-run."""
    path = tmp_path_factory.mktemp("stream") / "small.mp4"
    make_face_video(path, drawn_faces(4), np.arange(4) % 7, frames=60, size=(160, 120), faces_per_frame=1,
                    face_side=(80, 90))
    return path


class FerRun:
    """fer-run in a subprocess, its stderr lines timed as they come."""

    def __init__(self, args: list[str]):
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "fer_engine.runtime.cli_run", "--no-display", *args],
                                        cwd=REPO, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for_lines(self, path: Path, count: int, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if path.exists() and path.read_text().count("\n") >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"{path} did not reach {count} lines: {self.stderr}")

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(5)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def time_of(self, text: str) -> float:
        return next(at for at, line in self.lines if text in line)


def read_jsonl(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the JSON Lines file ends inside a line"
    return [json.loads(line) for line in text.splitlines()]


def check_outputs_match(folder: Path) -> tuple[list[dict], dict]:
    """Every output valid and telling the same story: as many video frames as JSON lines, a CSV row per face."""
    records = read_jsonl(folder / "out.jsonl")
    assert records and [r["frame"] for r in records] == list(range(len(records)))
    capture = cv2.VideoCapture(str(folder / "out.mp4"))
    assert capture.isOpened(), "the mp4 does not open (not finalised?)"
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    assert decoded == int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(records)
    with open(folder / "out.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["frame", "time", "source"] and all(len(row) == len(rows[0]) for row in rows)
    assert len(rows) - 1 == sum(len(r["faces"]) for r in records)
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["frames"] == len(records)
    return records, stats


# ---- signals -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signals, code", [((signal.SIGTERM,), 143), ((signal.SIGHUP, signal.SIGTERM), 129)],
                         ids=["sigterm", "sighup-then-sigterm"])
def test_a_stop_signal_closes_every_output_valid(long_video, tmp_path, signals, code):
    """docker stop sends SIGTERM, a closing terminal or service manager SIGHUP: the same path as the first
    Ctrl-C. A second signal stops at once, and still every output is closed valid."""
    run = FerRun(["--video", str(long_video), "--detector", "haar", "--stop-timeout", "2",
                  "--output", str(tmp_path / "out.mp4"), "--json", str(tmp_path / "out.jsonl"),
                  "--csv", str(tmp_path / "out.csv"), "--stats", str(tmp_path / "stats.json")])
    run.wait_for_lines(tmp_path / "out.jsonl", 3)
    sent = time.monotonic()
    for number in signals:
        run.process.send_signal(number)
        time.sleep(0.02)  # the second signal must come while the first one's drain runs: on a fast host it ends within 0.2 s
    assert run.wait(timeout=120) == code, run.stderr
    name = signal.Signals(signals[0]).name
    assert "Traceback" not in run.stderr
    assert f"{name}: stopping: finishing the frames already read" in run.stderr
    # The outputs are closed when the summary is printed: within --stop-timeout and the stages' grace.
    assert run.time_of("stopped by") - sent < 2 + SLACK, run.stderr
    records, stats = check_outputs_match(tmp_path)
    assert len(records) < 300 and stats["stopped_by"] == name


def test_a_stop_while_the_model_loads_ends_at_once(monkeypatch, tmp_path, long_video, caplog):
    """Before the pipeline exists nothing is open for writing: the setup is cut short (a container's PID 1
    would otherwise ignore SIGTERM until the model has loaded)."""
    import os

    import fer_engine.runtime.cli_run as cli_run

    def loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        raise AssertionError("the signal did not end the setup")

    monkeypatch.setattr(cli_run, "Pipeline", loading)
    handler = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert cli_run.main(["--video", str(long_video), "--json", str(tmp_path / "out.jsonl"), "--no-display"]) == 143
    assert time.monotonic() - started < 10
    assert "SIGTERM: stopped before the run started; nothing was written" in caplog.text
    assert not (tmp_path / "out.jsonl").exists() and signal.getsignal(signal.SIGTERM) is handler


def test_a_signal_while_the_summary_is_written_does_not_kill_the_run(monkeypatch, tmp_path, caplog):
    """A signal after every source ended (a service manager's SIGTERM as the video ends) neither kills the
    process before --stats is written nor turns a run that ended by itself into a stopped one."""
    import os

    import fer_engine.runtime.cli_run as cli_run

    write_stats = cli_run.write_stats

    def signalled_first(path, summary):
        os.kill(os.getpid(), signal.SIGTERM)
        write_stats(path, summary)

    monkeypatch.setattr(cli_run, "write_stats", signalled_first)
    handler = signal.getsignal(signal.SIGTERM)
    video = tmp_path / "short.mp4"
    make_face_video(video, drawn_faces(2), np.arange(2), frames=20, faces_per_frame=1)
    args = ["--video", str(video), "--detector", "haar", "--no-display",
            "--json", str(tmp_path / "out.jsonl"), "--stats", str(tmp_path / "stats.json")]
    assert cli_run.main(args) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == len(read_jsonl(tmp_path / "out.jsonl")) == 20 and "stopped_by" not in stats
    assert "SIGTERM: the run has ended; writing its summary" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_second_ctrl_c_still_closes_the_outputs(long_video, tmp_path):
    run = FerRun(["--video", str(long_video), "--detector", "haar", "--stop-timeout", "60",
                  "--output", str(tmp_path / "out.mp4"), "--json", str(tmp_path / "out.jsonl"),
                  "--csv", str(tmp_path / "out.csv"), "--stats", str(tmp_path / "stats.json")])
    run.wait_for_lines(tmp_path / "out.jsonl", 2)
    run.process.send_signal(signal.SIGINT)
    time.sleep(0.05)  # apart, so Python sees two signals; on an idle machine the first stop can end sooner
    second_sent = run.process.poll() is None
    if second_sent:
        run.process.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) == 130, run.stderr
    assert "Traceback" not in run.stderr
    if second_sent and "SIGINT: stopping at once" not in run.stderr:
        # the second signal landed after the first stop had closed everything: nothing was left to cut short
        assert "stopping" in run.stderr.lower()
    check_outputs_match(tmp_path)


class HangingSource(FrameSource):
    """A source whose fourth read does not return (a stream that stalls without closing); not live, so that
    no frame before it is dropped."""

    name = "hanging source"

    def __init__(self):
        self.index, self.released, self.closed = 0, threading.Event(), False

    def read(self):
        if self.index == 3:
            self.released.wait(120)
            return None
        self.index += 1
        return np.full((120, 160, 3), 100, np.uint8), self.index / 30, None

    def close(self):
        self.closed = True


def test_a_stop_does_not_wait_for_a_read_that_hangs():
    source = HangingSource()
    config = PipelineConfig(recognizer=RecognizerConfig(detector=DetectorConfig("haar")), render=False,
                            stop_timeout=1.0)
    pipeline = Pipeline([source], config)
    stopped = []

    def stop_after_three(result):
        if result.frame == 2:
            stopped.append(time.monotonic())
            pipeline.request_stop()

    pipeline.on_result = stop_after_three
    try:
        summary = pipeline.run()
        assert summary.frames == 3 and stopped
        assert time.monotonic() - stopped[0] < 1.0 + 1.5 + SLACK / 3
        assert not source.closed  # released under a read in progress, an OpenCV capture can crash
    finally:
        source.released.set()


# ---- streams -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc (a test connection would be the one
    client that ffmpeg -listen 1 serves)."""
    wanted = f"0100007F:{port:04X}"
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True  # no /proc: assume ffmpeg is up after the wait in StreamServer.start
    return any(row.split()[1] == wanted and row.split()[3] == "0A" for row in rows)


class StreamServer:
    """ffmpeg serving a video, looped at its frame rate, to one HTTP client on 127.0.0.1."""

    def __init__(self, video: Path, port: int):
        self.video, self.port = video, port
        self.url = f"http://127.0.0.1:{port}/live.nut"
        self.process: subprocess.Popen | None = None
        self.log = video.with_name(f"ffmpeg-{port}.log")

    def start(self, seconds: float | None = None) -> "StreamServer":
        limit = ["-t", str(seconds)] if seconds else []
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [FFMPEG, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.video), *limit,
                 "-c:v", "mjpeg", "-q:v", "8", "-f", "nut", "-listen", "1", self.url],
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while not listening(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise AssertionError(f"ffmpeg does not listen on {self.url}: {self.log.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def stream_servers():
    servers: list[StreamServer] = []
    yield servers
    for server in servers:
        server.stop()


def stream_args(url: str, folder: Path, reconnect_timeout: float) -> list[str]:
    return ["--url", url, "--reconnect-timeout", str(reconnect_timeout), "--detector", "haar", "--no-render",
            "--json", str(folder / "out.jsonl"), "--stats", str(folder / "stats.json")]


@needs_ffmpeg
def test_a_stream_gone_for_good_ends_the_run_after_the_reconnect_timeout(small_video, tmp_path, stream_servers):
    server = StreamServer(small_video, free_port()).start()
    stream_servers.append(server)
    run = FerRun(stream_args(server.url, tmp_path, 3))
    run.wait_for_lines(tmp_path / "out.jsonl", 5)
    server.stop()
    stopped = time.monotonic()
    assert run.wait(timeout=3 + SLACK + 60) == 0, run.stderr
    assert run.time_of("given up") - stopped < 3 + SLACK, run.stderr
    assert "no frame for 3 s, giving up on it (--reconnect-timeout)" in run.stderr
    assert "Traceback" not in run.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    source = stats["sources"][0]
    assert source["gave_up"] and source["reconnects"] == 0 and source["seconds_without_frames"] >= 3
    assert stats["frames"] == len(read_jsonl(tmp_path / "out.jsonl")) >= 5 and "stopped_by" not in stats


@needs_ffmpeg
def test_a_stream_that_comes_back_is_reconnected_and_the_outage_reported(small_video, tmp_path, stream_servers):
    port = free_port()
    first = StreamServer(small_video, port).start()
    stream_servers.append(first)
    run = FerRun(stream_args(first.url, tmp_path, 20))
    run.wait_for_lines(tmp_path / "out.jsonl", 5)
    first.stop()
    time.sleep(2.0)  # the stream is down: fer-run retries with back-off
    before = len(read_jsonl(tmp_path / "out.jsonl"))
    # The second server sends 8 s and ends for good; 20 s later fer-run gives the stream up and the run ends.
    second = StreamServer(small_video, port).start(seconds=8)
    stream_servers.append(second)
    assert run.wait(timeout=8 + 20 + SLACK + 60) == 0, run.stderr
    assert "reconnected after" in run.stderr and "Traceback" not in run.stderr
    records = read_jsonl(tmp_path / "out.jsonl")
    assert len(records) > before + 5  # it kept writing after the reconnect
    frames = [r["frame"] for r in records]
    assert all(a < b for a, b in zip(frames, frames[1:]))  # in order; a live source drops frames when behind
    times = [r["time"] for r in records]
    assert max(b - a for a, b in zip(times, times[1:])) >= 1.5  # the outage shows in the stream's clock
    stats = json.loads((tmp_path / "stats.json").read_text())
    source = stats["sources"][0]
    assert source["reconnects"] == 1 and source["gave_up"]
    assert source["seconds_without_frames"] >= 2.0 + 20 and source["frames_lost"] > 0
    summary = [line for _, line in run.lines if line.startswith("source 0 (stream")]
    assert summary and "1 reconnect," in summary[0] and "frames lost" in summary[0], run.stderr


@needs_ffmpeg
def test_a_stop_signal_ends_a_run_waiting_for_its_stream(small_video, tmp_path, stream_servers):
    """--reconnect-timeout 0 retries for ever; SIGTERM still ends the run at once, in the middle of the wait."""
    server = StreamServer(small_video, free_port()).start()
    stream_servers.append(server)
    run = FerRun(stream_args(server.url, tmp_path, 0))
    run.wait_for_lines(tmp_path / "out.jsonl", 3)
    server.stop()
    deadline = time.monotonic() + SLACK
    while not any("dropped; reconnecting" in line for _, line in run.lines):
        assert time.monotonic() < deadline, run.stderr
        time.sleep(0.1)
    assert "giving up" not in run.stderr  # 0: no limit
    time.sleep(1.0)  # well into the wait
    run.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert run.wait(timeout=SLACK + 60) == 143, run.stderr
    assert run.time_of("stopped by SIGTERM") - sent < 4 + SLACK
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["stopped_by"] == "SIGTERM" and not stats["sources"][0]["gave_up"]
    assert stats["sources"][0]["seconds_without_frames"] >= 0.9
