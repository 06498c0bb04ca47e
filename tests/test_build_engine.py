"""The torch-free engine builder's command line: arguments, refusals and the trtexec dry run.

Building an engine needs TensorRT and a GPU; these tests run everywhere and skip only the one that
expects TensorRT to be missing where it is installed.
"""

import importlib.util

import pytest

from fer_engine.export import build_engine

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_defaults():
    args = build_engine.build_parser().parse_args([])
    assert (args.onnx, args.out, args.precision, args.max_batch) == ("cnn", "engines", "fp16", 32)
    assert args.opt_batch is None and args.dla_core is None and not args.dry_run


@pytest.mark.parametrize("argv, message", [
    (["--max-batch", "0"], "argument --max-batch: 0 is out of range; it must be a whole number of 1 or more"),
    (["--max-batch", "4", "--opt-batch", "8"], "argument --opt-batch: 8 is above --max-batch (4)"),
    (["--opt-batch", "0"], "argument --opt-batch: 0 is out of range"),
    (["--workspace-mb", "0"], "argument --workspace-mb: 0 is out of range"),
    (["--dla-core", "-1"], "argument --dla-core: -1 is out of range; it must be a whole number of 0 or more"),
    (["--calibration-size", "0"], "argument --calibration-size: 0 is out of range"),
])
def test_numbers_are_refused_at_parse_time(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        build_engine.main(argv + ["--out", str(tmp_path / "e"), "--dry-run"])
    captured = capsys.readouterr()
    assert exit.value.code == 2 and f"error: {message}" in captured.err and captured.out == ""


@pytest.mark.parametrize("argv, message", [
    (["--onnx", "cnn-int9"], "Did you mean 'cnn-int8'?"),
    (["--onnx", "cnn-int8"], "is an int8 model: build engines from the fp32 ONNX file"),
])
def test_refusals(argv, message, tmp_path, capsys):
    assert build_engine.main(argv + ["--out", str(tmp_path / "e"), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_not_an_onnx_file(tmp_path, capsys):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    assert build_engine.main(["--onnx", str(plan), "--dry-run"]) == 2
    assert "is not an ONNX file" in capsys.readouterr().err


def test_dry_run_prints_trtexec_without_tensorrt(tmp_path, capsys):
    out = tmp_path / "engines"
    assert build_engine.main(["--out", str(out), "--max-batch", "16", "--dla-core", "1", "--dry-run"]) == 0
    captured = capsys.readouterr()
    command = captured.out.strip()
    assert command.startswith("trtexec --onnx=") and command.endswith("--useDLACore=1 --allowGPUFallback")
    assert "cnn.onnx" in command and "--maxShapes=pixel_values:16x1x48x48" in command and "--fp16" in command
    assert f"--saveEngine={out / 'cnn_b1-16_fp16_dla1_smXX.engine'}" in command
    assert "compute capability" in captured.err
    assert not out.exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: this checks the message where it is not")
def test_without_tensorrt_explains_and_prints_no_path(tmp_path, capsys):
    assert build_engine.main(["--out", str(tmp_path / "e")]) == 2
    captured = capsys.readouterr()
    assert "TensorRT is not installed" in captured.err and "trtexec --onnx=" in captured.err
    assert captured.out == ""  # scripts take the engine path from stdout: nothing when nothing was built


def test_builder_cli_is_torch_and_onnx_free():
    """It runs on the runtime-only install (a Jetson): neither torch nor the onnx package may be imported."""
    import subprocess
    import sys
    import textwrap

    from conftest import REPO, import_blocker

    script = import_blocker("torch", "transformers", "optimum", "onnx") + textwrap.dedent("""
        from fer_engine.export import build_engine
        sys.exit(build_engine.main(["--dry-run"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("trtexec --onnx=")


def test_output_and_data_paths_are_checked_first(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert build_engine.main(["--out", str(tmp_path / "file"), "--dry-run"]) == 2
    assert f"--out {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err
    assert build_engine.main(["--out", str(tmp_path / "e"), "--precision", "int8", "--calibration-data",
                              str(tmp_path / "none.csv"), "--dry-run"]) == 2
    assert "data not found" in capsys.readouterr().err


def test_onnx_file_without_fer_metadata_is_named(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert build_engine.main(["--onnx", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: " in err and "no 'fer' metadata" in err
