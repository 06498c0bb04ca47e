"""The jitter-consistency term of fer-train (train/consistency.py)."""

import math

import numpy as np
import pytest
import torch

from fer_engine.train.augment import AUGMENT_PRESETS, jitter
from fer_engine.train.consistency import jensen_shannon
from fer_engine.train.data import FerSplit
from fer_engine.train.trainer import BatchStream

from test_cli import assert_option_resumes_exactly_and_matters, train_csv  # noqa: F401  (fixture)


def test_jensen_shannon_is_zero_for_equal_predictions_and_symmetric():
    a = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    b = torch.tensor([[-1.0, 2.0, 0.0], [3.0, 0.5, 0.5]])
    assert float(jensen_shannon(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(jensen_shannon(a, a + 5.0)) == pytest.approx(0.0, abs=1e-6)  # same softmax
    assert float(jensen_shannon(a, b)) == pytest.approx(float(jensen_shannon(b, a)))
    assert 0 < float(jensen_shannon(a, b)) < math.log(2)
    sure = torch.tensor([[50.0, 0.0]])
    assert float(jensen_shannon(sure, sure.flip(1))) == pytest.approx(math.log(2), rel=1e-3)


def test_jitter_moves_a_face_by_a_pixel_or_two_not_more():
    gen = torch.Generator().manual_seed(0)
    faces = torch.zeros(64, 1, 48, 48)
    faces[:, :, 20:28, 20:28] = 1.0  # a bright square in the middle
    moved = jitter(faces, gen)
    assert not torch.equal(moved, faces)
    rows, cols = torch.arange(48.0).view(1, 48, 1), torch.arange(48.0).view(1, 1, 48)
    mass = moved[:, 0].sum((1, 2))
    centre_y = (moved[:, 0] * rows).sum((1, 2)) / mass
    centre_x = (moved[:, 0] * cols).sum((1, 2)) / mass
    offset = torch.maximum((centre_y - 23.5).abs(), (centre_x - 23.5).abs())
    assert offset.max() <= 2.5 and offset.mean() > 0.3


def _stream(jittered):
    rng = np.random.default_rng(0)
    split = FerSplit(rng.integers(0, 256, (40, 48, 48), dtype=np.uint8), rng.integers(0, 7, 40))
    return BatchStream(split, 8, seed=1, augment_cfg=AUGMENT_PRESETS["strong"], workers=0, jittered=jittered)


def test_a_stream_with_jittered_copies_keeps_the_views_of_one_without():
    plain = list(_stream(False).epoch(0))
    paired = list(_stream(True).epoch(0))
    assert len(plain) == len(paired) == 5
    for a, b in zip(plain, paired):
        assert a.jittered is None and b.jittered is not None and b.jittered.shape == b.x.shape
        assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
        assert 0 < float((b.jittered - b.x).abs().mean()) < 0.2


def test_a_run_with_the_term_trains_and_resumes_exactly(train_csv, tmp_path):
    assert_option_resumes_exactly_and_matters(train_csv, tmp_path, "--consistency", "1")
