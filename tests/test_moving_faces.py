"""benchmarks/moving_faces.py: the generated videos of moving, turning, changing faces, and the measures."""

from __future__ import annotations

import copy
import json
import math

import cv2
import numpy as np
import pytest

from conftest import needs_fer2013, needs_yunet
from fer_engine.benchmarks.face_video import drawn_faces
from fer_engine.benchmarks.moving_faces import (
    Motion, MovingTruth, Shown, agreement, assign, compare, follow_delays, main, make_moving_face_video,
    make_one_face_video, read_jsonl_faces, read_truth, recall, truth_accuracy, write_truth,
)
from fer_engine.benchmarks.label_sweep import relabel
from fer_engine.spec import LABELS

SIZE = (320, 240)
FRAMES = 150
FPS = 30.0


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moving")
    faces = drawn_faces(32)
    truth = make_moving_face_video(folder / "moving.mp4", faces, np.arange(32) % 7, size=SIZE, frames=FRAMES,
                                   fps=FPS, people=4, seed=3)
    return folder / "moving.mp4", truth


def decode(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def records_of(truth, label_of=lambda t, shown: LABELS[shown.label], keep=lambda t, shown: True) -> list:
    """Detections exactly on the truth boxes, labelled by ``label_of(frame, shown)``."""
    return [[{"box": list(s.box), "label": label_of(t, s)} for s in frame if keep(t, s)]
            for t, frame in enumerate(truth.frames)]


def centre(shown) -> tuple[float, float]:
    x, y, w, h = shown.box
    return x + w / 2, y + h / 2


def track(truth, person) -> list:
    return [(t, s) for t, frame in enumerate(truth.frames) for s in frame if s.person == person]


# ---- the video and its truth -------------------------------------------------------------------------------
def test_video_has_the_frames_and_size_asked_for(drawn):
    path, truth = drawn
    frames = decode(path)
    assert len(frames) == len(truth.frames) == FRAMES
    assert {frame.shape for frame in frames} == {(SIZE[1], SIZE[0], 3)}
    assert truth.size == SIZE and truth.fps == FPS


def test_people_move_across_the_frame_turn_and_scale(drawn):
    _, truth = drawn
    for person in range(4):
        seen = track(truth, person)
        travelled = sum(math.dist(centre(a), centre(b)) for (t, a), (u, b) in zip(seen, seen[1:]) if u == t + 1)
        assert travelled > SIZE[0] / 3, (person, travelled)
        angles = np.array([s.angle for _, s in seen])
        assert np.abs(angles).max() <= 25 and np.ptp(angles) > 5
        steps = [abs(b.angle - a.angle) for (t, a), (u, b) in zip(seen, seen[1:]) if u == t + 1]
        assert max(steps) < 3  # smoothly
        sides = np.array([s.side for _, s in seen])
        assert 35 <= sides.min() and sides.max() <= 75 and np.ptp(sides) > 0  # 70–150 px scaled to 320×240


def test_people_leave_through_an_edge_and_come_back(tmp_path):
    truth = make_moving_face_video(tmp_path / "v.mp4", drawn_faces(8), np.arange(8) % 7, size=SIZE, frames=150,
                                   people=2, seed=1, motion=Motion(speed=(0.3, 0.33), exit_chance=1.0))
    for person in range(2):
        frames = [t for t, _ in track(truth, person)]
        assert len(frames) < 150 and frames[-1] > frames[0] + len(frames) - 1, frames  # gone, then back
        partly = [s for _, s in track(truth, person) if s.shown < 1]
        assert partly  # through the edge, not popping up


def test_expressions_change_to_other_labels_at_the_change_frame(drawn):
    _, truth = drawn
    labels = np.arange(32) % 7
    assert len(truth.changes) >= 3
    assert all(s.label == labels[s.face] for frame in truth.frames for s in frame)
    shown = {(t, s.person): s for t, frame in enumerate(truth.frames) for s in frame}
    for change in truth.changes:
        assert change.old_label != change.new_label
        before, after = shown.get((change.frame - 1, change.person)), shown.get((change.frame, change.person))
        assert before is None or (before.label, before.face) == (change.old_label, change.old_face)
        assert after is None or (after.label, after.face) == (change.new_label, change.new_face)
    holds = np.diff(sorted(c.frame for c in truth.changes if c.person == 0))
    assert holds.min() >= 0.7 * FPS - 1 and holds.max() <= 2 * FPS + 1


def test_the_truth_face_is_the_face_shown(tmp_path):
    """Upright faces (no turning) so the pasted square can be read back: outside cross-fades, the truth's face
    is the one of all the faces nearest to what the video shows in its box."""
    rng = np.random.default_rng(0)
    faces = np.stack([cv2.resize(rng.integers(0, 256, (6, 6)).astype(np.uint8), (48, 48),
                                 interpolation=cv2.INTER_CUBIC) for _ in range(14)])
    truth = make_moving_face_video(tmp_path / "v.mp4", faces, np.arange(14) % 7, size=SIZE, frames=60, people=3,
                                   seed=2, motion=Motion(turn=0.0))
    fading = {(c.person, t) for c in truth.changes for t in range(c.frame - 3, c.frame + 3) if c.fade}
    checked = 0
    for t, frame in enumerate(decode(tmp_path / "v.mp4")):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
        for s in truth.frames[t]:
            if s.shown < 1 or (s.person, t) in fading:
                continue
            x, y, w, h = s.box
            crop = cv2.resize(gray[y:y + h, x:x + w], (48, 48), interpolation=cv2.INTER_AREA)
            nearest = int(np.argmin(np.abs(faces.astype(np.float32) - crop).mean(axis=(1, 2))))
            assert nearest == s.face, (t, s)
            checked += 1
    assert checked > 60


def test_one_large_face_preset(tmp_path):
    truth = make_one_face_video(tmp_path / "v.mp4", drawn_faces(8), np.arange(8) % 7, frames=10)
    assert truth.size == (1280, 720) and {s.person for frame in truth.frames for s in frame} == {0}
    assert all(200 <= s.side <= 400 for frame in truth.frames for s in frame)
    assert decode(tmp_path / "v.mp4")[0].shape == (720, 1280, 3)


def test_truth_round_trips_through_json(drawn, tmp_path):
    _, truth = drawn
    write_truth(tmp_path / "truth.json", truth)
    assert read_truth(tmp_path / "truth.json") == truth
    assert json.loads(truth.to_json())["labels"] == list(LABELS)


# ---- the measures ------------------------------------------------------------------------------------------
def scored(truth) -> list[tuple[int, int]]:
    return [(t, s.person) for t, frame in enumerate(truth.frames) for s in frame if s.shown >= 0.6]


def test_recall_is_one_on_the_truth_boxes_and_drops_with_missed_faces(drawn):
    _, truth = drawn
    assert recall(truth, records_of(truth)) == 1.0
    # faces mostly off the frame or covered are not counted either way
    assert recall(truth, records_of(truth, keep=lambda t, s: s.shown >= 0.6)) == 1.0
    gone = set(scored(truth)[::10])
    records = records_of(truth, keep=lambda t, s: (t, s.person) not in gone)
    assert recall(truth, records) == pytest.approx(1 - len(gone) / len(scored(truth)))
    assert recall(truth, []) == 0.0


def test_one_detection_counts_for_one_face_where_boxes_overlap():
    faces = [Shown(0, (0, 0, 100, 100), 3, 0, 1.0, 0.0, 100), Shown(1, (40, 40, 100, 100), 4, 1, 1.0, 0.0, 100)]
    truth = MovingTruth((200, 200), FPS, [faces], [])
    inside_both = {"box": [55, 55, 40, 40], "label": "happy"}  # nearer the second centre
    assert recall(truth, [[inside_both]]) == 0.5
    assert recall(truth, [[inside_both, {"box": [90, 90, 40, 40], "label": "sad"}]]) == 1.0
    assert assign(truth, [[inside_both]]) == [{1: inside_both}]


def test_one_detection_counts_for_one_face(drawn):
    _, truth = drawn
    # one detection a frame, on the first person: nobody else is found through it, even where boxes overlap
    records = [[{"box": list(frame[0].box), "label": "happy"}] if frame else [] for frame in truth.frames]
    for frame, matched in zip(truth.frames, assign(truth, records)):
        assert list(matched) == [frame[0].person][:len(frame)]


def test_agreement_is_one_for_identical_runs_and_drops_with_changed_labels(drawn):
    _, truth = drawn
    reference = records_of(truth)
    same = agreement(truth, reference, copy.deepcopy(reference))
    assert same.share == 1.0 and same.compared == len(scored(truth))
    changed = set(scored(truth)[::7])
    candidate = records_of(truth, label_of=lambda t, s: "other" if (t, s.person) in changed else LABELS[s.label])
    result = agreement(truth, reference, candidate)
    assert result.compared == len(scored(truth))
    assert result.share == pytest.approx(1 - len(changed) / len(scored(truth)))
    # faces one run missed are not compared
    fewer = records_of(truth, keep=lambda t, s: (t, s.person) not in changed)
    assert agreement(truth, reference, fewer) == type(same)(1.0, len(scored(truth)) - len(changed))


def test_truth_accuracy_counts_right_labels_over_found_faces(drawn):
    _, truth = drawn
    assert truth_accuracy(truth, records_of(truth)) == 1.0
    wrong = set(scored(truth)[::5])
    candidate = records_of(truth, label_of=lambda t, s: "other" if (t, s.person) in wrong else LABELS[s.label])
    assert truth_accuracy(truth, candidate) == pytest.approx(1 - len(wrong) / len(scored(truth)))
    # a missed face is not counted as wrong
    assert truth_accuracy(truth, records_of(truth, keep=lambda t, s: (t, s.person) not in wrong)) == 1.0


def test_relabel_keeps_a_label_until_another_leads_by_the_margin():
    labels = ("a", "b")
    leads = [0.1, -0.05, -0.15, 0.05, 0.25]  # p(a) - p(b) per frame, one track
    records = [[{"box": [0, 0, 10, 10], "track": 1, "probs": {"a": (1 + d) / 2, "b": (1 - d) / 2}}] for d in leads]
    plain = [frame[0]["label"] for frame in relabel(records, labels, 0.0, 0.0)]
    assert plain == ["a", "b", "b", "a", "a"]
    held = [frame[0]["label"] for frame in relabel(records, labels, 0.0, 0.1)]
    assert held == ["a", "a", "b", "b", "a"]  # b leads by 0.15 > 0.1 at frame 2; a by 0.25 at frame 4
    smoothed = [frame[0]["label"] for frame in relabel(records, labels, 0.5, 0.0)]
    assert smoothed == ["a", "a", "b", "b", "a"]  # running average of the leads: .1, .025, -.0625, -.006, .122


@needs_yunet
@needs_fer2013
def test_label_sweep_runs_every_policy_and_writes_its_rows(tmp_path, capsys):
    from conftest import FER2013
    from fer_engine.benchmarks.label_sweep import main as sweep_main

    out = tmp_path / "sweep.json"
    assert sweep_main(["--data", str(FER2013), "--seeds", "0", "--frames", "20", "--smooth", "0,0.5", "--margin",
                       "0", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 2 * 6  # two smoothing weights, six policies
    every = [r for r in rows if r["policy"].startswith("every frame")]
    assert all(r["agreement_min"] == 1.0 and r["videos"] == 2 for r in every)
    assert "| smooth | margin |" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--smooth", "1"], ["--margin", "x"], ["--seeds", "-1"]])
def test_label_sweep_rejects_bad_settings_in_one_line(argv, capsys):
    from fer_engine.benchmarks.label_sweep import main as sweep_main

    with pytest.raises(SystemExit) as exited:
        sweep_main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and argv[0] in err


def lagged(truth, frames: int):
    """Labels that follow the truth ``frames`` late (a person's label at t is their truth label at t - frames)."""
    labels = {(t, s.person): s.label for t, frame in enumerate(truth.frames) for s in frame}
    return lambda t, s: LABELS[labels.get((max(t - frames, 0), s.person), s.label)]


@pytest.mark.parametrize("shift", [0, 1, 4])
def test_follow_delays_measure_the_lag_a_candidate_adds(drawn, shift):
    _, truth = drawn
    reference = records_of(truth, label_of=lagged(truth, 2))  # the every-frame run's own (smoothing) lag
    candidate = records_of(truth, label_of=lagged(truth, 2 + shift))
    result = follow_delays(truth, reference, candidate, FPS)
    assert result.evaluated >= 3 and result.never_followed == 0
    assert result.evaluated + result.skipped_short + result.skipped_unmatched == result.events == len(truth.changes)
    assert result.reference_ms.median == result.reference_ms.max == pytest.approx(2 / FPS * 1000, abs=0.1)
    assert result.added_ms.median == result.added_ms.max == pytest.approx(shift / FPS * 1000, abs=0.1)
    assert result.candidate_ms.max == pytest.approx((2 + shift) / FPS * 1000, abs=0.1)


def test_a_candidate_that_never_changes_its_label_is_caught(drawn):
    _, truth = drawn
    reference = records_of(truth)
    result = follow_delays(truth, reference, records_of(truth, label_of=lambda t, s: "neutral"), FPS)
    expected = sum(LABELS[d.change.new_label] != "neutral" for d in result.delays)
    assert expected > 0 and result.never_followed == expected
    assert result.candidate_ms.count == result.evaluated - expected


def test_compare_is_json_and_reads_fer_run_jsonl(drawn, tmp_path):
    _, truth = drawn
    reference = records_of(truth)
    path = tmp_path / "run.jsonl"
    # out of order, frame 2 missing (as --realtime drops frames)
    lines = [{"frame": t, "time": t / FPS, "source": 0, "faces": reference[t]} for t in (1, 0, 3)]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert read_jsonl_faces(path) == [reference[0], reference[1], [], reference[3]]
    result = compare(truth, reference, records_of(truth, label_of=lagged(truth, 3)), FPS)
    assert json.loads(json.dumps(result)) == result
    assert set(result) == {"frames", "fps", "recall", "agreement", "follow"}
    assert result["recall"]["difference_points"] == 0.0 and result["agreement"]["share"] < 1.0
    assert result["follow"]["added_ms"]["median"] == pytest.approx(100.0, abs=0.1)


def test_command_line_makes_and_compares(tmp_path, capsys):
    assert main(["make", "--out", str(tmp_path), "--size", "160x120", "--frames", "20", "--people", "2"]) == 0
    truth = read_truth(tmp_path / "truth.json")
    assert len(decode(tmp_path / "moving_faces.mp4")) == len(truth.frames) == 20
    run = tmp_path / "run.jsonl"
    run.write_text("".join(json.dumps({"frame": t, "source": 0, "faces": faces}) + "\n"
                           for t, faces in enumerate(records_of(truth))))
    capsys.readouterr()
    assert main(["compare", "--truth", str(tmp_path / "truth.json"), "--reference", str(run),
                 "--candidate", str(run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["recall"]["candidate"] == 1.0 and printed["agreement"]["share"] == 1.0


# ---- the shipped detector on FER2013 faces -----------------------------------------------------------------
def iou(a, b) -> float:
    width = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return width * height / (a[2] * a[3] + b[2] * b[3] - width * height)


@pytest.mark.slow
@needs_fer2013
def test_fer_run_finds_the_moving_turned_faces(publictest, tmp_path):
    """YuNet at the default --detect-scale finds about 70–85 % of FER2013 faces of 70–150 px, turned or not
    (some FER2013 crops it never finds; RESULTS.md: 83 % of upright ones in cells), so the floor is 0.6, not
    0.9. Matched detections overlap their truth boxes: the truth is where the faces are."""
    from fer_engine.runtime.cli_run import main as fer_run

    truth = make_moving_face_video(tmp_path / "v.mp4", publictest.images, publictest.labels, frames=150, seed=0)
    assert fer_run(["--video", str(tmp_path / "v.mp4"), "--json", str(tmp_path / "run.jsonl"), "--no-render",
                    "-q"]) == 0
    records = read_jsonl_faces(tmp_path / "run.jsonl")
    assert len(records) == 150
    assert recall(truth, records) >= 0.6
    overlaps = [iou(s.box, found[s.person]["box"]) for frame, found in zip(truth.frames, assign(truth, records))
                for s in frame if s.person in found]
    assert np.median(overlaps) > 0.6
    assert any(abs(s.angle) > 15 for frame, found in zip(truth.frames, assign(truth, records))
               for s in frame if s.person in found)
