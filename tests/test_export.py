import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fer_engine.export import cli_export
from fer_engine.export.tensorrt import EngineRequest, trtexec_command
from fer_engine.spec import LABELS
from fer_engine.train.checkpoint import save_checkpoint
from fer_engine.train.models import create_model, get_family

from conftest import write_csv

MODELS = ["cnn", "cnn-ensemble", "vit", "convnext", "convnextv2"]


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
    assert report["int8_mode"] == get_family(name).int8_mode
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


def test_the_export_follows_the_format_table(tmp_path, monkeypatch, capsys):
    """fer-export makes the formats its flags select, named and produced as the table says (fer_engine.formats)."""
    import dataclasses

    from fer_engine import formats

    half = dataclasses.replace(formats.format_named("onnx-fp16"), file="{model}.half.onnx")
    monkeypatch.setattr(formats, "FORMATS", tuple(half if f.name == half.name else f for f in formats.FORMATS))
    out = tmp_path / "o"
    assert cli_export.main(["--model", "cnn", "--from-config", "tiny", "--fp16", "--no-verify", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cnn.half.onnx", "cnn.onnx", "export_report.json"]
    assert list(json.loads((out / "export_report.json").read_text())["files"]) == ["cnn.onnx", "cnn.half.onnx"]
    printed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if str(out) in line]
    assert printed == ["fp32", "fp16", "report"]


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


@pytest.mark.parametrize("antialias", [False, True])
def test_exported_cnn_matches_pytorch_on_a_checkpoint(tmp_path, antialias):
    built = create_model("cnn", from_config="tiny")
    if antialias:  # the blur's fixed kernels export as plain depthwise convolutions
        change = tmp_path / "aa.json"
        change.write_text(json.dumps({"antialias": True}))
        built = create_model("cnn", pretrained=str(save_checkpoint(tmp_path / "plain", built)), from_config=str(change))
    folder = save_checkpoint(tmp_path / "ckpt", built)
    assert cli_export.main(["--model", "cnn", "--checkpoint", str(folder), "--out", str(tmp_path / "o")]) == 0
    x = np.random.default_rng(0).normal(size=(5, 1, 48, 48)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "o" / "cnn.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = built.module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"pixel_values": x})[0], expected, atol=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--model", "cnnn", "--from-config", "tiny"], "Did you mean 'cnn'"),
    (["--model", "vit"], "huggingface-cli download Aaryan333/vit-base-finetuned-fer2013"),  # the published fine-tune, offline
    (["--model", "cnn", "--checkpoint", "/no/such/dir"], "checkpoint folder not found"),
    (["--model", "cnn", "--from-config", "tiny", "--int8", "--int8-mode", "static"], "needs calibration faces"),
    (["--model", "cnn", "--from-config", "tiny", "--out", "/proc/fer-out"], "--out /proc/fer-out: cannot write in /proc"),
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
    assert not (tmp_path / "o").exists()


def test_tensorrt_without_tensorrt_explains(tmp_path, capsys):
    code = cli_export.main(["--model", "cnn", "--from-config", "tiny", "--tensorrt", "--out", str(tmp_path / "o"),
                            "--no-verify"])
    captured = capsys.readouterr()
    assert code == 2 and "TensorRT is not installed" in captured.err
    assert "drop --tensorrt to write the ONNX files here" in captured.err and captured.err.count("\n") == 1
    assert "trtexec --onnx=" in captured.out and "--maxShapes=pixel_values:32x1x48x48" in captured.out
    assert not (tmp_path / "o").exists()  # found before anything was written


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


@pytest.mark.parametrize("option, value", [
    ("--opset", "9"), ("--opset", "22"), ("--calibration-size", "0"), ("--verify-size", "0"), ("--max-batch", "0"),
    ("--dla-core", "-1"), ("--triton-instances", "0"), ("--triton-queue-delay-us", "-1"),
    ("--triton-preferred-batch", "0"), ("--verify-size", "many"),
])
def test_numbers_are_refused_at_parse_time_naming_the_option(option, value, capsys):
    with pytest.raises(SystemExit) as exit:
        cli_export.main(["--model", "cnn", "--from-config", "tiny", option, value])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and f"fer-export: error: argument {option}: " in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--int8"], "static int8 needs calibration faces: pass --calibration-data"),  # auto is static for cnn
    (["--int8", "--int8-mode", "dynamic", "--tensorrt"], "a TensorRT int8 engine needs calibration faces"),
    (["--calibration-data", "/no/such.csv"], "data not found: /no/such.csv"),
    (["--triton", "{tmp}/repo", "--max-batch", "8", "--triton-preferred-batch", "4", "16"],
     "--triton-preferred-batch 16 exceeds the max batch size 8"),
    (["--out", "{tmp}/file"], "--out {tmp}/file is a file, not a folder"),
])
def test_checks_come_before_any_file_is_written(argv, message, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.chdir(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert cli_export.main(["--model", "cnn", "--from-config", "tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no exports/cnn, no repo, nothing


def test_bad_rows_stop_the_export_before_it_writes_and_skip_bad_rows_counts_them(tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", n=140, rows=[["1", "1 2 3", "Training"]])
    out = tmp_path / "new" / "out"
    argv = ["--model", "cnn", "--from-config", "tiny", "--int8", "--calibration-data", str(bad), "--out", str(out),
            "--calibration-size", "16", "--verify-size", "8"]
    assert cli_export.main(argv) == 2
    assert "line 142: 3 pixel values" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert cli_export.main(argv + ["--skip-bad-rows"]) in (0, 1)
    assert f"skipped 1 bad row(s) of {bad}" in capsys.readouterr().out
    assert (out / "cnn-int8.onnx").is_file()


def test_a_failure_after_the_checks_leaves_no_empty_folder(tmp_path, capsys, monkeypatch):
    from fer_engine.errors import FerError
    from fer_engine.export import onnx_export

    def fails(*args, **kwargs):
        raise FerError("the exporter failed")

    monkeypatch.setattr(onnx_export, "export_fp32", fails)
    assert cli_export.main(["--model", "cnn", "--from-config", "tiny", "--out", str(tmp_path / "a" / "b")]) == 2
    assert "the exporter failed" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_untrained_exports_are_judged_by_their_logits_and_say_so(tmp_path, calibration_csv, capsys):
    out = tmp_path / "out"
    assert cli_export.main(["--model", "convnext", "--from-config", "tiny", "--int8", "--calibration-data",
                            str(calibration_csv), "--calibration-size", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weights: untrained (--from-config tiny)" in printed and "✅ untrained: logits match" in printed
    report = json.loads((out / "export_report.json").read_text())
    assert report["weights"] == {"trained": False, "source": "--from-config tiny"}
    assert report["verification"]["judged_by"].startswith("logits")
    for row in report["verification"]["rows"]:
        assert row["trained"] is False and row["accuracy"] is None and "agreement" not in row["judged_by"]
        assert "correlation" in row["judged_by"] and row["correlation"] > 0.95


def test_trained_exports_are_judged_by_their_decisions(tmp_path, calibration_csv, capsys):
    folder = save_checkpoint(tmp_path / "ckpt", create_model("cnn", from_config="tiny"))
    out = tmp_path / "out"
    cli_export.main(["--model", "cnn", "--checkpoint", str(folder), "--calibration-data", str(calibration_csv),
                     "--out", str(out)])
    report = json.loads((out / "export_report.json").read_text())
    assert report["weights"] == {"trained": True, "source": f"checkpoint {folder}"}
    row = report["verification"]["rows"][0]
    assert row["trained"] and "agreement" in row["judged_by"] and row["accuracy"] is not None
    assert "weights: trained" in capsys.readouterr().out


def test_logit_correlation_ignores_offsets_that_softmax_and_an_untrained_head_add():
    from fer_engine.export.verify import logit_correlation

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(64, 7)) * 0.01 + np.arange(7)  # a fixed offset per class dominates
    assert logit_correlation(reference + 3.0, reference) == pytest.approx(1.0)  # a shift per face changes nothing
    noise = reference + rng.normal(size=reference.shape) * 0.01  # as large as the faces' own variation
    assert logit_correlation(noise, reference) < 0.8  # the class offsets alone would give 0.9999


def test_from_file_without_fer_metadata_names_the_file(tmp_path, capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["pixel_values"], ["logits"])], "g",
                              [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["n", 7])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 7])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert cli_export.main(["--from-file", str(path), "--triton", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fer-export: error: {path}: ") and "no 'fer' metadata" in err
