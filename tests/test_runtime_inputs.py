"""fer-run on bad input: a user mistake is one line (`fer-run: error: ...`, exit 2) said before any work or
any output is opened, and nothing already produced is lost."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_engine.benchmarks.face_video import background, drawn_faces, make_face_video
from fer_engine.errors import FerError
from fer_engine.runtime import DetectorConfig, Pipeline, PipelineConfig, RecognizerConfig, SourceSpec
from fer_engine.runtime.cli_run import main as fer_run
from fer_engine.runtime.writers import CsvWriter, JsonlWriter, VideoWriter

HAAR = ["--detector", "haar", "--no-display"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "faces.mp4"
    make_face_video(path, drawn_faces(8), np.arange(8) % 7, frames=12, faces_per_frame=3)
    return path


def one_error_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fer-run: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---- outputs that would overwrite an input or each other ------------------------------------------------
def test_an_output_that_is_the_input_is_refused_before_anything_is_written(video, tmp_path, capfd):
    copy = tmp_path / "a.mp4"
    copy.write_bytes(video.read_bytes())
    assert fer_run(["--video", str(copy), "--output", str(copy), "-q", *HAAR]) == 2
    line = one_error_line(capfd)
    assert f"--output {copy} is the same file as --video {copy}" in line
    assert copy.read_bytes() == video.read_bytes()


@pytest.mark.parametrize("link", ["symlink", "hardlink", "dotted"])
def test_links_to_an_input_count_as_the_input(video, tmp_path, capfd, link):
    copy = tmp_path / "a.mp4"
    copy.write_bytes(video.read_bytes())
    out = tmp_path / "b.mp4"
    if link == "symlink":
        out.symlink_to(copy)
    elif link == "hardlink":
        os.link(copy, out)
    else:
        (tmp_path / "sub").mkdir()
        out = tmp_path / "sub" / ".." / "a.mp4"
    assert fer_run(["--video", str(copy), "--output", str(out), "-q", *HAAR]) == 2
    assert "is the same file as --video" in one_error_line(capfd)
    assert copy.read_bytes() == video.read_bytes()


def test_two_outputs_on_one_file_are_refused(video, tmp_path, capfd):
    same = tmp_path / "x"
    assert fer_run(["--video", str(video), "--json", str(same), "--csv", str(same), "-q", *HAAR]) == 2
    assert f"--json {same} and --csv {same} are the same file" in one_error_line(capfd)
    assert not same.exists()
    # With several sources each output gets per-source names: those must not meet either.
    assert fer_run(["--video", str(video), "--video", str(video), "--json", str(tmp_path / "r.jsonl"),
                    "--stats", str(tmp_path / "r-1.jsonl"), "-q", *HAAR]) == 2
    assert "--json" in (line := one_error_line(capfd)) and "--stats" in line


def test_the_model_is_an_input_too(video, tmp_path, capfd):
    from fer_engine.runtime.backends import resolve_model

    model = tmp_path / "model.onnx"
    model.write_bytes(resolve_model("cnn-int8").read_bytes())
    assert fer_run(["--video", str(video), "--model", str(model), "--stats", str(model), "-q", *HAAR]) == 2
    assert "--stats" in (line := one_error_line(capfd)) and "--model" in line


# ---- output paths checked before the work starts --------------------------------------------------------
@pytest.mark.parametrize("make_bad, message", [
    (lambda tmp: (tmp / "folder").mkdir() or tmp / "folder", "is a folder"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt" / "out.json", "is not a folder"),
    (lambda tmp: Path("/proc/forbidden/stats.json"), "cannot write /proc/forbidden/stats.json (--stats)"),
])
def test_every_output_path_is_checked_before_any_is_opened(video, tmp_path, capfd, make_bad, message):
    bad = make_bad(tmp_path)
    good = tmp_path / "new" / "faces.jsonl"
    assert fer_run(["--video", str(video), "--json", str(good), "--stats", str(bad), "-q", *HAAR]) == 2
    assert message in one_error_line(capfd)
    assert not good.exists() and not good.parent.exists()  # no output opened, no folder made


def test_a_video_folder_is_named_as_a_folder(tmp_path, capfd):
    assert fer_run(["--video", str(tmp_path), *HAAR]) == 2
    line = one_error_line(capfd)
    assert f"--video {tmp_path} is a folder" in line and "--images" in line


def test_a_device_given_as_a_video_is_named_as_a_device(capfd):
    assert fer_run(["--video", "/dev/null", *HAAR]) == 2
    line = one_error_line(capfd)
    assert "/dev/null is not a video file but a device" in line and "--camera" in line


# ---- numbers checked at parse time -----------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [
    ("--threads", "0"), ("--threads", "-3"), ("--threads", "two"), ("--detector-threads", "0"),
    ("--min-face", "-5"), ("--detect-every", "0"), ("--max-batch", "0"), ("--max-wait-ms", "-1"),
    ("--smooth", "1.5"), ("--smooth", "nan"), ("--detect-scale", "0"), ("--detect-scale", "9"),
    ("--reconnect-timeout", "-1"), ("--stop-timeout", "-2"), ("--width", "0"), ("--height", "-480"),
    ("--fps", "0"), ("--camera", "-1"),
])
def test_numeric_options_are_checked_when_parsed(option, value, capfd):
    with pytest.raises(SystemExit) as exit_info:
        fer_run(["--video", "never-opened.mp4", option, value])
    assert exit_info.value.code == 2
    err = capfd.readouterr().err
    assert f"fer-run: error: argument {option}: " in err and "Traceback" not in err


def test_library_errors_name_the_field_and_the_cli_names_the_option(video, monkeypatch, capfd):
    import fer_engine.runtime.cli_run as cli_run
    from fer_engine.runtime.detectors import create_detector

    with pytest.raises(FerError, match="^detect_every must be 1 or more"):
        PipelineConfig(detect_every=0)
    with pytest.raises(FerError, match="^scale must be between 0.05 and 4"):
        create_detector(DetectorConfig("haar", scale=9))
    # Past the parser (a value it cannot judge alone), the library's field comes out as the CLI's option.
    for field, value, option in (("scale", 9.0, "--detect-scale"), ("detect_every", 0, "--detect-every")):
        monkeypatch.setattr(cli_run, "pipeline_config", lambda args, display, f=field, v=value: (
            PipelineConfig(detect_every=v) if f == "detect_every" else
            PipelineConfig(recognizer=RecognizerConfig(detector=DetectorConfig("haar", scale=v)))))
        assert cli_run.main(["--video", str(video), "--no-display"]) == 2
        assert f"fer-run: error: {option} must be" in capfd.readouterr().err


# ---- write errors: one line, the other outputs closed valid ----------------------------------------------
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_a_full_disk_is_one_line_naming_the_output(video, tmp_path, capfd, option):
    others = {"--json": tmp_path / "out.jsonl", "--csv": tmp_path / "out.csv", "--stats": tmp_path / "stats.json"}
    others[option] = Path("/dev/full")
    argv = ["--video", str(video), "--output", str(tmp_path / "out.mp4"), "-q", *HAAR]
    for name, path in others.items():
        argv += [name, str(path)]
    assert fer_run(argv) == 2
    line = one_error_line(capfd)
    assert f"cannot write /dev/full ({option}): No space left on device" in line
    for name, path in others.items():
        if path.is_file():
            text = path.read_text()
            assert text == "" or text.endswith("\n")
    if option == "--json":  # it failed mid-run: the stats say what was done, and why it ended
        assert "cannot write /dev/full" in json.loads(others["--stats"].read_text())["error"]
    else:  # the CSV's header failed: before the run, so no stats either
        assert not others["--stats"].exists()


class FillingFile:
    """A file handle that fills the disk after ``room`` bytes: a partial write, then ENOSPC."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data = bytes(data)[:self.room]
        self.room -= len(data)
        return self.handle.write(data)

    def fileno(self) -> int:
        return self.handle.fileno()

    def close(self) -> None:
        self.handle.close()


def test_a_write_failing_mid_run_leaves_the_other_outputs_complete(video, tmp_path):
    config = PipelineConfig(recognizer=RecognizerConfig(detector=DetectorConfig("haar")), render=True)
    mp4, jsonl, csv_path = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "out.csv"

    def open_sinks(sources, spec):
        csv_out = CsvWriter(csv_path, spec.labels, label="faces.csv (--csv)")
        csv_out.file.handle = FillingFile(csv_out.file.handle, room=csv_out.file.size + 900)  # dies mid-row
        return {0: [VideoWriter(mp4, sources[0].fps), JsonlWriter(jsonl), csv_out]}

    pipeline = Pipeline([SourceSpec("video", str(video))], config, sinks=open_sinks)
    with pytest.raises(FerError, match=r"^cannot write faces.csv \(--csv\): No space left on device"):
        pipeline.run()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert 1 <= len(records) < 12
    assert int(cv2.VideoCapture(str(mp4)).get(cv2.CAP_PROP_FRAME_COUNT)) == len(records)
    text = csv_path.read_text()
    assert text.endswith("\n")  # the half-written row was cut off
    rows = list(csv.reader(text.splitlines()))
    assert all(len(row) == len(rows[0]) for row in rows)


# ---- photos are independent; image sequences are tracked --------------------------------------------------
def photo(face: np.ndarray) -> np.ndarray:
    image = background((320, 240), np.random.default_rng(0))
    image[60:180, 100:220] = cv2.cvtColor(cv2.resize(face, (120, 120)), cv2.COLOR_GRAY2BGR)
    return image


def test_photos_of_a_folder_are_not_tracked_or_smoothed_across(tmp_path):
    faces = drawn_faces(8)
    folder, alone = tmp_path / "photos", tmp_path / "alone"
    folder.mkdir(), alone.mkdir()
    cv2.imwrite(str(folder / "a.png"), photo(faces[0]))
    cv2.imwrite(str(folder / "b.png"), photo(faces[1]))
    cv2.imwrite(str(alone / "b.png"), photo(faces[1]))

    def faces_of(source: Path, *extra: str) -> list[dict]:
        out = tmp_path / "out.jsonl"
        assert fer_run(["--images", str(source), "--json", str(out), "--no-render", "-q", *HAAR, *extra]) == 0
        return [json.loads(line)["faces"] for line in out.read_text().splitlines()]

    folder_run, alone_run = faces_of(folder), faces_of(alone)
    assert all(len(found) == 1 for found in folder_run + alone_run)
    # b.png gives the same answer whatever photo came before it, and no face has a track.
    assert folder_run[1][0]["probs"] == alone_run[0][0]["probs"]
    assert {face["track"] for found in folder_run for face in found} == {None}
    # --image-sequence: frames of one scene, tracked and smoothed as a video.
    sequence = faces_of(folder, "--image-sequence")
    assert sequence[0][0]["track"] == sequence[1][0]["track"] is not None
    assert sequence[1][0]["probs"] != alone_run[0][0]["probs"]


# ---- a video shorter than it says -------------------------------------------------------------------------
def test_a_truncated_video_says_how_many_frames_it_had_of_how_many_declared(tmp_path, capfd, caplog):
    avi = tmp_path / "truncated.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(60):
        frame = np.full((120, 160, 3), 40 + 3 * i, np.uint8)
        cv2.putText(frame, str(i), (20, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    data = avi.read_bytes()
    avi.write_bytes(data[:len(data) // 2])
    stats = tmp_path / "stats.json"
    assert fer_run(["--video", str(avi), "--json", str(tmp_path / "out.jsonl"), "--stats", str(stats),
                    "--no-render", "-q", *HAAR]) == 0
    err = capfd.readouterr().err + caplog.text  # pytest takes the log lines over
    read = json.loads(stats.read_text())["sources"][0]
    assert read["declared_frames"] == 60 and read["ended_early"] and 20 <= read["frames"] < 40
    assert read["corrupt"] == 0  # the missing half is the end of the file, not damaged frames
    assert f"ended after {read['frames']} of its 60 declared frames" in err
    assert f"{read['frames']} frames read of 60 declared (the file ended early)" in err


def test_a_complete_video_says_nothing_about_its_length(video, tmp_path, capfd, caplog):
    stats = tmp_path / "stats.json"
    assert fer_run(["--video", str(video), "--stats", str(stats), "--no-render", "-q", *HAAR]) == 0
    assert "declared" not in capfd.readouterr().err + caplog.text
    assert json.loads(stats.read_text())["sources"][0] == {
        "name": f"video {video}", "frames": 12, "dropped": 0, "corrupt": 0, "declared_frames": 12,
        "ended_early": False}


def test_a_stats_file_that_fails_at_the_end_is_named_after_the_other_outputs_closed(video, tmp_path, capfd,
                                                                                   monkeypatch):
    stats, out = tmp_path / "stats.json", tmp_path / "out.jsonl"
    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self == stats:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    assert fer_run(["--video", str(video), "--json", str(out), "--stats", str(stats), "--no-render", "-q", *HAAR]) == 2
    err = capfd.readouterr().err
    assert f"fer-run: error: cannot write {stats} (--stats): No space left on device" in err
    assert len(out.read_text().splitlines()) == 12  # the JSON Lines were complete and closed first
