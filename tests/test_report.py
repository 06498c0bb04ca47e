"""fer-report: a fer-run JSON Lines file as a PNG, a CSV/Markdown table and a self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import json
import re
import struct
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, import_blocker
from fer_engine.runtime import report
from fer_engine.runtime.cli_report import main as fer_report
from fer_engine.spec import LABELS

FPS = 10


def probs(label: str) -> dict:
    values = {name: 0.05 for name in LABELS}
    values[label] = 0.7
    return values


def face(track, label: str) -> dict:
    return {"box": [10, 20, 64, 64], "score": 0.93, "track": track, "label": label, "probs": probs(label)}


def write_run(path: Path, records: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def two_tracks() -> list[dict]:
    """50 frames at 10 frames/s (0.0 to 4.9 s). Track 1 in frames 0-39: happy for 3 s, then sad for 1 s.
    Track 2 in frames 20-49: neutral for 0.5 s, then surprise for 2.5 s."""
    records = []
    for i in range(50):
        faces = []
        if i < 40:
            faces.append(face(1, "happy" if i < 30 else "sad"))
        if i >= 20:
            faces.append(face(2, "neutral" if i < 25 else "surprise"))
        records.append({"frame": i, "time": round(i / FPS, 4), "source": 0, "faces": faces})
    return records


@pytest.fixture
def run_file(tmp_path) -> Path:
    return write_run(tmp_path / "run.jsonl", two_tracks())


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_a_run_becomes_png_csv_markdown_and_html_beside_it(run_file, capfd):
    assert fer_report([str(run_file)]) == 0
    folder = run_file.parent / "run-report"
    assert sorted(p.name for p in folder.iterdir()) == ["run.csv", "run.html", "run.md", "run.png"]
    err = capfd.readouterr().err
    assert "50 frames (0.0–5.0 s): 70 faces in 2 tracks" in err and f"wrote {folder / 'run.html'}" in err

    png = (folder / "run.png").read_bytes()
    width, height = png_size(png)
    assert 800 <= width <= 2000 and 400 <= height <= 3000, (width, height)
    assert 10_000 < len(png) < 1_000_000

    rows = list(csv.DictReader((folder / "run.csv").open()))
    assert [(r["source"], r["track"], r["first_s"], r["last_s"], r["duration_s"], r["frames"], r["dominant"])
            for r in rows] == [("0", "1", "0.000", "3.900", "4.000", "40", "happy"),
                               ("0", "2", "2.000", "4.900", "3.000", "30", "surprise")]
    shares = [{name: float(r[f"share_{name}"]) for name in LABELS} for r in rows]
    assert shares[0] == {**dict.fromkeys(LABELS, 0.0), "happy": 0.75, "sad": 0.25}
    assert shares[1] == pytest.approx({**dict.fromkeys(LABELS, 0.0), "neutral": 1 / 6, "surprise": 5 / 6}, abs=1e-4)

    md = (folder / "run.md").read_text()
    assert "| source | track | first (s) | last (s) | duration (s) | frames | dominant | angry % |" in md
    assert "| 0 | 1 | 0.00 | 3.90 | 4.00 | 40 | **happy** | 0 | 0 | 0 | 75 | 25 | 0 | 0 |" in md
    assert "| 0 | 2 | 2.00 | 4.90 | 3.00 | 30 | **surprise** | 0 | 0 | 0 | 0 | 0 | 83 | 17 |" in md
    assert "![emotions over time per track](run.png)" in md

    page = (folder / "run.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I), "the page fetches something"
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == png
    table = page[page.index("<table"):page.index("</table>")]
    assert table.count("<tr>") == 4  # two header rows, two tracks
    assert "<td>3.90</td><td>4.00</td><td>40</td>" in table and "surprise</td>" in table


def test_out_and_format_choose_the_folder_and_the_files(run_file, tmp_path):
    out = tmp_path / "deep" / "report"
    assert fer_report([str(run_file), "--out", str(out), "--format", "csv, MD", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["run.csv", "run.md"]
    assert "![" not in (out / "run.md").read_text()  # no picture to point at
    assert not (tmp_path / "run-report").exists()


def test_the_picture_shows_the_longest_tracks_and_the_table_all(run_file):
    data = report.read_run(run_file)
    tracks = report.summarize(data)
    assert [t.track for t in report.chosen_for_plot(tracks, 1)] == [1]
    assert [t.track for t in report.chosen_for_plot(tracks, 5)] == [1, 2]
    png = report.render_png(data, tracks, max_panels=1)
    assert png_size(png)[1] < png_size(report.render_png(data, tracks, max_panels=2))[1]


def test_a_track_missing_frames_counts_only_its_time_on_screen(tmp_path):
    records = two_tracks()
    for record in records[30:35]:  # track 1 not detected for 0.5 s
        record["faces"] = [f for f in record["faces"] if f["track"] != 1]
    t1 = report.summarize(report.read_run(write_run(tmp_path / "gap.jsonl", records)))[0]
    assert (t1.track, t1.frames, round(t1.duration, 6)) == (1, 35, 4.0)  # first to last, the gap included
    assert t1.shares["happy"] == pytest.approx(3 / 3.5) and t1.shares["sad"] == pytest.approx(0.5 / 3.5)
    x, y = report._steps(t1.faces, 0.1)
    assert np.isnan(y).any(axis=0).sum() == 2  # the areas break across the gap instead of bridging it


def test_labels_come_in_canonical_order_and_a_face_without_one_gets_its_most_probable(tmp_path):
    records = [{"frame": 0, "time": 0.0, "faces": [{"track": 1, "probs": {"sad": 0.2, "happy": 0.8}}]},
               {"frame": 1, "time": 0.1, "faces": [{"track": 1, "label": "sad", "probs": {"happy": 0.4, "sad": 0.6}}]},
               {"frame": 2, "time": 0.2, "faces": [{"track": 1, "probs": {"happy": 0.1, "sad": 0.1, "bored": 0.8}}]}]
    data = report.read_run(write_run(tmp_path / "odd.jsonl", records))
    assert data.labels == ("happy", "sad", "bored")  # FER2013's order first, other models' labels after
    faces = data.tracks[(0, 1)]
    assert [data.labels[i] for i in faces.labels] == ["happy", "sad", "bored"]
    np.testing.assert_allclose(faces.probs, [[0.8, 0.2, 0], [0.4, 0.6, 0], [0.1, 0.1, 0.8]], atol=1e-6)
    (row,) = report.summarize(data)
    assert row.shares == pytest.approx({"happy": 1 / 3, "sad": 1 / 3, "bored": 1 / 3})
    assert row.dominant == "happy"  # a tie goes to the first in label order
    assert report.color("bored", data.labels) not in report.COLORS.values()


def test_a_long_track_is_averaged_into_fewer_steps_than_pixels_for_the_picture(tmp_path):
    records = [{"frame": i, "time": i / 30, "source": 0, "faces": [face(1, "happy" if i < 6000 else "sad")]}
               for i in range(9000)]
    data = report.read_run(write_run(tmp_path / "long.jsonl", records))
    (row,) = report.summarize(data)
    assert (row.frames, round(row.duration, 6), row.shares["happy"]) == (9000, 300.0, pytest.approx(2 / 3))
    x, y = report._steps(row.faces, data.intervals[0])
    assert len(x) == 3000 and y.shape == (len(LABELS), 3000) and not np.isnan(y).any()
    happy = LABELS.index("happy")
    assert y[happy, 0] == pytest.approx(0.7) and y[happy, -1] == pytest.approx(0.05)
    np.testing.assert_allclose(y.sum(axis=0), 1.0, atol=1e-5)


def test_images_without_tracks_make_one_untracked_row_per_source(tmp_path):
    records = [{"frame": i, "time": 0.0, "source": 0, "file": f"{i}.jpg", "faces": [face(None, label)]}
               for i, label in enumerate(["happy", "happy", "sad"])]
    run = write_run(tmp_path / "photos.jsonl", records)
    assert fer_report([str(run), "-q"]) == 0
    rows = list(csv.DictReader((tmp_path / "photos-report" / "photos.csv").open()))
    assert [(r["track"], r["first_s"], r["frames"], r["dominant"], r["share_happy"]) for r in rows] == \
        [("", "", "3", "happy", "0.6667")]
    assert "| 0 | untracked |  |  |  | 3 | **happy** |" in (tmp_path / "photos-report" / "photos.md").read_text()


def test_a_run_without_faces_is_a_report_that_says_so(tmp_path, capfd):
    run = write_run(tmp_path / "empty-room.jsonl",
                    [{"frame": i, "time": i / 30, "source": 0, "faces": []} for i in range(90)])
    assert fer_report([str(run)]) == 0
    folder = tmp_path / "empty-room-report"
    assert "90 frames (0.0–3.0 s): no faces were found" in capfd.readouterr().err
    assert (folder / "empty-room.csv").read_text().splitlines() == [
        "source,track,first_s,last_s,duration_s,frames,dominant"]
    assert "No faces were found" in (folder / "empty-room.md").read_text()
    assert "No faces were found" in (folder / "empty-room.html").read_text()
    png_size((folder / "empty-room.png").read_bytes())


def test_a_last_line_cut_short_by_an_interrupted_run_is_skipped_with_a_warning(tmp_path, capfd):
    run = write_run(tmp_path / "stopped.jsonl", two_tracks(), tail='{"frame": 50, "time": 5.0, "source": 0, "fa')
    assert fer_report([str(run), "--format", "csv"]) == 0
    err = capfd.readouterr().err
    assert f"fer-report: warning: {run} line 51 is cut short (an interrupted run?): skipped" in err
    rows = list(csv.DictReader((tmp_path / "stopped-report" / "stopped.csv").open()))
    assert [r["frames"] for r in rows] == ["40", "30"]


def _lines(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.jsonl", "missing.jsonl: file not found"),
    (lambda d: d, "is a folder: give the JSON Lines file that fer-run --json wrote"),
    (lambda d: _write(d / "empty.jsonl", ""), "empty.jsonl is empty: no frames to report"),
    (lambda d: _write(d / "blank.jsonl", "\n \n"), "blank.jsonl is empty"),
    (lambda d: _write(d / "bad.jsonl", _lines(two_tracks()[:2]) + "{oops\n" + _lines(two_tracks()[2:4])),
     "bad.jsonl line 3 is not JSON (Expecting property name enclosed in double quotes): {oops"),
    (lambda d: _write(d / "out.csv", "frame,time,source\n0,0.0,0\n"),
     "out.csv line 1 is not JSON (Expecting value): frame,time,source (is this fer-run's --json output?)"),
    (lambda d: _write(d / "stats.jsonl", '{"frames": 12, "faces": 30}\n'),
     "stats.jsonl line 1 is not a fer-run frame record"),
    (lambda d: _write(d / "time.jsonl", '{"frame": 0, "time": "soon", "faces": []}\n'),
     'time.jsonl line 1: "time" must be a number of seconds'),
    (lambda d: _write(d / "face.jsonl", '{"frame": 0, "time": 0, "faces": [{"box": [1, 2, 3, 4]}]}\n'),
     'face.jsonl line 1: a face without "probs"'),
    (lambda d: _write(d / "binary.jsonl", b"\x89PNG\r\n\x1a\n\xff\xfe"), "binary.jsonl is not a text file"),
])
def test_bad_input_is_one_line_naming_the_file_and_line(make, message, tmp_path, capfd):
    (tmp_path / "in").mkdir()
    path = make(tmp_path / "in")
    assert fer_report([str(path)]) == 2
    err = capfd.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("fer-report: error: ") and "Traceback" not in err
    assert not list(tmp_path.glob("**/*-report")), "nothing is written for a run that cannot be read"


def _write(path: Path, content) -> Path:
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


@pytest.mark.parametrize("out, message", [
    ("/proc/forbidden/report", "--out /proc/forbidden/report: cannot write in /proc"),
    ("{run}", "is a file, not a folder"),
    ("{tmp}/afile/report", "is a file, so no folder can be made there"),
])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_work(out, message, run_file, tmp_path, capfd,
                                                                             monkeypatch):
    (tmp_path / "afile").write_text("x")
    read = []
    monkeypatch.setattr(report, "read_run", lambda *a: read.append(a))
    assert fer_report([str(run_file), "--out", out.format(run=run_file, tmp=tmp_path)]) == 2
    err = capfd.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not read, "the input was read before the output was checked"


def test_a_report_file_in_the_way_as_a_folder_is_refused(run_file, tmp_path, capfd):
    (tmp_path / "report" / "run.png").mkdir(parents=True)
    assert fer_report([str(run_file), "--out", str(tmp_path / "report")]) == 2
    assert "run.png is a folder" in capfd.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--max-tracks", "0"], "argument --max-tracks: 0 is out of range; it must be a whole number of 1 or more"),
    (["--max-tracks", "many"], "argument --max-tracks: 'many' is not a number"),
    (["--format", "pdf"], "argument --format: 'pdf' is not one of png, csv, md, html."),
    (["--format", "htm"], "Did you mean 'html'?"),
    (["--format", ","], "argument --format: ',' is empty"),
    (["--dpi", "5000"], "argument --dpi: 5000 is out of range"),
])
def test_bad_options_are_refused_at_parse_time(argv, message, run_file, capfd):
    with pytest.raises(SystemExit) as stop:
        fer_report([str(run_file), *argv])
    assert stop.value.code == 2
    assert message in capfd.readouterr().err


def test_without_matplotlib_the_tables_work_and_the_picture_says_what_to_install(run_file, tmp_path):
    """The base install (a Jetson) has no matplotlib; fer-report is in the runtime, which never imports torch."""
    script = import_blocker("matplotlib", "torch", "transformers") + textwrap.dedent(f"""
        from fer_engine.runtime.cli_report import main
        assert main([{str(run_file)!r}, "--out", {str(tmp_path / "tables")!r}, "--format", "csv,md", "-q"]) == 0
        code = main([{str(run_file)!r}, "--out", {str(tmp_path / "all")!r}])
        assert "torch" not in sys.modules and "matplotlib" not in sys.modules
        print("exit", code)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.strip() == "exit 2", result.stderr
    assert result.stderr.strip() == ('fer-report: error: --format png,html needs matplotlib, which is not installed in '
                                     'this Python: pip install "fer-engine[report]" (from a clone: pip install -e '
                                     '".[report]"), or ask for --format csv,md')
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["run.csv", "run.md"]
    assert not (tmp_path / "all").exists()


def test_the_fer_report_script_is_installed(run_file, tmp_path):
    script = Path(sys.executable).with_name("fer-report")
    if not script.exists():
        pytest.skip("fer-report is not installed in this environment (pip install -e .)")
    result = subprocess.run([str(script), str(run_file), "--out", str(tmp_path / "r"), "--format", "md"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r" / "run.md").is_file()


def test_a_real_fer_run_becomes_a_report(tmp_path):
    from fer_engine.benchmarks.face_video import drawn_faces, make_face_video
    from fer_engine.runtime.cli_run import main as fer_run

    video = tmp_path / "drawn.mp4"
    make_face_video(video, drawn_faces(8), np.arange(8) % 7, frames=12, faces_per_frame=3)
    run = tmp_path / "drawn.jsonl"
    assert fer_run(["--video", str(video), "--json", str(run), "--detector", "haar", "--no-render", "--no-display",
                    "-q"]) == 0
    records = [json.loads(line) for line in run.read_text().splitlines()]
    labels = {}
    for record in records:
        for f in record["faces"]:
            labels.setdefault(f["track"], []).append(f["label"])
    assert labels, "the detector found no faces in the drawn video"

    assert fer_report([str(run), "-q"]) == 0
    folder = tmp_path / "drawn-report"
    rows = list(csv.DictReader((folder / "drawn.csv").open()))
    assert [int(r["track"]) for r in rows] == sorted(labels)
    for row in rows:
        track_labels = Counter(labels[int(row["track"])])
        assert int(row["frames"]) == len(labels[int(row["track"])])
        assert track_labels[row["dominant"]] == max(track_labels.values())
        assert sum(float(row[f"share_{name}"]) for name in LABELS) == pytest.approx(1, abs=1e-3)
    width, height = png_size((folder / "drawn.png").read_bytes())
    assert width >= 800 and height >= 300
    assert "data:image/png;base64," in (folder / "drawn.html").read_text()
