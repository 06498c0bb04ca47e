"""Can stronger smoothing or a label hysteresis lift a cheaper policy's agreement with the every-frame run?

Each policy of ``benchmarks/pipeline.py`` runs once per generated moving-face video (benchmarks/moving_faces.py)
with smoothing off; the records then get each setting applied afterwards, the same for the every-frame
reference and the candidate: the runtime's per-track average (``Smoother``, weight ``smooth`` of the past) and
a hysteresis ``margin`` (a track keeps its label until another label's smoothed probability leads it by more
than the margin). With smoothing off the records hold each track's last classified probabilities on the frames
a policy skipped, so the average computed here is the one fer-run computes.

    python -m fer_engine.benchmarks.label_sweep --data ../shared/data/fer2013/fer2013.csv.gz --seeds 0,1,2,3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fer_engine.errors import FerError
from fer_engine.runtime import PipelineConfig, RecognizerConfig
from fer_engine.runtime.smoothing import Smoother

from .measure_cli import run_measure
from .moving_faces import VIDEOS, compare, truth_accuracy
from .pipeline import POLICIES, _faces, run_pipeline

PROG = "python -m fer_engine.benchmarks.label_sweep"


def relabel(records: list[list[dict]], labels: tuple[str, ...], smooth: float, margin: float) -> list[list[dict]]:
    """``records`` (smoothing off) with each face's label taken from its track's smoothed probabilities, kept
    until another label leads by more than ``margin``."""
    smoother, current = Smoother(smooth), {}
    out = []
    for faces in records:
        if not faces:
            out.append([])
            continue
        tracks = [face["track"] for face in faces]
        probs = np.array([[face["probs"][name] for name in labels] for face in faces], np.float32)
        smoothed = smoother.update(tracks, np.ones(len(faces), bool), probs)
        frame = []
        for face, track, row in zip(faces, tracks, smoothed):
            best = int(np.argmax(row))
            kept = current.get(track)
            if kept is not None and row[best] - row[kept] <= margin:
                best = kept
            current[track] = best
            frame.append({"box": face["box"], "label": labels[best]})
        out.append(frame)
    return out


def sweep(data: str | None, seeds: list[int], smooths: list[float], margins: list[float], threads: int | None,
          frames: int, out=print, model: str | None = None) -> list[dict]:
    from fer_engine.spec import LABELS

    faces, labels = _faces(data, False)
    runs = []  # (truth, {policy: records})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in seeds:
            for title, maker in VIDEOS:
                video = tmp / f"{seed}-{len(runs)}.mp4"
                truth = maker(video, faces, labels, frames=frames, seed=seed)
                records = {}
                for name, changes in POLICIES:
                    config = PipelineConfig(recognizer=RecognizerConfig(model=model, threads=threads), render=False, smooth=0.0,
                                            **changes)
                    records[name] = run_pipeline(video, config, tmp, False)[1]
                runs.append((truth, records))
                out(f"seed {seed}, {title}: {len(POLICIES)} policies run")
    rows = []
    for smooth in smooths:
        for margin in margins:
            references = [relabel(records[POLICIES[0][0]], LABELS, smooth, margin) for _, records in runs]
            for name, _ in POLICIES:
                measures = []
                for (truth, records), reference in zip(runs, references):
                    candidate = relabel(records[name], LABELS, smooth, margin)
                    compared = compare(truth, reference, candidate)
                    follow = compared["follow"]
                    accuracy = truth_accuracy(truth, candidate)
                    share = compared["agreement"]["share"]
                    measures.append((np.nan if share is None else share, np.nan if accuracy is None else accuracy,
                                     follow["candidate_ms"]["p90"] or 0.0, follow["never_followed"]))
                values = np.array(measures, float)  # nan where a video had no face found in both runs
                scored = values[~np.isnan(values[:, 0])]
                if not len(scored):
                    raise FerError("no face was found in both runs of any video: nothing to compare (pass --data "
                                   "for FER2013 faces, which YuNet finds, or more --frames)")
                rows.append({"smooth": smooth, "margin": margin, "policy": name,
                             "agreement_min": scored[:, 0].min(), "agreement_mean": scored[:, 0].mean(),
                             "truth_accuracy": float(np.nanmean(scored[:, 1])),
                             "follow_p90_ms_worst": scored[:, 2].max(), "never_followed": int(scored[:, 3].sum()),
                             "videos": len(scored)})
    out("| smooth | margin | policy | agreement min / mean | accuracy vs truth | follow p90 ms (worst video) "
        "| never followed |")
    out("| ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        out(f"| {r['smooth']:g} | {r['margin']:g} | {r['policy']} | {r['agreement_min']:.1%} / "
            f"{r['agreement_mean']:.1%} | {r['truth_accuracy']:.1%} | {r['follow_p90_ms_worst']:.0f} "
            f"| {r['never_followed']} |")
    return rows


def build_parser() -> argparse.ArgumentParser:
    from fer_engine.cli import comma_separated, non_negative_int, positive_int, unit_interval

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 csv(.gz): paste PublicTest faces (default: drawn faces)")
    parser.add_argument("--seeds", type=comma_separated(non_negative_int), default=[0, 1],
                        help="video seeds, comma-separated (default: 0,1)")
    parser.add_argument("--smooth", type=comma_separated(unit_interval), default=[0.0, 0.5, 0.7],
                        help="smoothing weights to try, each in [0, 1) (default: 0,0.5,0.7)")
    parser.add_argument("--margin", type=comma_separated(unit_interval), default=[0.0, 0.05, 0.1, 0.2],
                        help="hysteresis margins to try, in probability (default: 0,0.05,0.1,0.2)")
    parser.add_argument("--model", help="classifier, as fer-run --model takes it: a name or an ONNX file "
                        "(default: the shipped default)")
    parser.add_argument("--threads", type=positive_int, help="classifier threads")
    parser.add_argument("--frames", type=positive_int, default=300)
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_measure(PROG, args, lambda: sweep(args.data, args.seeds, args.smooth, args.margin, args.threads,
                                                 args.frames, model=args.model))


if __name__ == "__main__":
    raise SystemExit(main())
