"""Mixup in fer-train (train/mixup.py): the blend, its loss, and exact resumption."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_engine.train.augment import AUGMENT_PRESETS
from fer_engine.train.data import FerSplit
from fer_engine.train.mixup import Mix, draw_mix, mixed_cross_entropy
from fer_engine.train.trainer import BatchStream

from test_cli import assert_option_resumes_exactly_and_matters, train, train_csv  # noqa: F401  (fixture)


def test_a_blend_is_drawn_from_the_generator_alone():
    draws = [draw_mix(16, 0.4, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert draws[0].lam == draws[1].lam and torch.equal(draws[0].pair, draws[1].pair)
    assert sorted(draws[0].pair.tolist()) == list(range(16))
    lams = [draw_mix(4, 0.4, torch.Generator().manual_seed(s)).lam for s in range(200)]
    assert all(0.0 <= lam <= 1.0 for lam in lams)
    # Beta(0.4, 0.4) is U-shaped around a mean of 1/2: most weights near 0 or 1, some in between
    assert 0.4 < np.mean(lams) < 0.6 and np.mean([0.1 < lam < 0.9 for lam in lams]) > 0.2
    assert 0.0 <= draw_mix(4, 1e-9, torch.Generator().manual_seed(0)).lam <= 1.0  # draws that underflow: no NaN


def test_the_blend_and_its_loss_weigh_both_faces_alike():
    x = torch.arange(3 * 4, dtype=torch.float32).view(3, 1, 2, 2)
    mix = Mix(0.75, torch.tensor([2, 0, 1]))
    torch.testing.assert_close(mix.images(x), 0.75 * x + 0.25 * x[[2, 0, 1]])
    probs = torch.eye(3)
    torch.testing.assert_close(mix.targets(probs)[0], torch.tensor([0.75, 0.0, 0.25]))

    logits = torch.randn(3, 7, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3, 6])
    plain = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert float(mixed_cross_entropy(logits, labels, None, 0.1)) == pytest.approx(float(plain))
    assert float(mixed_cross_entropy(logits, labels, Mix(1.0, mix.pair), 0.1)) == pytest.approx(float(plain))
    swapped = F.cross_entropy(logits, labels[[2, 0, 1]], label_smoothing=0.1)
    blended = mixed_cross_entropy(logits, labels, mix, 0.1)
    assert float(blended) == pytest.approx(0.75 * float(plain) + 0.25 * float(swapped))
    assert torch.equal(mix.majority_labels(labels), labels)
    assert torch.equal(Mix(0.3, mix.pair).majority_labels(labels), labels[[2, 0, 1]])


def _stream(mixup):
    rng = np.random.default_rng(0)
    split = FerSplit(rng.integers(0, 256, (40, 48, 48), dtype=np.uint8), rng.integers(0, 7, 40))
    return BatchStream(split, 8, seed=1, augment_cfg=AUGMENT_PRESETS["strong"], workers=0, mixup=mixup)


def test_a_stream_with_mixup_blends_the_views_a_plain_stream_shows():
    plain, mixed = list(_stream(0.0).epoch(0)), list(_stream(0.4).epoch(0))
    assert len(plain) == len(mixed) == 5
    for a, b in zip(plain, mixed):
        assert a.mix is None and b.mix is not None
        assert torch.equal(a.labels, b.labels)
        torch.testing.assert_close(b.x, b.mix.images(a.x))
    assert any(0.05 < b.mix.lam < 0.95 for b in mixed)


def test_a_run_with_mixup_trains_and_resumes_exactly(train_csv, tmp_path):
    assert_option_resumes_exactly_and_matters(train_csv, tmp_path, "--mixup", "0.4")


def test_a_negative_alpha_is_refused_clearly(train_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(train_csv, tmp_path / "run", "--mixup", "-1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--mixup" in err and "Traceback" not in err
