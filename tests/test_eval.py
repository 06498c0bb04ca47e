"""fer-eval on bad input: numbers refused at parse time, outputs checked before the work, skipped rows counted,
a failed write named after the others are written, errors that name the file and quote it briefly."""

from __future__ import annotations

import json

import onnx
import pytest

from conftest import write_csv
from fer_engine.train import cli_eval
from fer_engine.train.checkpoint import save_checkpoint
from fer_engine.train.models import create_model

GOOD_PIXELS = " ".join(["7"] * 2304)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "cnn", create_model("cnn", from_config="tiny"))


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "fer.csv", n=70)  # 14 PrivateTest faces


def refused_at_parse_time(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit:
        cli_eval.main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and "Traceback" not in err  # argparse: the usage, then one error line
    assert err.count("error:") == 1
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("option, value, expected", [
    ("--limit", "-1", "argument --limit: -1 is out of range; it must be a whole number of 1 or more"),
    ("--limit", "0", "argument --limit: 0 is out of range"),
    ("--limit", "ten", "argument --limit: 'ten' is not a number"),
    ("--batch-size", "0", "argument --batch-size: 0 is out of range"),
    ("--split", "Test", "argument --split: invalid choice: 'Test'"),
])
def test_numbers_and_names_are_refused_at_parse_time(option, value, expected, tmp_path, data_csv, capsys):
    line = refused_at_parse_time([str(tmp_path / "no-model"), "--data", str(data_csv), option, value], capsys)
    assert line.startswith("fer-eval: error: ") and expected in line


def test_limit_evaluates_exactly_that_many_faces(tiny_checkpoint, data_csv, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert cli_eval.main([str(tiny_checkpoint), "--data", str(data_csv), "--limit", "9", "--batch-size", "4",
                          "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["count"] == 9 and report["limit"] == 9
    assert "(9 faces)" in capsys.readouterr().out


def test_skip_bad_rows_reports_the_count(tiny_checkpoint, tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", n=70, rows=[["9", GOOD_PIXELS, "PrivateTest"], ["1", "1 2 3", "PrivateTest"]])
    out = tmp_path / "eval.json"
    assert cli_eval.main([str(tiny_checkpoint), "--data", str(bad), "--skip-bad-rows", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"skipped 2 bad row(s) of {bad} (first: {bad}, line 72: unknown emotion label '9'" in printed
    assert json.loads(out.read_text())["skipped_rows"] == 2


@pytest.mark.parametrize("make_bad_path, message", [
    (lambda tmp: tmp, "is a folder: name a file inside it"),
    (lambda tmp: (tmp / "file.txt").write_text("") or tmp / "file.txt" / "eval.json", "is a file, so no folder"),
    (lambda tmp: "/proc/no-such-folder/eval.json", "cannot write in /proc"),
])
def test_output_paths_are_checked_before_anything_is_loaded(make_bad_path, message, tmp_path, data_csv, capsys):
    bad = make_bad_path(tmp_path)
    # The model does not exist either: the output is what the first error is about, before any loading.
    assert cli_eval.main([str(tmp_path / "no-model"), "--data", str(data_csv), "--json", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-eval: error: --json {bad}") and message in err and err.count("\n") == 1


def test_json_and_png_on_one_path_are_refused(tmp_path, data_csv, capsys):
    assert cli_eval.main([str(tmp_path / "m"), "--data", str(data_csv), "--json", str(tmp_path / "a.png")]) == 2
    assert "--json and --png (beside --json) both name the file" in capsys.readouterr().err


def test_missing_output_folders_are_created(tiny_checkpoint, data_csv, tmp_path):
    out = tmp_path / "new" / "deeper" / "eval.json"
    assert cli_eval.main([str(tiny_checkpoint), "--data", str(data_csv), "--json", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval.json", "eval.png"]  # no temporary files left


def test_a_failed_write_is_named_after_the_others_are_written(tiny_checkpoint, data_csv, tmp_path, capsys,
                                                              monkeypatch):
    from fer_engine.train import plots

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "plot_confusion", full_disk)
    out = tmp_path / "eval.json"
    assert cli_eval.main([str(tiny_checkpoint), "--data", str(data_csv), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"fer-eval: error: could not write --png (beside --json) {out.with_suffix('.png')} "
                   "(No space left on device); the other 1 output(s) were written\n")
    assert json.loads(out.read_text())["count"] == 14


def test_onnx_file_without_fer_metadata_is_named(tmp_path, data_csv, capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert cli_eval.main([str(path), "--data", str(data_csv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-eval: error: {path}: ") and "no 'fer' metadata" in err


def test_header_less_csv_is_one_short_line(tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "no-header.csv"
    data.write_text("".join(f"{i % 7},{GOOD_PIXELS},Training\n" for i in range(5)))
    assert cli_eval.main([str(tiny_checkpoint), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 300, err
    assert f"{data} has no header line" in err and "emotion,pixels,Usage" in err
