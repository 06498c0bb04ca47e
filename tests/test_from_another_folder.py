"""The commands run from any folder, as a user runs them (issue 17, item 4): their defaults (the shipped model
and detector, the shipped checkpoint) are found from the package, never from the working folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEFAULT_CHECKPOINT, REPO, needs_yunet, read_jsonl, write_csv

needs_checkpoint = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_dir(), reason=f"no shipped checkpoint at {DEFAULT_CHECKPOINT}")


def command(script: str, module: str) -> list[str]:
    """The console script installed beside this Python (what a user types), else ``python -m``."""
    installed = Path(sys.executable).parent / script
    return [str(installed)] if installed.is_file() else [sys.executable, "-m", module]


def run_in(folder: Path, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FER_ENGINE_YUNET"}  # the detector must come from the package
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """An empty working folder outside the repository."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert REPO not in folder.resolve().parents and not (folder / "checkpoints").exists()
    return folder


@needs_yunet
def test_fer_run_finds_the_shipped_model_and_detector(elsewhere):
    from fer_engine.benchmarks.face_video import drawn_faces, make_face_video

    make_face_video(elsewhere / "short.mp4", drawn_faces(8), np.arange(8) % 7, frames=12, faces_per_frame=3)
    done = run_in(elsewhere, command("fer-run", "fer_engine.runtime.cli_run")
                  + ["--video", "short.mp4", "--json", "out.jsonl", "--no-render"])
    assert done.returncode == 0, done.stderr
    assert "cnn-int8.onnx" in done.stderr and "detector yunet" in done.stderr, done.stderr
    results = read_jsonl(elsewhere / "out.jsonl")
    assert [r["frame"] for r in results] == list(range(12))
    assert sum(len(r["faces"]) for r in results) > 0  # the detector found the drawn faces


@needs_checkpoint
def test_fer_export_finds_the_shipped_checkpoint(elsewhere):
    out = elsewhere / "exp"
    done = run_in(elsewhere, command("fer-export", "fer_engine.export.cli_export")
                  + ["--model", "cnn", "--out", str(out), "--no-verify"])
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "export_report.json").read_text())
    assert report["weights"] == {"trained": True, "source": f"checkpoint {DEFAULT_CHECKPOINT}"}
    assert (out / "cnn.onnx").stat().st_size > 0
    assert not (elsewhere / "exports").exists()  # --out was honoured, nothing else written here


@needs_checkpoint
def test_fer_eval_defaults_to_the_shipped_checkpoint(elsewhere):
    write_csv(elsewhere / "fer2013.csv", n=70)  # 14 PrivateTest faces
    done = run_in(elsewhere, command("fer-eval", "fer_engine.train.cli_eval")
                  + ["--data", "fer2013.csv", "--json", "eval.json"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cnn checkpoint {DEFAULT_CHECKPOINT}"), done.stdout
    report = json.loads((elsewhere / "eval.json").read_text())
    assert report["model"] == str(DEFAULT_CHECKPOINT) and sum(map(sum, report["confusion"])) == 14
    assert (elsewhere / "eval.png").is_file()


def test_fer_eval_reads_a_shipped_model_by_name(elsewhere):
    write_csv(elsewhere / "fer2013.csv", n=70)
    done = run_in(elsewhere, command("fer-eval", "fer_engine.train.cli_eval")
                  + ["cnn-int8", "--data", "fer2013.csv", "--json", "eval.json"])
    assert done.returncode == 0, done.stderr
    report = json.loads((elsewhere / "eval.json").read_text())
    assert report["model"] == str(REPO / "runtime" / "models" / "cnn-int8.onnx")
    missing = run_in(elsewhere, command("fer-eval", "fer_engine.train.cli_eval")
                     + ["cnn-int9", "--data", "fer2013.csv"])
    assert missing.returncode == 2 and "model not found: cnn-int9" in missing.stderr
