"""Distillation in fer-train: teacher targets on fixed views, their cache, and exact resumption."""

import json
import shutil

import pytest
import torch

from fer_engine.train import cli_train
from fer_engine.train.augment import apply_warps, augment, augment_preset, erase, sample_warps
from fer_engine.train.checkpoint import load_checkpoint
from fer_engine.train.data import load_fer2013
from fer_engine.train.distill import TARGETS_FILE, distill_loss, view_warps
from fer_engine.train.preprocess import faces_to_tensor, to_pixel_values

from conftest import write_csv

TRAINING_FACES = 84  # of write_csv(n=140)


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", n=140)


@pytest.fixture(scope="module")
def teacher(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert train(csv, out, "--no-test", "--seed", "1") == 0
    return out / "best"


def train(csv, out, *extra):
    argv = ["--model", "cnn", "--from-config", "tiny", "--data", str(csv), "--out", str(out), "--epochs", "2",
            "--batch-size", "16", "--lr", "0.05", "--limit", "100", "--threads", "1", "--amp", "off", *extra]
    return cli_train.main(argv)


def _targets(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / TARGETS_FILE))["probs"]


def test_a_view_made_from_its_warp_rows_is_the_augmented_face():
    """augment() is sample_warps + apply_warps + erase, drawing the same random numbers in the same order."""
    faces = torch.rand(32, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    cfg = augment_preset("strong")
    direct = augment(faces.clone(), cfg, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    composed = erase(apply_warps(faces.clone(), sample_warps(32, cfg, gen)), cfg, gen)
    assert torch.equal(direct, composed)
    assert torch.equal(view_warps(10, 3, cfg, seed=5), view_warps(10, 3, cfg, seed=5))
    assert not torch.equal(view_warps(10, 3, cfg, seed=5), view_warps(10, 3, cfg, seed=6))


def test_distill_loss_is_zero_only_where_the_student_matches_the_teacher():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    for temperature in (1.0, 2.0):
        matching = torch.softmax(logits / temperature, 1)
        assert distill_loss(logits, matching, temperature).item() == pytest.approx(0, abs=1e-6)
        assert distill_loss(logits, matching.flip(1), temperature).item() > 0.1


def test_the_mean_target_is_the_same_for_every_view_of_a_face():
    from fer_engine.train.distill import TeacherTargets

    probs = torch.softmax(torch.randn(4, 6, 7, generator=torch.Generator().manual_seed(0)), -1).half()
    warps = view_warps(6, 4, augment_preset("strong"), seed=0)
    faces, index = torch.rand(6, 1, 48, 48), torch.arange(6)
    per_view = TeacherTargets(warps, probs, "view")
    mean = TeacherTargets(warps, probs, "mean")
    seen_view, seen_mean = [], []
    for seed in range(6):
        x_view, t_view = per_view.batch(faces, index, torch.Generator().manual_seed(seed))
        x_mean, t_mean = mean.batch(faces, index, torch.Generator().manual_seed(seed))
        assert torch.equal(x_view, x_mean)  # the same views are shown; only the targets differ
        seen_view.append(t_view)
        seen_mean.append(t_mean)
    assert any(not torch.equal(seen_view[0], t) for t in seen_view[1:])
    for t in seen_mean:
        torch.testing.assert_close(t, probs.float().mean(0))


def test_targets_are_the_teachers_probabilities_on_each_view(csv, teacher, tmp_path, capsys):
    assert train(csv, tmp_path / "student", "--no-test", "--teacher", str(teacher), "--teacher-views", "3",
                 "--distill-temperature", "2") == 0
    probs = _targets(tmp_path / "student").float()
    assert probs.shape == (3, TRAINING_FACES, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, TRAINING_FACES), atol=3e-3, rtol=0)

    ckpt = load_checkpoint(teacher)
    faces = faces_to_tensor(load_fer2013(csv).split("Training").images)
    warps = view_warps(TRAINING_FACES, 3, augment_preset("strong"), seed=0)
    with torch.no_grad():
        view = 2
        expected = torch.softmax(ckpt.module(to_pixel_values(apply_warps(faces, warps[view]), ckpt.spec)) / 2, 1)
    torch.testing.assert_close(probs[view], expected, atol=2e-3, rtol=0)

    metrics = json.loads((tmp_path / "student" / "best" / "metrics.json").read_text())
    assert metrics["config"]["teachers"] == [str(teacher)] and metrics["config"]["teacher_views"] == 3
    teacher_best = json.loads((teacher / "metrics.json").read_text())["best"]["val_accuracy"]
    assert metrics["teachers"]["val_accuracy"] == [pytest.approx(teacher_best)]

    capsys.readouterr()
    assert train(csv, tmp_path / "student", "--no-test", "--teacher", str(teacher), "--teacher-views", "3",
                 "--distill-temperature", "2") == 0
    assert "read from the cache" in capsys.readouterr().out
    assert train(csv, tmp_path / "student", "--no-test", "--teacher", str(teacher), "--teacher-views", "2") == 0
    assert _targets(tmp_path / "student").shape[0] == 2  # other views: computed again, not the stale cache


def test_distillation_changes_the_run(csv, teacher, tmp_path):
    assert train(csv, tmp_path / "plain", "--no-test") == 0
    assert train(csv, tmp_path / "distilled", "--no-test", "--teacher", str(teacher), "--teacher-views", "2",
                 "--distill-weight", "1") == 0
    losses = [json.loads((tmp_path / run / "best" / "metrics.json").read_text())["history"][0]["train_loss"]
              for run in ("plain", "distilled")]
    assert losses[0] != losses[1]


def test_a_distilled_run_resumes_exactly_with_its_teachers_changed_or_gone(csv, teacher, tmp_path):
    from safetensors.torch import load_file

    teacher_copy = tmp_path / "teacher"
    shutil.copytree(teacher, teacher_copy)
    extra = ("--epochs", "3", "--no-test", "--teacher", str(teacher_copy), "--teacher-views", "2")
    assert train(csv, tmp_path / "straight", *extra) == 0
    cut = tmp_path / "cut"
    assert train(csv, cut, *extra, "--max-minutes", "0.00001", "--compact-state", str(tmp_path / "compact")) == 0
    assert (tmp_path / "compact" / TARGETS_FILE).is_file()
    # The teacher's folder now holds another model (retrained, or a new one shipped under the same path):
    # the resumed run keeps the targets it started with.
    assert train(csv, tmp_path / "other", "--no-test", "--seed", "7", "--epochs", "1") == 0
    shutil.rmtree(teacher_copy)
    shutil.copytree(tmp_path / "other" / "best", teacher_copy)
    assert cli_train.main(["--resume", str(cut), "--threads", "1"]) == 0
    straight = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    resumed = load_file(str(cut / "last" / "model.safetensors"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)

    shutil.rmtree(teacher_copy)  # a fresh machine: the committed compact state carries the targets
    assert cli_train.main(["--resume", str(tmp_path / "compact"), "--threads", "1", "--out", str(tmp_path / "on")]) == 0
    history = json.loads((tmp_path / "on" / "best" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_a_missing_teacher_is_named(csv, tmp_path, capsys):
    assert train(csv, tmp_path / "run", "--teacher", str(tmp_path / "nowhere")) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err


def test_teachers_benchmark_judges_every_combination_as_fer_eval_does(csv, teacher, tmp_path, capsys):
    """Single-view accuracy agrees with fer-eval's; a teacher paired with itself reads as it does alone."""
    from fer_engine.benchmarks import teachers
    from fer_engine.train import cli_eval

    out = tmp_path / "teachers.json"
    assert teachers.main([str(teacher), str(teacher), "--data", str(csv), "--views", "3", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [len(r["teachers"]) for r in rows] == [1, 1, 2]
    assert "mean of 3 views" in capsys.readouterr().out
    assert cli_eval.main([str(teacher), "--data", str(csv), "--split", "PublicTest", "--json",
                          str(tmp_path / "eval.json")]) == 0
    assert rows[0]["single_view"] == pytest.approx(json.loads((tmp_path / "eval.json").read_text())["accuracy"])
    assert rows[2]["single_view"] == rows[0]["single_view"]
    assert rows[2]["mean_of_3_views"] == rows[0]["mean_of_3_views"]
    assert 0 <= rows[0]["mean_of_3_views"] <= 1
    assert teachers.main([str(tmp_path / "missing"), "--data", str(csv)]) == 2


def test_online_teachers_give_the_teachers_own_probabilities_on_the_batch(teacher):
    from fer_engine.spec import LABELS
    from fer_engine.train.distill import DistillConfig, OnlineTeachers

    ckpt = load_checkpoint(teacher)
    online = OnlineTeachers(DistillConfig((str(teacher), str(teacher)), temperature=2.0, target="online"),
                            ckpt.spec, "cpu", None)
    gray = torch.rand(5, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.softmax(ckpt.module.eval()(to_pixel_values(gray, ckpt.spec)) / 2.0, 1)
    torch.testing.assert_close(online(gray), expected, rtol=1e-4, atol=1e-5)  # two equal teachers: their own answer
    assert tuple(ckpt.spec.labels) == tuple(LABELS)


def test_an_online_distilled_run_with_mixup_resumes_exactly_and_needs_its_teachers(csv, teacher, tmp_path, capsys):
    from safetensors.torch import load_file

    extra = ("--epochs", "3", "--no-test", "--teacher", str(teacher), "--distill-target", "online", "--mixup", "0.4")
    assert train(csv, tmp_path / "straight", *extra) == 0
    assert not (tmp_path / "straight" / TARGETS_FILE).exists()  # nothing precomputed
    cut = tmp_path / "cut"
    assert train(csv, cut, *extra, "--max-minutes", "0.00001") == 0
    assert cli_train.main(["--resume", str(cut), "--threads", "1"]) == 0
    straight = load_file(str(tmp_path / "straight" / "last" / "model.safetensors"))
    resumed = load_file(str(cut / "last" / "model.safetensors"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)
    # the teachers change the run
    assert train(csv, tmp_path / "alone", "--epochs", "3", "--no-test", "--mixup", "0.4") == 0
    alone = load_file(str(tmp_path / "alone" / "last" / "model.safetensors"))
    assert any(not torch.equal(alone[k], straight[k]) for k in straight if straight[k].is_floating_point())

    gone = tmp_path / "gone-teacher"
    shutil.copytree(teacher, gone)
    cut2 = tmp_path / "cut2"
    assert train(csv, cut2, "--epochs", "3", "--no-test", "--teacher", str(gone), "--distill-target", "online",
                 "--max-minutes", "0.00001") == 0
    shutil.rmtree(gone)
    capsys.readouterr()
    assert cli_train.main(["--resume", str(cut2), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "gone-teacher" in err and "must be present" in err and "Traceback" not in err
