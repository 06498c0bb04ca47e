"""End-to-end speed of the fer-run pipeline on a video, against baselines measured in the same run.

Rows: decode only (the ceiling), a seed-style serial loop (Haar with the seed's settings, then one
classifier call per face), and the pipeline in its main configurations. With FER2013 at hand the video
is generated from PublicTest faces pasted at known places, so each row also reports how many of the
pasted faces were found (recall) and how many of those got their FER2013 label (accuracy).

    python -m fer_engine.benchmarks.pipeline --data ../shared/data/fer2013/fer2013.csv.gz
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_engine.cli import add_verbose, non_negative_float, positive_int, run_cli
from fer_engine.runtime import DetectorConfig, Pipeline, PipelineConfig, Recognizer, RecognizerConfig, SourceSpec
from fer_engine.runtime.reclassify import ReclassifyPolicy
from fer_engine.runtime.crops import crop_face, to_gray
from fer_engine.runtime.preprocess import faces_to_pixel_values
from fer_engine.runtime.writers import JsonlWriter, VideoWriter

from .face_video import drawn_faces, make_face_video
from .peers import FER_VIDEO, fer_package_video

PROG = "python -m fer_engine.benchmarks.pipeline"


@dataclass
class Row:
    name: str
    fps: float
    frames: int
    recall: float | None = None
    accuracy: float | None = None
    latency_ms: dict = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def decode_only(video: Path) -> Row:
    capture = cv2.VideoCapture(str(video))
    frames, started = 0, time.perf_counter()
    while capture.read()[0]:
        frames += 1
    return Row("decode only", frames / (time.perf_counter() - started), frames)


def seed_loop(video: Path, recognizer: Recognizer) -> tuple[Row, list[list[dict]]]:
    """The seed project's demo without its display wait: Haar (scaleFactor 1.3, minNeighbors 5) on the full
    frame, then one classifier call per face."""
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    capture = cv2.VideoCapture(str(video))
    spec, labels = recognizer.spec, recognizer.spec.labels
    records, started = [], time.perf_counter()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        gray = to_gray(frame)
        faces = []
        for x, y, w, h in cascade.detectMultiScale(gray, 1.3, 5):
            crop = crop_face(gray, (x, y, w, h), spec.image_size)
            logits = recognizer.classifier.predict_logits(faces_to_pixel_values(crop[None], spec))[0]
            faces.append({"box": [int(x), int(y), int(w), int(h)], "label": labels[int(np.argmax(logits))]})
        records.append(faces)
    seconds = time.perf_counter() - started
    return Row("seed-style serial loop (Haar 1.3/5, one call per face)", len(records) / seconds, len(records)), records


def run_pipeline(video: Path, config: PipelineConfig, out_dir: Path, render_video: bool,
                 recognizer: Recognizer | None = None, summary_out: list | None = None) -> tuple[Row, list[list[dict]]]:
    records: list[list[dict]] = []

    def open_sinks(sources, spec) -> dict[int, list]:
        sinks = [JsonlWriter(out_dir / "bench.jsonl")]
        if render_video:
            sinks.append(VideoWriter(out_dir / "bench.mp4", sources[0].fps))
        return {0: sinks}

    pipeline = Pipeline([SourceSpec("video", str(video))], config, sinks=open_sinks, recognizer=recognizer,
                        on_result=lambda result: records.append([f.to_dict() for f in result.faces]))
    summary = pipeline.run()
    if summary_out is not None:
        summary_out.append(summary)
    return Row("", summary.fps, summary.frames, latency_ms=summary.latency_ms), records


def score(records: list[list[dict]], truth, labels) -> tuple[float, float]:
    found = correct = total = 0
    for faces, pasted in zip(records, truth):
        total += len(pasted)
        for t in pasted:
            tx, ty, side, _ = t.box
            for face in faces:
                x, y, w, h = face["box"]
                if tx <= x + w / 2 <= tx + side and ty <= y + h / 2 <= ty + side:
                    found += 1
                    correct += face["label"] == labels[t.label]
                    break
    return found / max(total, 1), correct / max(found, 1)


CONFIGS = [
    # name, render to a video file, config changes
    ("fer-run --json --no-render (YuNet)", False, {}),
    ("fer-run --json --no-render --detector yunet-opencv", False, {"detector": "yunet-opencv"}),
    ("fer-run --output --json (YuNet, rendering)", True, {"render": True}),
    ("fer-run --json --no-render --detect-every 2", False, {"detect_every": 2}),
    ("fer-run --json --no-render --max-batch 8", False, {"max_batch": 8}),
    ("fer-run --json --no-render --align", False, {"align": True}),
    ("fer-run --json --no-render --detector haar", False, {"detector": "haar"}),
]


def config_for(base: RecognizerConfig, changes: dict) -> PipelineConfig:
    recognizer = base
    if "align" in changes:
        recognizer = RecognizerConfig(**{**recognizer.__dict__, "align": changes["align"]})
    if "detector" in changes:
        recognizer = RecognizerConfig(**{**recognizer.__dict__, "detector": DetectorConfig(changes["detector"])})
    rest = {k: v for k, v in changes.items() if k not in ("align", "detector")}
    return PipelineConfig(recognizer=recognizer, render=rest.pop("render", False), smooth=0.0, **rest)


def run(video: Path, truth, model: str | None, threads: int | None, out_dir: Path, quick: bool = False,
        rows: list[Row] | None = None) -> list[Row]:
    """Every row on ``video``, appended to ``rows`` as each is measured (a stopped run keeps those done)."""
    rows = [] if rows is None else rows
    base = RecognizerConfig(model=model, threads=threads)
    recognizer = Recognizer(base)
    labels = recognizer.spec.labels
    rows.append(decode_only(video))
    seed_row, records = seed_loop(video, recognizer)
    if truth is not None:
        seed_row.recall, seed_row.accuracy = score(records, truth, labels)
    rows.append(seed_row)
    for name, render_video, changes in CONFIGS[:2] if quick else CONFIGS:
        # The pipeline builds its own recognizer: it splits the cores between detector and classifier,
        # where the serial seed loop above gives the classifier all of them.
        row, records = run_pipeline(video, config_for(base, changes), out_dir, render_video)
        row.name = name
        if truth is not None:
            row.recall, row.accuracy = score(records, truth, labels)
        rows.append(row)
    return rows


def one_face_video(path: Path, faces: np.ndarray, labels: np.ndarray, frames: int = 300) -> list:
    return make_face_video(path, faces, labels, frames=frames, size=(1280, 720), faces_per_frame=1,
                           face_side=(200, 240), hold=30)


def markdown(rows: list[Row], title: str) -> str:
    seed = next((r.fps for r in rows if r.name.startswith("seed")), None)
    lines = [f"### {title}", "", "| configuration | frames/s | vs seed loop | found | label accuracy | p50 / p99 end-to-end ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = f"{r.fps / seed:.1f}×" if seed and not r.name.startswith(("seed", "decode")) else ""
        e2e = r.latency_ms.get("end-to-end")
        lat = f"{e2e['p50']:.1f} / {e2e['p99']:.1f}" if e2e else ""
        found = f"{r.recall:.1%}" if r.recall is not None else ""
        acc = f"{r.accuracy:.1%}" if r.accuracy is not None else ""
        lines.append(f"| {r.name} | {r.fps:,.1f} | {ratio} | {found} | {acc} | {lat} |")
    return "\n".join(lines)


def bench(data: str | None, video: str | None, model: str | None, threads: int | None, quick: bool = False,
          out=print, frames: int = 300, tilt: float = 0.0, results: dict | None = None,
          skip_bad_rows: bool = False) -> dict:
    """Runs every row on a generated (or given) video and prints Markdown tables through ``out``. ``results``
    (returned) is filled as the rows are measured, so a run stopped by a signal keeps the rows done."""
    detector_threads, classifier_threads = PipelineConfig(recognizer=RecognizerConfig(threads=threads)).thread_split()
    out(f"fer-run rows: {detector_threads} detection worker(s) (+{classifier_threads} spare), "
        f"classifier {classifier_threads} onnxruntime "
        f"thread(s) of {os.cpu_count()} cores; the seed-style loop's classifier: onnxruntime's default\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        faces, labels = _faces(data, skip_bad_rows)
        results = {} if results is None else results
        if video:
            path, truth = Path(video), None
        else:
            path = tmp / "five_faces_640x480.mp4"
            truth = make_face_video(path, faces, labels, frames=frames, hold=10, tilt=tilt)
        rows: list[Row] = []
        try:
            run(path, truth, model, threads, tmp, quick, rows)
        finally:
            results["five_faces"] = [r.to_dict() for r in rows]
        out(markdown(rows, f"{path.name}: {rows[0].frames} frames" + (f", faces tilted up to ±{tilt:g}°" if tilt else "")))
        if not video and not quick:
            big = tmp / "one_face_1280x720.mp4"
            truth = one_face_video(big, faces, labels, frames)
            config = config_for(RecognizerConfig(model=model, threads=threads), {})
            recognizer = Recognizer(config.recognizer)
            row, records = run_pipeline(big, config, tmp, False)
            row.name = "fer-run --json --no-render, one face at 1280×720"
            row.recall, row.accuracy = score(records, truth, recognizer.spec.labels)
            out("\n" + markdown([decode_only(big), row], f"{big.name}: {row.frames} frames"))
            results["one_face_720p"] = [row.to_dict()]
    return results


# The re-classification policies and detection between detections (issue 16), each against the every-frame run
# on videos of moving, turning, changing faces: name, PipelineConfig changes (fer-run's defaults otherwise).
POLICIES = [
    ("every frame: detect + classify (fer-run's default)", {}),
    ("--reclassify changed", {"reclassify": ReclassifyPolicy("changed")}),
    ("--reclassify changed --reclassify-age 100", {"reclassify": ReclassifyPolicy("changed", max_age_ms=100)}),
    ("--detect-every 2", {"detect_every": 2}),
    ("--detect-every 3", {"detect_every": 3}),
    ("--detect-every 3 --reclassify changed", {"detect_every": 3, "reclassify": ReclassifyPolicy("changed")}),
]
# Not a policy: the default again with the detector's input 4 % larger. Its boxes are as good as the default's
# and differ by a pixel or two, so its agreement with the every-frame run is the floor that the classifier's
# sensitivity to framing sets for any run whose crops are not the reference's own (benchmarks/RESULTS.md).
FRAMING_NOISE = ("every frame, --detect-scale 0.52: framing noise, not a policy", {"detect_scale": 0.52})


@dataclass
class PolicyRow:
    name: str
    fps: float
    frames: int
    recall: float | None
    agreement: float | None  # label agreement with the every-frame run, on faces both found
    follow_added_ms: dict  # lag added to the every-frame run's in following a changed expression
    classified: float  # share of faces classified
    detected: float  # share of frames detected
    latency_ms: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def policy_config(model: str | None, threads: int | None, changes: dict) -> PipelineConfig:
    """fer-run's defaults, ``--json --no-render``, with a policy's changes (``detect_scale`` goes to the
    detector, the rest to PipelineConfig)."""
    changes = dict(changes)
    detector = DetectorConfig()
    if "detect_scale" in changes:
        detector = dataclasses.replace(detector, scale=changes.pop("detect_scale"))
    recognizer = RecognizerConfig(model=model, threads=threads, detector=detector)
    return PipelineConfig(recognizer=recognizer, render=False, **changes)


def policy_rows(video: Path, truth, model: str | None, threads: int | None, out_dir: Path,
                policies=POLICIES, rows: list | None = None) -> list[list[dict]]:
    """Each policy on ``video`` (``--json --no-render``, smoothing as fer-run's default), appended to ``rows``,
    compared with the first (every frame) by the measures of benchmarks/moving_faces.py; returns the first's
    records, the reference for other runs on the video."""
    from .moving_faces import compare

    rows = [] if rows is None else rows
    reference = None
    for name, changes in policies:
        config = policy_config(model, threads, changes)
        summaries: list = []
        row, records = run_pipeline(video, config, out_dir, False, summary_out=summaries)
        summary = summaries[0]
        reference = reference if reference is not None else records
        measures = compare(truth, reference, records) if truth is not None else None
        rows.append(PolicyRow(
            name, row.fps, row.frames,
            recall=measures["recall"]["candidate"] if measures else None,
            agreement=measures["agreement"]["share"] if measures else None,
            follow_added_ms=measures["follow"]["added_ms"] if measures else {},
            classified=summary.batched_faces / max(summary.faces, 1),
            detected=summary.detected_frames / max(summary.frames, 1), latency_ms=row.latency_ms))
    return reference


def realtime_row(video: Path, model: str | None, threads: int | None, out_dir: Path) -> Row:
    """``--realtime`` on a 30 frames/s file: frames come at their pace, so end-to-end latency is what a live
    camera would see."""
    config = PipelineConfig(recognizer=RecognizerConfig(model=model, threads=threads), render=False, realtime=True)
    row, _ = run_pipeline(video, config, out_dir, False)
    row.name = "fer-run --realtime --json --no-render (frames at the video's rate)"
    return row


def policy_markdown(rows: list[PolicyRow], title: str) -> str:
    lines = [f"### {title}", "",
             "| configuration | frames/s | found | agreement with every frame | follow: added lag p90 / max ms "
             "| faces classified | frames detected | p99 end-to-end ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lag = r.follow_added_ms
        follow = f"{lag['p90']:.0f} / {lag['max']:.0f}" if lag and lag.get("count") else ""
        e2e = r.latency_ms.get("end-to-end")
        p99 = f"{e2e['p99']:.0f}" if e2e else ""
        lines.append(f"| {r.name} | {r.fps:,.1f} | {_share(r.recall)} | {_share(r.agreement)} | {follow} "
                     f"| {r.classified:.0%} | {r.detected:.0%} | {p99} |")
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else ""


def bench_policies(data: str | None, model: str | None, threads: int | None, frames: int = 300, out=print,
                   results: dict | None = None, skip_bad_rows: bool = False, seed: int = 0,
                   quick: bool = False) -> dict:
    """The policies on two generated videos of moving, turning, changing faces: five at 640×480 and one at
    1280×720 (PublicTest faces with FER2013, drawn faces without), then ``--realtime`` latency. ``quick``: the
    five-face video only, three policies, no realtime row."""
    from .moving_faces import compare, make_moving_face_video, make_one_face_video

    results = {} if results is None else results
    faces, labels = _faces(data, skip_bad_rows)
    peer_missing = None  # why the `fer` package's row cannot run, said once
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = (("moving_five_faces_640x480", make_moving_face_video, "five moving faces, 640×480"),
                  ("moving_one_face_1280x720", make_one_face_video, "one moving face, 1280×720"))
        policies = [POLICIES[0], POLICIES[1], POLICIES[-1]] if quick else POLICIES + [FRAMING_NOISE]
        for key, maker, title in videos[:1] if quick else videos:
            video = tmp / f"{key}.mp4"
            truth = maker(video, faces, labels, frames=frames, seed=seed)
            rows: list[PolicyRow] = []
            try:
                reference = policy_rows(video, truth, model, threads, tmp, policies, rows=rows)
                # The `fer` package end to end (benchmarks/peers_env.sh builds an environment with it), scored
                # against our every-frame run.
                peer = fer_package_video(video)
                if isinstance(peer, str):
                    peer_missing = peer
                else:
                    peer_fps, peer_records = peer
                    measures = compare(truth, reference, peer_records)
                    rows.append(PolicyRow(FER_VIDEO, peer_fps, len(peer_records), measures["recall"]["candidate"],
                                          measures["agreement"]["share"], {}, classified=1.0, detected=1.0))
            finally:
                results[key] = [r.to_dict() for r in rows]
            out("\n" + policy_markdown(rows, f"{title}: {frames} frames, {len(truth.changes)} expression changes"))
        if peer_missing:
            out(f"\n{FER_VIDEO}: no row, {peer_missing}")
        if quick:
            return results
        row = realtime_row(tmp / "moving_five_faces_640x480.mp4", model, threads, tmp)
        results["realtime_five_faces"] = row.to_dict()
        e2e = row.latency_ms.get("end-to-end", {})
        out(f"\n{row.name}: end-to-end p50 {e2e.get('p50', 0):.1f} ms, p99 {e2e.get('p99', 0):.1f} ms, "
            f"{row.frames} frames")
    return results


def _faces(data: str | None, skip_bad_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    if data:
        from fer_engine.train.data import load_fer2013

        split = load_fer2013(data, skip_bad_rows=skip_bad_rows).split("PublicTest")
        return split.images, split.labels
    return drawn_faces(64), np.arange(64) % 7


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 csv(.gz): paste PublicTest faces (default: drawn faces)")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images of --data")
    parser.add_argument("--video", help="use this video instead of generating one (no recall/accuracy)")
    parser.add_argument("--model", help="model file or shipped name (default: the shipped int8 CNN)")
    parser.add_argument("--threads", type=positive_int, help="classifier threads (default: fer-run's split of the cores)")
    parser.add_argument("--frames", type=positive_int, default=300, help="frames of the generated videos (default: 300)")
    parser.add_argument("--tilt", type=non_negative_float, default=0.0,
                        help="rotate pasted faces by up to ± this many degrees (default: 0)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--policies", action="store_true",
                        help="also the re-classification and detection policies on moving-face videos")
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    add_verbose(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _main(args), PROG, verbose=args.verbose)


def _main(args) -> int:
    from fer_engine.errors import FerError
    from fer_engine.outputs import check_outputs, write_outputs

    check_outputs(files={"--json": args.json})
    if args.video and not Path(args.video).is_file():
        raise FerError(f"--video {args.video}: no such file")
    if args.data:
        from fer_engine.train.data import check_data_path

        check_data_path(args.data)
    results = bench(args.data, args.video, args.model, args.threads, args.quick, print, args.frames, args.tilt,
                    skip_bad_rows=args.skip_bad_rows)
    if args.policies:
        results["policies"] = bench_policies(args.data, args.model, args.threads, args.frames,
                                             skip_bad_rows=args.skip_bad_rows)
    write_outputs([("--json", args.json, lambda path: path.write_text(json.dumps(results, indent=2)))])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
