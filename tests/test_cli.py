import json

import numpy as np
import pytest
import torch

from fer_engine.train import cli_eval, cli_train
from fer_engine.train.checkpoint import load_checkpoint
from fer_engine.train.data import load_fer2013
from fer_engine.train.evaluate import predict_probs
from fer_engine.train.trainer import Trainer

from conftest import DEFAULT_CHECKPOINT, FER2013, needs_fer2013, write_csv


@pytest.fixture
def train_csv(tmp_path):
    return write_csv(tmp_path / "train.csv", n=140)


def train(csv, out, *extra):
    argv = ["--model", "cnn", "--from-config", "tiny", "--data", str(csv), "--out", str(out), "--epochs", "2",
            "--batch-size", "16", "--lr", "0.05", "--limit", "100", "--threads", "1", *extra]
    return cli_train.main(argv)


def test_fer_train_writes_a_complete_checkpoint(train_csv, tmp_path):
    assert train(train_csv, tmp_path / "run") == 0
    best = tmp_path / "run" / "best"
    for name in ("config.json", "model.safetensors", "metrics.json", "training_curve.png"):
        assert (best / name).is_file(), name
    metrics = json.loads((best / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["best_epoch"] in (1, 2)
    assert metrics["test"]["split"] == "PrivateTest" and "machine" in metrics
    # The recorded PublicTest accuracy is what the saved weights give.
    ckpt = load_checkpoint(best)
    val = load_fer2013(train_csv).split("PublicTest")
    probs = predict_probs(ckpt.module, ckpt.spec, val.images)
    assert (probs.argmax(1) == val.labels).mean() == pytest.approx(metrics["best"]["val_accuracy"])


def test_same_seed_same_run(train_csv, tmp_path):
    histories = []
    for run in ("a", "b"):
        train(train_csv, tmp_path / run, "--seed", "3", "--no-test")
        history = json.loads((tmp_path / run / "best" / "metrics.json").read_text())["history"]
        histories.append([(h["train_loss"], h["val_accuracy"]) for h in history])
    assert histories[0] == histories[1]


def _weights(folder):
    from safetensors.torch import load_file

    state = load_file(str(folder / "training_state.safetensors"))
    weights = load_checkpoint(folder).module.state_dict()
    return weights, {k: v for k, v in state.items() if k.startswith(("ema.", "optim."))}


def assert_option_resumes_exactly_and_matters(csv, tmp_path, *option):
    """A run with ``option`` cut after epoch 1 and resumed ends on the weights of a straight one, and a run
    without it ends elsewhere."""
    extra = (*option, "--no-test")
    assert train(csv, tmp_path / "straight", *extra) == 0
    cut = tmp_path / "cut"
    assert train(csv, cut, *extra, "--max-minutes", "0.00001") == 0  # stops after epoch 1
    assert cli_train.main(["--resume", str(cut), "--threads", "1"]) == 0
    straight, _ = _weights(tmp_path / "straight" / "last")
    resumed, _ = _weights(cut / "last")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)
    assert train(csv, tmp_path / "without", "--no-test") == 0
    without, _ = _weights(tmp_path / "without" / "last")
    assert any(not torch.equal(without[k], straight[k]) for k in straight if straight[k].is_floating_point())


def _signal_at_step(monkeypatch, step_number, signum):
    import os

    original_step = Trainer._train_step
    calls = {"n": 0}

    def step(self, *batch):
        result = original_step(self, *batch)
        calls["n"] += 1
        if calls["n"] == step_number:
            os.kill(os.getpid(), signum)  # the handler fer-train installs asks for a stop after this step
        return result

    monkeypatch.setattr(Trainer, "_train_step", step)


def test_stopped_and_resumed_run_gives_the_same_weights_as_a_straight_one(train_csv, tmp_path, monkeypatch):
    """4 epochs straight == 1 epoch (--max-minutes) + SIGTERM in epoch 3 + the rest, EMA and momentum too."""
    import signal

    extra = ("--epochs", "4", "--ema", "0.9", "--no-test")
    assert train(train_csv, tmp_path / "straight", *extra) == 0
    cut = tmp_path / "cut"
    assert train(train_csv, cut, *extra, "--max-minutes", "0.00001") == 0
    state = json.loads((cut / "last" / "training_state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 0) and not (cut / "best" / "metrics.json").read_text().count('"test"')

    steps = 84 // 16  # the 84 Training faces of train_csv, batch 16
    _signal_at_step(monkeypatch, steps + 3, signal.SIGTERM)  # third step of epoch 3
    assert cli_train.main(["--resume", str(cut), "--threads", "1"]) == 128 + signal.SIGTERM
    state = json.loads((cut / "last" / "training_state.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 3)
    monkeypatch.undo()
    assert cli_train.main(["--resume", str(cut), "--threads", "1"]) == 0

    straight, straight_state = _weights(tmp_path / "straight" / "last")
    resumed, resumed_state = _weights(cut / "last")
    assert straight_state.keys() == resumed_state.keys() and any(k.startswith("ema.") for k in straight_state)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)
    for key in straight_state:
        torch.testing.assert_close(resumed_state[key], straight_state[key], rtol=0, atol=0)
    history = json.loads((cut / "best" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_ctrl_c_saves_a_resumable_state(train_csv, tmp_path, monkeypatch):
    import signal

    _signal_at_step(monkeypatch, 2, signal.SIGINT)
    assert train(train_csv, tmp_path / "run", "--no-test") == 130
    state = json.loads((tmp_path / "run" / "last" / "training_state.json").read_text())
    assert (state["epoch"], state["step"]) == (0, 2)
    assert not (tmp_path / "run" / "last" / "training_state.pt").exists()


def test_compact_state_resumes_and_is_small(train_csv, tmp_path):
    from safetensors.torch import load_file

    compact = tmp_path / "compact"
    assert train(train_csv, tmp_path / "run", "--epochs", "3", "--ema", "0.9", "--no-test", "--max-minutes", "0.00001",
                 "--compact-state", str(compact)) == 0
    weights = load_file(str(compact / "model.safetensors"))
    assert all(v.dtype == torch.float16 for k, v in weights.items() if v.is_floating_point())
    tensors = load_file(str(compact / "training_state.safetensors"))
    assert not any(k.startswith("optim.") for k in tensors) and any(k.startswith("ema.") for k in tensors)
    assert cli_train.main(["--resume", str(compact), "--threads", "1", "--out", str(tmp_path / "continued")]) == 0
    history = json.loads((tmp_path / "continued" / "best" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


@pytest.mark.parametrize("damage, named", [
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:200]), "model.safetensors"),
    (lambda f: (f / "training_state.json").write_text("{not json"), "training_state.json"),
    (lambda f: (f / "training_state.safetensors").write_bytes(b"garbage" * 10), "training_state.safetensors"),
    (lambda f: (f / "training_state.safetensors").unlink(), "training_state.safetensors is missing"),
])
def test_damaged_or_missing_state_is_one_line_naming_the_file(train_csv, tmp_path, capsys, damage, named):
    train(train_csv, tmp_path / "run", "--epochs", "1", "--no-test")
    damage(tmp_path / "run" / "last")
    capsys.readouterr()
    assert cli_train.main(["--resume", str(tmp_path / "run"), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet", "--data", "x.csv"], "unknown model 'resnet'"),
    (["--model", "cnn"], "--data is required"),
    (["--model", "cnn", "--data", "/no/such/file.csv"], "data not found"),
    (["--resume", "/no/such/run"], "nothing to resume"),
    (["--model", "cnn", "--data", "x.csv", "--out", "/proc/version"], "is a file, not a folder"),
    (["--model", "cnn", "--data", "x.csv", "--out", "/proc/fer-run"], "--out /proc/fer-run cannot be written into"),
    (["--model", "cnn", "--data", "x.csv", "--epochs", "0"], "argument --epochs: 0 is out of range"),
    (["--model", "cnn", "--data", "x.csv", "--lr", "-1"], "argument --lr: -1 is out of range"),
    (["--model", "cnn", "--data", "x.csv", "--ema", "1.5"], "argument --ema: 1.5 is out of range"),
    (["--model", "cnn", "--data", "x.csv", "--from-config", "nope"], "--from-config takes"),
])
def test_fer_train_user_errors_are_one_line(argv, message, capsys):
    try:
        assert cli_train.main(argv) == 2
    except SystemExit as exit:  # argparse refuses bad numbers itself
        assert exit.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_fer_eval_reports_and_writes_json_and_png(train_csv, tmp_path, capsys):
    train(train_csv, tmp_path / "run", "--no-test")
    capsys.readouterr()
    out_json = tmp_path / "eval" / "report.json"
    assert cli_eval.main([str(tmp_path / "run" / "best"), "--data", str(train_csv), "--split", "PublicTest",
                          "--json", str(out_json), "--tta"]) == 0
    text = capsys.readouterr().out
    assert "macro-F1" in text and "confusion" in text and "disgust" in text
    report = json.loads(out_json.read_text())
    assert report["count"] == 28 and report["tta"] is True
    assert np.array(report["confusion"]).sum() == 28
    assert set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert out_json.with_suffix(".png").stat().st_size > 1000


def test_fer_eval_user_errors(train_csv, tmp_path, capsys):
    assert cli_eval.main([str(tmp_path / "missing"), "--data", str(train_csv)]) == 2
    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    assert cli_eval.main([str(model), "--data", str(train_csv)]) == 2
    assert "cannot evaluate" in capsys.readouterr().err
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():  # --device cuda: CUDA or an error
        from fer_engine.runtime.backends import resolve_model

        assert cli_eval.main([str(resolve_model("cnn-int8")), "--data", str(train_csv), "--device", "cuda"]) == 2
        assert "execution provider 'CUDAExecutionProvider' is not available" in capsys.readouterr().err


@needs_fer2013
@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "metrics.json").is_file(), reason="no committed default checkpoint")
def test_committed_checkpoint_matches_its_recorded_publictest_accuracy(tmp_path):
    out = tmp_path / "eval.json"
    assert cli_eval.main([str(DEFAULT_CHECKPOINT), "--data", str(FER2013), "--split", "PublicTest",
                          "--json", str(out), "--device", "cpu"]) == 0
    recorded = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())["best"]["val_accuracy"]
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(recorded, abs=0.005)


def test_average_last_epochs(train_csv, tmp_path):
    assert train(train_csv, tmp_path / "avg", "--epochs", "3", "--average-last", "2", "--no-test") == 0
    assert sorted(p.name for p in (tmp_path / "avg" / "tail").iterdir()) == ["epoch_2.safetensors", "epoch_3.safetensors"]
    metrics = json.loads((tmp_path / "avg" / "best" / "metrics.json").read_text())
    averaging = metrics["averaging"]
    assert averaging["epochs"] == [2, 3]
    best_single = max(h["val_accuracy"] for h in metrics["history"])
    assert metrics["best"]["val_accuracy"] == max(best_single, averaging["val_accuracy"])
    assert averaging["chosen"] == (averaging["val_accuracy"] > best_single)


def test_average_state_dicts_means_floats_and_keeps_counters():
    from fer_engine.train.averaging import average_state_dicts

    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    out = average_state_dicts([a, b])
    torch.testing.assert_close(out["w"], torch.tensor([2.0, 4.0]))
    assert int(out["n"]) == 9


def test_class_bias_fit_raises_macro_f1_and_folds_into_the_head():
    from fer_engine.train.class_bias import fit_class_bias, fold_into_classifier
    from fer_engine.train.models import create_model

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=600)
    log_probs = np.log(np.full((600, 3), 0.1)) + rng.normal(0, 0.3, size=(600, 3))
    log_probs[np.arange(600), labels] += 0.4
    log_probs[:, 2] -= 0.8  # class 2 under-predicted, as disgust is
    f1 = lambda b: __import__("fer_engine.train.metrics", fromlist=["Report"]).Report.from_predictions(
        labels, (log_probs + b).argmax(1), "abc").macro_f1
    bias = fit_class_bias(log_probs, labels, max_accuracy_drop=1.0)
    assert f1(bias) > f1(np.zeros(3)) + 0.05
    built = create_model("cnn", from_config="tiny")
    x = torch.randn(2, 1, 48, 48)
    built.module.eval()
    with torch.no_grad():
        before = built.module(x)
        fold_into_classifier(built.module, np.arange(7, dtype=np.float32))
        torch.testing.assert_close(built.module(x) - before, torch.arange(7.0).expand(2, 7))


def test_tune_bias_flag_records_its_choice(train_csv, tmp_path):
    assert train(train_csv, tmp_path / "b", "--tune-bias", "--no-test") == 0
    metrics = json.loads((tmp_path / "b" / "best" / "metrics.json").read_text())
    assert set(metrics["class_bias"]["bias"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    kept = metrics["class_bias"]["chosen"]
    assert metrics["best"]["val_macro_f1"] == pytest.approx(metrics["class_bias"]["after" if kept else "before"]["val_macro_f1"])


def test_augment_presets_change_the_run_and_are_recorded(train_csv, tmp_path):
    losses = {}
    for preset in ("strong", "flip"):
        train(train_csv, tmp_path / preset, "--augment", preset, "--no-test")
        metrics = json.loads((tmp_path / preset / "best" / "metrics.json").read_text())
        assert metrics["config"]["augment"] == preset
        losses[preset] = metrics["history"][0]["train_loss"]
    assert losses["strong"] != losses["flip"]


def test_augment_presets_differ_in_strength():
    from fer_engine.train.augment import augment, augment_preset

    faces = torch.rand(64, 1, 48, 48)
    change = {}
    for preset in ("strong", "light", "flip"):
        out = augment(faces.clone(), augment_preset(preset), torch.Generator().manual_seed(0))
        flipped = faces.flip(-1)
        # Distance to the nearer of the face and its mirror image: what the warps and erasing changed.
        change[preset] = torch.minimum((out - faces).abs().mean((1, 2, 3)), (out - flipped).abs().mean((1, 2, 3))).mean()
    assert change["flip"] < 1e-6 < change["light"] < change["strong"]


def test_library_errors_name_the_field_and_the_cli_its_option(capsys):
    from fer_engine.cli import run_cli
    from fer_engine.errors import FieldError
    from fer_engine.train.trainer import TrainConfig

    with pytest.raises(FieldError, match="^average_last must be between 0"):
        TrainConfig(model="cnn", data="x", average_last=500).fill_defaults()

    def body():
        TrainConfig(model="cnn", data="x", average_last=500).fill_defaults()

    assert run_cli(body, "fer-train") == 2
    assert "fer-train: error: --average-last must be between 0" in capsys.readouterr().err
    assert run_cli(body, "prog", options={"average_last": "--tail"}) == 2
    assert "prog: error: --tail must be between 0" in capsys.readouterr().err


def test_ten_crop_views_are_corner_and_centre_crops_with_their_mirrors():
    import cv2

    from fer_engine.train.cli_eval import ten_crop_views

    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    views = ten_crop_views(faces)
    assert len(views) == 10 and all(v.shape == faces.shape and v.dtype == np.uint8 for v in views)
    top_left = cv2.resize(np.ascontiguousarray(faces[1, :44, :44]), (48, 48), interpolation=cv2.INTER_LINEAR)
    centre = cv2.resize(np.ascontiguousarray(faces[1, 2:46, 2:46]), (48, 48), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(views[0][1], top_left) and np.array_equal(views[8][1], centre)
    for plain, mirrored in zip(views[::2], views[1::2]):
        assert np.array_equal(mirrored, plain[:, :, ::-1])
    assert len({v.tobytes() for v in views}) == 10  # ten different views of a random face


def test_fer_eval_ten_crop(train_csv, tmp_path, capsys):
    train(train_csv, tmp_path / "run", "--no-test")
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert cli_eval.main([str(tmp_path / "run" / "best"), "--data", str(train_csv), "--split", "PublicTest",
                          "--json", str(out_json), "--ten-crop"]) == 0
    assert "ten crops with mirrors" in capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["ten_crop"] is True and report["tta"] is False and report["count"] == 28
    with pytest.raises(SystemExit):
        cli_eval.main([str(tmp_path / "run" / "best"), "--data", str(train_csv), "--tta", "--ten-crop"])
