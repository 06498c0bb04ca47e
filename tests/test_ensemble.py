"""cnn-ensemble: trained cnn checkpoints assembled into one model whose output is the log of their averaged
probabilities; stored without loss; refused where it cannot work, with the reason."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from fer_engine.train import cli_train
from fer_engine.train.checkpoint import load_checkpoint, save_checkpoint
from fer_engine.train.ensemble import assemble, main as ensemble_main
from fer_engine.train.models import BuiltModel, create_model


def tiny_member(folder, seed: int, half: bool = False):
    with torch.random.fork_rng():  # other tests' random weights stay as they were
        torch.manual_seed(seed)
        built = create_model("cnn", from_config="tiny")
    if half:  # weights an fp16 copy holds: exactly representable in fp16
        with torch.no_grad():
            for value in built.module.state_dict().values():
                if value.is_floating_point():
                    value.copy_(value.half().float())
    return save_checkpoint(folder, built)


def test_the_ensemble_gives_the_log_of_its_members_mean_probabilities(tmp_path):
    members = [tiny_member(tmp_path / f"m{i}", seed=i) for i in range(3)]
    ensemble = assemble(members)
    assert ensemble.spec.model == "cnn-ensemble" and len(ensemble.arch["members"]) == 3
    x = torch.randn(5, 1, 48, 48)
    with torch.no_grad():
        mean = torch.stack([load_checkpoint(m).module(x).softmax(-1) for m in members]).mean(0)
        torch.testing.assert_close(ensemble.module.eval()(x).exp(), mean, rtol=0, atol=1e-6)


@pytest.mark.parametrize("half", [False, True])
def test_a_saved_ensemble_loads_to_the_same_outputs_in_fp16_only_where_that_loses_nothing(tmp_path, half):
    members = [tiny_member(tmp_path / f"m{i}", seed=i, half=half) for i in range(2)]
    folder = save_checkpoint(tmp_path / "ens", assemble(members))
    stored = [load_file(str(folder / f"member-{i}.safetensors")) for i in range(2)]
    floats = {v.dtype for member in stored for v in member.values() if v.is_floating_point()}
    assert floats == {torch.float16} if half else torch.float32 in floats  # random weights need fp32
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(folder).module(x), assemble(members).module.eval()(x),
                                   rtol=0, atol=0)


def test_members_that_read_faces_differently_are_refused(tmp_path, capsys):
    first = tiny_member(tmp_path / "a", seed=0)
    other = create_model("cnn", from_config="tiny")
    other = BuiltModel(other.module, replace(other.spec, mean=(0.5,)), other.arch)
    second = save_checkpoint(tmp_path / "b", other)
    assert ensemble_main(["--member", str(first), "--member", str(second), "--out", str(tmp_path / "e")]) == 2
    assert "reads faces differently" in capsys.readouterr().err and not (tmp_path / "e").exists()


@pytest.mark.parametrize("members, message", [
    (["a"], "two or more"),
    (["a", "vit"], "holds a 'vit' model, not 'cnn'"),
    (["a", "missing"], "checkpoint folder not found"),
])
def test_assembly_mistakes_are_one_line_errors(members, message, tmp_path, capsys):
    tiny_member(tmp_path / "a", seed=0)
    save_checkpoint(tmp_path / "vit", create_model("vit", from_config="tiny"))
    argv = [a for m in members for a in ("--member", str(tmp_path / m))] + ["--out", str(tmp_path / "e")]
    assert ensemble_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_cli_writes_a_checkpoint_that_says_what_it_is(tmp_path, capsys):
    members = [tiny_member(tmp_path / f"m{i}", seed=i) for i in range(2)]
    out = tmp_path / "ens"
    assert ensemble_main([a for m in members for a in ("--member", str(m))] + ["--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["fer"]["model"] == "cnn-ensemble" and len(config["arch"]["members"]) == 2
    assert json.loads((out / "metrics.json").read_text())["members"] == [str(m) for m in members]
    assert "2 members" in capsys.readouterr().out


def test_fer_train_refuses_the_ensemble_and_says_how_it_is_made(tiny_csv, tmp_path, capsys):
    code = cli_train.main(["--model", "cnn-ensemble", "--data", str(tiny_csv), "--out", str(tmp_path / "r"),
                           "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "assembled from trained cnn checkpoints" in err and "fer_engine.train.ensemble" in err
    assert cli_train.main(["--list-models"]) == 0
    assert "cnn-ensemble  ours, the accurate choice" in capsys.readouterr().out
