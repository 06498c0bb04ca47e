"""Progress of the long jobs besides fer-run (issue 17): the FER2013 parse, fer-eval, fer-export's steps and
verification, fer-bench's rows. A bar on a terminal; nothing of it in a log (stderr not a terminal)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_on_a_terminal, write_csv

from fer_engine.train.data import load_fer2013

PARSE_NOTE = "parsing fer2013.csv.gz, cached for next time"


def in_a_log(argv: list[str], cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command with stdout and stderr captured, as in a log or a CI job."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


# ---- the rule --------------------------------------------------------------------------------------------------
def test_a_bar_is_wanted_on_a_terminal_only_and_never_with_quiet(tmp_path):
    from fer_engine.progress import wanted

    class Terminal:
        def isatty(self):
            return True

    with open(tmp_path / "log", "w") as log:
        assert not wanted(stream=log)
    assert wanted(stream=Terminal()) and not wanted(quiet=True, stream=Terminal())
    closed = open(tmp_path / "closed", "w")
    closed.close()
    assert not wanted(stream=closed)


# ---- the FER2013 parse ---------------------------------------------------------------------------------------
def test_the_first_parse_says_it_is_cached_for_next_time_on_a_terminal(tmp_path):
    data = write_csv(tmp_path / "fer2013.csv.gz", n=70)
    load = python(f"from fer_engine.train.data import load_fer2013; "
                  f"d = load_fer2013({str(data)!r}); print('from cache:', d.from_cache, len(d.labels))")
    code, first = run_on_a_terminal(load)
    assert code == 0, first
    assert PARSE_NOTE in first and "from cache: False 70" in first
    assert "B/s" in first or "B [" in first  # a bar over the bytes read
    code, second = run_on_a_terminal(load)
    assert code == 0 and "from cache: True 70" in second
    assert "parsing" not in second  # the cache loads in a blink: nothing to show


def test_the_parse_prints_nothing_in_a_log(tmp_path, capsys):
    data = write_csv(tmp_path / "fer2013.csv.gz", n=70)
    loaded = load_fer2013(data)
    assert not loaded.from_cache and len(loaded.labels) == 70
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
    logged = in_a_log(python(f"from fer_engine.train.data import load_fer2013; load_fer2013({str(data)!r}, cache=False)"))
    assert logged.returncode == 0 and logged.stderr == "", logged.stderr


def test_a_bar_asked_for_counts_the_bytes_and_says_whether_it_caches(tmp_path, capsys, monkeypatch):
    from fer_engine.train import data as data_module

    bars = []

    def recorded(**options):
        bars.append(data_module.__dict__["_bar"](**options))
        return bars[-1]

    monkeypatch.setitem(data_module.__dict__, "_bar", data_module.bar)
    monkeypatch.setattr(data_module, "bar", recorded)
    data = write_csv(tmp_path / "fer2013.csv.gz", n=70)
    with_bar = load_fer2013(data, progress=True)
    assert PARSE_NOTE in capsys.readouterr().err
    assert bars[-1].total == data.stat().st_size and bars[-1].n == bars[-1].total  # every byte of the file, counted
    without = load_fer2013(data, cache=False, progress=True)
    err = capsys.readouterr().err
    assert "parsing fer2013.csv.gz" in err and "cached" not in err
    np.testing.assert_array_equal(with_bar.images, without.images)
    assert load_fer2013(data, progress=True).from_cache and len(bars) == 2  # no bar for a load from the cache


def test_an_image_folder_parse_counts_the_images(tmp_path, capsys):
    import cv2

    for i, (split, emotion) in enumerate([("train", "happy"), ("train", "sad"), ("test", "angry")]):
        folder = tmp_path / "faces" / split / emotion
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 48), 40 * i, np.uint8))
    loaded = load_fer2013(tmp_path / "faces", progress=True)
    assert len(loaded.labels) == 3
    err = capsys.readouterr().err
    assert "parsing faces, cached for next time" in err and "/3 [" in err and "image" in err


# ---- fer-eval, fer-export, fer-bench --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("eval") / "fer2013.csv", n=70)  # 14 PrivateTest faces


def test_fer_eval_shows_the_faces_evaluated_on_a_terminal_only(eval_csv, tmp_path):
    argv = command("fer_engine.train.cli_eval", "cnn-int8", "--data", str(eval_csv), "--batch-size", "4")
    code, terminal = run_on_a_terminal(argv)
    assert code == 0, terminal
    assert "evaluating" in terminal and "/14 [" in terminal  # the bar: faces done of the split's 14
    assert "parsing fer2013.csv, cached for next time" in terminal  # the first use parses
    logged = in_a_log(argv)
    assert logged.returncode == 0, logged.stderr
    assert "evaluating" not in logged.stderr and "parsing" not in logged.stderr and "/14 [" not in logged.stderr
    assert "accuracy" in logged.stdout.lower()


def test_fer_eval_reads_the_same_numbers_a_batch_at_a_time(eval_csv, tmp_path):
    """The bar's batches give what one call gives (the chunks are the classifier's own batches)."""
    from fer_engine.runtime.backends import load_classifier
    from fer_engine.train.cli_eval import predict_with_progress

    faces = load_fer2013(eval_csv).split("PrivateTest").images
    classifier = load_classifier("cnn-int8")
    np.testing.assert_allclose(predict_with_progress(classifier, faces, 4, "flip"),
                               classifier.predict_probs(faces, batch_size=4, tta=True), atol=1e-6)
    assert predict_with_progress(classifier, faces, 256, None).shape == (14, 7)


def test_fer_export_shows_each_step_and_the_faces_verified_per_file_on_a_terminal_only(tmp_path):
    argv = command("fer_engine.export.cli_export", "--model", "cnn", "--from-config", "tiny", "--verify-size", "24")
    code, terminal = run_on_a_terminal(argv + ["--out", str(tmp_path / "a")], timeout=180)
    assert code == 0, terminal
    assert "exporting onnx-fp32" in terminal
    assert "verifying: PyTorch" in terminal and "verifying cnn.onnx" in terminal and "/24 [" in terminal
    assert "face/s" in terminal or "s/face" in terminal
    logged = in_a_log(argv + ["--out", str(tmp_path / "b")], timeout=180)
    assert logged.returncode == 0, logged.stderr
    assert "verifying" not in logged.stderr and "exporting" not in logged.stderr and "/24 [" not in logged.stderr
    assert "onnx" in logged.stdout and "verified against PyTorch" in logged.stdout  # the lines a log keeps


def test_fer_bench_shows_one_bar_over_the_rows_on_a_terminal_only(tmp_path):
    argv = command("fer_engine.benchmarks.cli_bench", "--models", "cnn", "--tiny", "--backends",
                   "pytorch-fp32,onnx-fp32-cpu", "--batch-sizes", "1,2", "--duration", "0.02")
    code, terminal = run_on_a_terminal(argv, timeout=180)
    assert code == 0, terminal
    assert "fer-bench cnn" in terminal and "/4 [" in terminal and "row" in terminal  # 1 model × 2 backends × 2 batches
    logged = in_a_log(argv, timeout=180)
    assert logged.returncode == 0, logged.stderr
    assert "/4 [" not in logged.stderr and "row/s" not in logged.stderr and "s/row" not in logged.stderr
    assert "cnn onnx-fp32-cpu batch 2" in logged.stderr  # its own line per row stays


def test_fer_bench_counts_a_backend_skipped_as_a_whole_for_all_its_batches(tmp_path, monkeypatch):
    from fer_engine.benchmarks import cli_bench
    from fer_engine.progress import bar

    bars = []
    drawn = io.StringIO()  # a disabled bar counts nothing: draw this one where no one sees it
    monkeypatch.setattr(cli_bench, "bar", lambda **options: bars.append(bar(**options, enabled=True, stream=drawn))
                        or bars[-1])
    # onnx-fp32-cuda: rows where there is a GPU, one skipped row of batch 0 where there is none
    assert cli_bench.main(["--models", "cnn", "--tiny", "--backends", "onnx-fp32-cpu,onnx-fp32-cuda",
                           "--batch-sizes", "1,2,3", "--duration", "0.02", "--json", str(tmp_path / "b.json")]) == 0
    assert len(bars) == 1 and bars[0].total == 6 and bars[0].n == 6


# ---- the bench PNG's accuracy axis ------------------------------------------------------------------------------
def bench_row(backend: str, accuracy: float, p50_ms: float):
    from fer_engine.benchmarks.cli_bench import Row

    return Row("cnn", backend, "fp32", 1, p50_ms=p50_ms, faces_per_s=1000 / p50_ms,
               accuracy={"PrivateTest": {"accuracy": accuracy, "macro_f1": accuracy}})


def test_the_accuracy_axis_does_not_blow_up_a_spread_of_hundredths_of_a_point():
    import matplotlib.pyplot as plt

    from fer_engine.benchmarks.cli_bench import bench_figure

    figure = bench_figure([bench_row("onnx-fp32-cpu", 0.7015, 0.4), bench_row("onnx-int8-cpu", 0.7012, 0.2)])
    try:
        bottom, top = figure.axes[0].get_ylim()
    finally:
        plt.close(figure)
    assert top - bottom >= 10  # 0.03 points is 0.3% of the axis, not all of it
    assert bottom <= 70.12 and top >= 70.15 and bottom % 5 == 0  # both shown, from a round value
    assert 0 <= bottom and top <= 100


@pytest.mark.parametrize("accuracies, expected", [
    ([70.12, 70.15], (65, 75)), ([99.5], (90, 100)), ([3.0, 4.0], (0, 10)), ([10.0, 95.0], (5, 100)),
])
def test_accuracy_limits(accuracies, expected):
    from fer_engine.benchmarks.cli_bench import accuracy_limits

    assert accuracy_limits(accuracies) == expected


def test_the_png_is_written_with_the_floor(tmp_path):
    from fer_engine.benchmarks.cli_bench import write_png

    write_png([bench_row("onnx-fp32-cpu", 0.7015, 0.4), bench_row("onnx-int8-cpu", 0.7012, 0.2)], tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
