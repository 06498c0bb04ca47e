from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fer_engine.spec import LABELS, SPLITS

REPO = Path(__file__).resolve().parents[1]
FER2013 = Path(os.environ.get("FER2013_CSV", REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"))
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "cnn"
YUNET = REPO / "runtime" / "models" / "yunet" / "yunet_s_640_640.onnx"  # shipped in the package

needs_fer2013 = pytest.mark.skipif(not FER2013.is_file(), reason=f"FER2013 not found at {FER2013} (set FER2013_CSV)")
needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason=f"YuNet model not found at {YUNET}")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test parses into its own cache folder, so no test sees another's cache."""
    monkeypatch.setenv("FER_ENGINE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if YUNET.is_file():
        monkeypatch.setenv("FER_ENGINE_YUNET", str(YUNET))


def make_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces whose class shows in their brightness pattern, so even a tiny model can learn something."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(LABELS)
    splits = np.array([0] * (n - 2 * (n // 5)) + [1] * (n // 5) + [2] * (n // 5))
    base = rng.integers(0, 60, size=(n, 48, 48))
    for i, label in enumerate(labels):
        base[i, :, label * 6:label * 6 + 6] += 180
    return base.clip(0, 255).astype(np.uint8), labels, splits


def write_csv(path: Path, n: int = 70, rows: list[list[str]] | None = None, header=("emotion", "pixels", "Usage"),
              seed: int = 0) -> Path:
    images, labels, splits = make_faces(n, seed)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for image, label, split in zip(images, labels, splits):
            writer.writerow([label, " ".join(map(str, image.ravel())), SPLITS[split]])
        for row in rows or []:
            writer.writerow(row)
    return path


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "fer2013.csv", n=70)


def import_blocker(*blocked: str) -> str:
    """Python source that makes importing any of ``blocked`` (top-level names) fail: run it first in a
    subprocess to show that code works without them."""
    return textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"{{name}} is blocked: this must work without it", name=name)
        sys.meta_path.insert(0, Block())
    """)


# ---- media for the runtime tests: generated videos with known faces ----------------------------------
@pytest.fixture(scope="session")
def publictest():
    """FER2013's PublicTest split (skips without the data set)."""
    if not FER2013.is_file():
        pytest.skip(f"FER2013 not found at {FER2013}")
    from fer_engine.train.data import load_fer2013

    return load_fer2013(FER2013, cache=False).split("PublicTest")


@pytest.fixture(scope="session")
def fer_video(publictest, tmp_path_factory):
    """A 40-frame video of PublicTest faces pasted at known places, and what was pasted per frame."""
    from fer_engine.benchmarks.face_video import make_face_video

    folder = tmp_path_factory.mktemp("video")
    truth = make_face_video(folder / "faces.mp4", publictest.images, publictest.labels, frames=40, hold=10, seed=1)
    return folder / "faces.mp4", truth


@pytest.fixture(scope="session")
def drawn_video(tmp_path_factory):
    """A 12-frame video of drawn faces, for runs that need no FER2013."""
    from fer_engine.benchmarks.face_video import drawn_faces, make_face_video

    folder = tmp_path_factory.mktemp("drawn")
    faces = drawn_faces(8)
    make_face_video(folder / "drawn.mp4", faces, np.arange(8) % 7, frames=12, faces_per_frame=3)
    return folder / "drawn.mp4"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def match(truth_faces, detected) -> list[tuple[dict, object]]:
    """Pairs (detection, truth) where the detection's centre lies in a pasted face."""
    pairs = []
    for face in detected:
        x, y, w, h = face["box"]
        cx, cy = x + w / 2, y + h / 2
        for t in truth_faces:
            tx, ty, side, _ = t.box
            if tx <= cx <= tx + side and ty <= cy <= ty + side:
                pairs.append((face, t))
                break
    return pairs


def run_on_a_terminal(argv: list[str], cwd: Path | None = None, timeout: float = 120) -> tuple[int, str]:
    """Exit code and what a command prints on a terminal of 120 columns (a pseudo-terminal for stdout and
    stderr)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, cwd=cwd)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    code = process.wait(timeout=timeout)
    os.close(master)
    return code, out.decode(errors="replace")
