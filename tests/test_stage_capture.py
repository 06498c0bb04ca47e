"""runtime/stages/capture.py and sources.py: streams that fail to open, corrupt frames, reconnection."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np

from conftest import REPO, read_jsonl
from fer_engine.runtime.cli_run import main as fer_run


def test_a_stream_that_cannot_be_opened_is_one_line_without_ffmpegs_own(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    result = subprocess.run([sys.executable, "-m", "fer_engine.runtime.cli_run", "--url", "rtsp://127.0.0.1:9/stream",
                             "--json", str(tmp_path / "out.jsonl"), "--no-render", "--no-display", "--detector", "haar"],
                            capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["fer-run: error: cannot open stream rtsp://127.0.0.1:9/stream"], result.stderr


def test_corrupt_frames_mid_stream_are_skipped_not_fatal(drawn_video, tmp_path):
    capture = cv2.VideoCapture(str(drawn_video))
    frames = [capture.read()[1] for _ in range(12)]
    avi = tmp_path / "corrupt.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(36):
        writer.write(frames[i % 12])
    writer.release()
    data = bytearray(avi.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20_000] = bytes(20_000)  # wipe about one frame in the middle
    avi.write_bytes(bytes(data))
    out = tmp_path / "out.jsonl"
    assert fer_run(["--video", str(avi), "--json", str(out), "--detector", "haar", "--no-render", "-q"]) == 0
    records = read_jsonl(out)
    assert 30 <= len(records) <= 36 and [r["frame"] for r in records] == list(range(len(records)))


def test_streams_reconnect_with_back_off(monkeypatch):
    import fer_engine.runtime.sources as sources

    opened = []

    class FlakyCapture:
        """Gives 3 frames per connection; the second connection attempt fails."""

        def __init__(self, target, api=None, params=None):
            opened.append(target)
            self.frames = 3 if len(opened) != 2 else 0
            self.ok = len(opened) != 2

        def isOpened(self):
            return self.ok

        def read(self):
            if self.frames == 0:
                return False, None
            self.frames -= 1
            return True, np.zeros((8, 8, 3), np.uint8)

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", FlakyCapture)
    stream = sources.StreamSource("rtsp://camera/stream", first_backoff=0.01)
    got = [stream.read() for _ in range(6)]
    assert all(item is not None for item in got)
    assert len(opened) == 3 and stream.reconnects == 1
    summary = stream.summary()
    assert summary.reconnects == 1 and 0 < summary.seconds_without_frames < 5 and not summary.gave_up
