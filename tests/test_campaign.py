"""The GPU campaign (train/campaign.py): its arithmetic, its commands, and one small run on the CPU."""

import json

import pytest

from fer_engine.errors import FerError
from fer_engine.train import cli_train
from fer_engine.train.campaign import (CampaignConfig, RunResult, fer_train_command, main, plan_epochs,
                                       warmup_epochs)
from fer_engine.train.pack import main as pack_main

from conftest import write_csv


def test_epochs_fill_the_time_left_after_the_fixed_cost():
    probe = RunResult("student", epochs=2, wall_s=14.0, epoch_s=2.0)  # 4 s of epochs, 10 s to start and finish
    assert plan_epochs(110.0, probe, 2, 10, "student") == 50
    with pytest.raises(FerError, match=r"student: 30 s leave 10 epochs at 2.0 s an epoch \(\+10 s"):
        plan_epochs(30.0, probe, 2, 11, "student")


def test_warm_up_keeps_run_10s_share():
    assert [warmup_epochs(e) for e in (10, 75, 250, 1000)] == [1, 2, 5, 5]


def test_student_command_learns_online_from_every_teacher(tmp_path):
    cfg = CampaignConfig(data="d.zip", out=str(tmp_path), device="cuda", amp="bf16", limit=64)
    command = fer_train_command(cfg, config="s.json", out=tmp_path / "s", epochs=300, seed=0,
                                teachers=[tmp_path / "a", tmp_path / "b"])
    text = " ".join(command)
    assert "--teacher " + str(tmp_path / "a") in text and "--teacher " + str(tmp_path / "b") in text
    for expected in ("--distill-target online", "--mixup 0.2", "--no-test", "--epochs 300", "--warmup-epochs 5",
                     "--device cuda", "--amp bf16", "--limit 64", "--optimizer sgd", "--lr 0.01"):
        assert expected in text
    cfg.mixup = 0
    assert "--mixup" not in " ".join(fer_train_command(cfg, config="s.json", out=tmp_path / "s", epochs=300, seed=0,
                                                       teachers=[tmp_path / "a"]))
    teacher = " ".join(fer_train_command(cfg, config="t.json", out=tmp_path / "t", epochs=20, seed=1))
    assert "--teacher" not in teacher and "--mixup" not in teacher and "--seed 1" in teacher


def test_refuses_what_it_cannot_use(tmp_path, capsys):
    assert main(["--data", "d.zip", "--out", str(tmp_path), "--teacher", str(tmp_path / "none")]) != 0
    assert "not a checkpoint folder" in capsys.readouterr().err
    assert main(["--data", "d.zip", "--out", str(tmp_path), "--teacher-share", "1.5"]) != 0
    assert "--teacher-share must be between 0 and 1" in capsys.readouterr().err


def test_packed_data_without_privatetest_trains_with_no_test_only(tmp_path, capsys):
    packed = tmp_path / "train-val.zip"
    assert pack_main([str(write_csv(tmp_path / "f.csv", n=140)), "--out", str(packed), "--splits",
                      "Training,PublicTest"]) == 0
    argv = ["--model", "cnn", "--from-config", "tiny", "--data", str(packed), "--epochs", "1", "--batch-size", "16",
            "--limit", "60", "--threads", "1"]
    assert cli_train.main([*argv, "--out", str(tmp_path / "a")]) != 0
    err = capsys.readouterr().err
    assert "has no PrivateTest faces" in err and "pass --no-test" in err
    assert cli_train.main([*argv, "--out", str(tmp_path / "b"), "--no-test"]) == 0
    assert (tmp_path / "b" / "best" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_small_campaign_trains_a_teacher_then_the_student_within_its_plan(tmp_path):
    data = write_csv(tmp_path / "f.csv", n=140)
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps({"widths": [8, 16], "blocks": [1, 1], "stem": [[8, 2]]}))
    out = tmp_path / "campaign"
    argv = ["--data", str(data), "--out", str(out), "--minutes", "2.5", "--teachers", "1", "--teacher-config",
            str(tiny), "--student-config", str(tiny), "--device", "cpu", "--threads", "1", "--workers", "0",
            "--limit", "60", "--batch-size", "16", "--min-epochs", "1"]
    assert main(argv) == 0
    report = json.loads((out / "campaign.json").read_text())
    assert [p["name"] for p in report["probes"]] == ["teacher-0", "student"]
    assert report["teachers"][0]["epochs"] == report["budget"]["teacher_epochs"] >= 1
    assert report["student"]["epochs"] == report["budget"]["student_epochs"] >= 1
    assert (out / "student" / "model.safetensors").is_file() and not (out / "probe").exists()
    student_metrics = json.loads((out / "student" / "metrics.json").read_text())
    assert student_metrics["config"]["teachers"] == [str(out / "teacher-0" / "best")]
    assert student_metrics["config"]["distill_target"] == "online"
