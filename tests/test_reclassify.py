"""runtime/reclassify.py: which tracked faces are classified again, and the pipeline classifying only those."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_engine.errors import FieldError
from fer_engine.runtime import Pipeline, PipelineConfig, RecognizerConfig, SourceSpec
from fer_engine.runtime.detectors import DetectorConfig
from fer_engine.runtime.reclassify import ClassificationMemory, ReclassifyPolicy
from fer_engine.runtime.tracking import crop_signatures

BOX = np.array([[100, 100, 80, 80]], np.float32)


def signature(seed: int) -> np.ndarray:
    return crop_signatures(np.random.default_rng(seed).integers(0, 255, (1, 48, 48)).astype(np.uint8))


def test_a_new_track_is_classified_at_once_and_an_unchanged_face_is_not_classified_again():
    memory = ClassificationMemory(ReclassifyPolicy("changed", max_age_ms=1000))
    face = signature(0)
    assert memory.select([1], BOX, face, 0.0).tolist() == [True]
    for t in (0.033, 0.066, 0.5, 0.9):
        assert memory.select([1], BOX + [1, -1, 0, 0], face, t).tolist() == [False]
    assert memory.select([1, 2], np.concatenate([BOX, BOX + 200]), np.concatenate([face, face]), 0.95).tolist() == \
        [False, True]


def test_a_changed_crop_triggers_a_classification_and_becomes_the_new_reference():
    memory = ClassificationMemory(ReclassifyPolicy("changed", max_age_ms=10_000))
    memory.select([1], BOX, signature(0), 0.0)
    assert memory.select([1], BOX, signature(1), 0.1).tolist() == [True]
    assert memory.select([1], BOX, signature(1), 0.2).tolist() == [False]


def test_the_age_limit_triggers_a_classification():
    memory = ClassificationMemory(ReclassifyPolicy("changed", max_age_ms=200))
    face = signature(0)
    memory.select([1], BOX, face, 0.0)
    assert memory.select([1], BOX, face, 0.15).tolist() == [False]
    assert memory.select([1], BOX, face, 0.2).tolist() == [True]
    assert memory.select([1], BOX, face, 0.3).tolist() == [False]  # the age counts from the last classification


@pytest.mark.parametrize("moved, expected", [([30, 0, 0, 0], True), ([5, 5, 0, 0], False), ([0, 0, 24, 24], True)])
def test_a_box_that_moved_or_rescaled_beyond_the_threshold_triggers_a_classification(moved, expected):
    memory = ClassificationMemory(ReclassifyPolicy("changed", max_shift=0.15, max_scale=0.15, max_age_ms=10_000))
    face = signature(0)
    memory.select([1], BOX, face, 0.0)
    assert memory.select([1], BOX + np.array(moved, np.float32), face, 0.1).tolist() == [expected]


def test_every_classifies_every_face_and_a_forgotten_track_is_new_again():
    assert ClassificationMemory(ReclassifyPolicy("every")).select([1, 2], np.concatenate([BOX, BOX]), None, 0.0).all()
    memory = ClassificationMemory(ReclassifyPolicy("changed", max_age_ms=10_000))
    memory.select([1], BOX, signature(0), 0.0)
    memory.forget([1])
    assert memory.select([1], BOX, signature(0), 0.1).tolist() == [True]


def test_a_bad_policy_names_its_field():
    with pytest.raises(FieldError, match="mode"):
        ReclassifyPolicy("sometimes")
    with pytest.raises(FieldError, match="max_age_ms"):
        ReclassifyPolicy("changed", max_age_ms=-1)


def run(video, tmp_path, name: str, **config) -> tuple[list[dict], object]:
    path = tmp_path / f"{name}.jsonl"
    from fer_engine.runtime.writers import JsonlWriter

    pipeline = Pipeline([SourceSpec("video", str(video))],
                        PipelineConfig(recognizer=RecognizerConfig(detector=DetectorConfig("haar")), render=False,
                                       **config),
                        sinks={0: [JsonlWriter(path)]})
    summary = pipeline.run()
    return [json.loads(line) for line in path.read_text().splitlines()], summary


def test_the_pipeline_classifies_only_what_the_policy_picks_and_reports_every_face(drawn_video, tmp_path):
    every, every_summary = run(drawn_video, tmp_path, "every")
    changed, summary = run(drawn_video, tmp_path, "changed",
                           reclassify=ReclassifyPolicy("changed", max_age_ms=10_000, max_crop_change=100.0,
                                                       max_shift=10.0, max_scale=10.0))
    assert summary.faces == every_summary.faces > 0
    assert every_summary.batched_faces == every_summary.faces
    tracks = {face["track"] for frame in changed for face in frame["faces"]}
    assert summary.batched_faces == len(tracks) < summary.faces  # each track classified once: when it appeared
    for frame in changed:  # not classified again: each face keeps the probabilities of its first frame
        for face in frame["faces"]:
            assert face["probs"] == next(f for r in changed for f in r["faces"] if f["track"] == face["track"])["probs"]
    # the boxes and tracks are those of the every-frame run
    assert [[(f["box"], f["track"]) for f in r["faces"]] for r in changed] == \
        [[(f["box"], f["track"]) for f in r["faces"]] for r in every]
