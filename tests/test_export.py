import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fer_engine.export import cli_export
from fer_engine.export.quantize import AUTO_MODE
from fer_engine.export.tensorrt import EngineRequest, trtexec_command
from fer_engine.spec import LABELS
from fer_engine.train.checkpoint import save_checkpoint
from fer_engine.train.models import create_model

from conftest import write_csv

MODELS = ["cnn", "vit", "convnext", "convnextv2"]


@pytest.fixture(scope="module")
def calibration_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("calib") / "fer.csv", n=140)


@pytest.mark.parametrize("name", MODELS)
def test_export_tiny_model_to_every_precision(name, tmp_path, calibration_csv, capsys):
    out = tmp_path / "out"
    code = cli_export.main(["--model", name, "--from-config", "tiny", "--int8", "--fp16", "--calibration-data",
                            str(calibration_csv), "--calibration-size", "32", "--out", str(out)])
    report = json.loads((out / "export_report.json").read_text())
    rows = {r["precision"]: r for r in report["verification"]["rows"]}
    assert set(rows) == {"fp32", "int8", "fp16"}
    assert rows["fp32"]["max_abs_diff"] <= 1e-3 and rows["fp32"]["agreement"] >= 0.999
    assert rows["fp16"]["agreement"] >= 0.9
    assert code == (0 if all(r["passed"] for r in rows.values()) else 1)
    assert report["int8_mode"] == AUTO_MODE[name]
    for suffix, precision in [("", "fp32"), ("-int8", "int8"), ("-fp16", "fp16")]:
        path = out / f"{name}{suffix}.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map["fer"])
        assert meta["labels"] == list(LABELS) and meta["model"] == name and meta["precision"] == precision
        assert meta["format"] == 1 and {"image_size", "channels", "mean", "std", "crop_margin"} <= set(meta)
        assert [i.name for i in session.get_inputs()] == ["pixel_values"]
        assert session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].name == "logits"
        batch = np.zeros((3, meta["channels"], *meta["image_size"]), np.float32)
        assert session.run(None, {"pixel_values": batch})[0].shape == (3, 7)  # dynamic batch


def test_static_int8_has_qdq_nodes_and_dynamic_has_none(tmp_path, calibration_csv):
    for mode in ("static", "dynamic"):
        out = tmp_path / mode
        cli_export.main(["--model", "cnn", "--from-config", "tiny", "--int8", "--int8-mode", mode,
                         "--calibration-data", str(calibration_csv), "--out", str(out), "--no-verify"])
        ops = {n.op_type for n in onnx.load(str(out / "cnn-int8.onnx")).graph.node}
        assert ("QuantizeLinear" in ops and "DequantizeLinear" in ops) == (mode == "static"), ops


def test_int8_weights_use_seven_bits(tmp_path, calibration_csv):
    # Full-range int8 weights saturate onnxruntime's u8s8 kernels on CPUs without VNNI (AVX2).
    from onnx import numpy_helper

    for mode in ("static", "dynamic"):
        out = tmp_path / mode
        cli_export.main(["--model", "cnn", "--from-config", "tiny", "--int8", "--int8-mode", mode,
                         "--calibration-data", str(calibration_csv), "--out", str(out), "--no-verify"])
        weights = [numpy_helper.to_array(t) for t in onnx.load(str(out / "cnn-int8.onnx")).graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and t.dims and np.prod(t.dims) > 16]
        assert weights, "no int8 weight tensors found"
        assert all(np.abs(w.astype(np.int16)).max() <= 64 for w in weights), [(w.min(), w.max()) for w in weights]


def test_exported_cnn_matches_pytorch_on_a_checkpoint(tmp_path):
    built = create_model("cnn", from_config="tiny")
    folder = save_checkpoint(tmp_path / "ckpt", built)
    assert cli_export.main(["--model", "cnn", "--checkpoint", str(folder), "--out", str(tmp_path / "o")]) == 0
    x = np.random.default_rng(0).normal(size=(5, 1, 48, 48)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "o" / "cnn.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = built.module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"pixel_values": x})[0], expected, atol=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--model", "cnnn", "--from-config", "tiny"], "Did you mean 'cnn'"),
    (["--model", "vit"], "say what to export"),
    (["--model", "cnn", "--checkpoint", "/no/such/dir"], "checkpoint folder not found"),
    (["--model", "cnn", "--from-config", "tiny", "--opset", "9"], "opset 9 is not supported"),
    (["--model", "cnn", "--from-config", "tiny", "--int8", "--int8-mode", "static"], "needs calibration faces"),
    (["--model", "cnn", "--from-config", "tiny", "--out", "/proc/fer-out"], "cannot write to the output folder"),
    (["--model", "vit", "--pretrained", "google/vit-base-patch16-224"], "huggingface-cli download"),
])
def test_export_user_errors(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_export.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_checkpoint_of_another_family_is_refused(tmp_path, capsys):
    folder = save_checkpoint(tmp_path / "ckpt", create_model("cnn", from_config="tiny"))
    assert cli_export.main(["--model", "vit", "--checkpoint", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "holds a 'cnn' model, not 'vit'" in capsys.readouterr().err


def test_empty_calibration_set_is_refused(tmp_path, capsys):
    empty = tmp_path / "faces"
    empty.mkdir()
    assert cli_export.main(["--model", "cnn", "--from-config", "tiny", "--int8", "--calibration-data", str(empty),
                            "--out", str(tmp_path / "o")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert not (tmp_path / "o" / "cnn-int8.onnx").exists()


def test_tensorrt_without_tensorrt_explains(tmp_path, capsys):
    code = cli_export.main(["--model", "cnn", "--from-config", "tiny", "--tensorrt", "--out", str(tmp_path / "o"),
                            "--no-verify"])
    captured = capsys.readouterr()
    assert code == 2 and "TensorRT is not installed" in captured.err
    assert "trtexec --onnx=" in captured.out and "--maxShapes=pixel_values:32x1x48x48" in captured.out


def test_trtexec_command_and_engine_name():
    spec = create_model("cnn", from_config="tiny").spec
    request = EngineRequest(onnx_path=__import__("pathlib").Path("m.onnx"), out_dir=None, precision="int8",
                            max_batch=16, dla_core=0)
    assert request.engine_name(spec, "87") == "cnn_b1-16_int8_dla0_sm87.engine"
    command = trtexec_command(request, spec, "e.engine", "calib.cache")
    assert "--int8" in command and "--calib=calib.cache" in command and "--useDLACore=0" in command
    assert "--optShapes=pixel_values:8x1x48x48" in command


def test_engine_build_key_covers_every_build_parameter(tmp_path):
    import dataclasses
    import json as _json

    from fer_engine.export.tensorrt import build_key, engine_is_current

    spec = create_model("cnn", from_config="tiny").spec
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"model one")
    request = EngineRequest(onnx_path=onnx_path, out_dir=tmp_path, precision="int8", max_batch=16)
    faces = np.zeros((4, 48, 48), np.uint8)
    key = build_key(request, spec, "87", "10.3.0", "Orin", faces)
    engine = tmp_path / request.engine_name(spec, "87")
    engine.write_bytes(b"engine")
    engine.with_name(engine.name + ".json").write_text(_json.dumps({"build": {"key": key}}))
    assert engine_is_current(engine, build_key(request, spec, "87", "10.3.0", "Orin", faces.copy()))
    changed = [
        build_key(dataclasses.replace(request, opt_batch=4), spec, "87", "10.3.0", "Orin", faces),
        build_key(dataclasses.replace(request, workspace_mb=512), spec, "87", "10.3.0", "Orin", faces),
        build_key(dataclasses.replace(request, dla_core=0), spec, "87", "10.3.0", "Orin", faces),
        build_key(request, spec, "87", "10.3.0", "Orin", faces + 1),
        build_key(request, spec, "87", "8.6.2", "Orin", faces),
        build_key(request, spec, "87", "10.3.0", "Jetson AGX Orin", faces),
    ]
    assert not any(engine_is_current(engine, k) for k in changed)
    onnx_path.write_bytes(b"model two")  # same name and settings, other content
    assert not engine_is_current(engine, build_key(request, spec, "87", "10.3.0", "Orin", faces))
