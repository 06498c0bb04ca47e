"""``fer-eval``: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix of a model
on one FER2013 split."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fer_engine.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-eval", description=__doc__,
        epilog="Example: fer-eval checkpoints/cnn --data fer2013.csv.gz --split PrivateTest --json eval.json")
    p.add_argument("model", metavar="MODEL", help="a fer-train checkpoint folder or an exported .onnx file")
    p.add_argument("--data", required=True, help="Kaggle fer2013.csv(.gz) or an image-folder root")
    p.add_argument("--split", default="PrivateTest", help="Training, PublicTest or PrivateTest (default: PrivateTest)")
    p.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON (and the confusion PNG beside it)")
    p.add_argument("--png", metavar="OUT", help="write the confusion matrix as a PNG here")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=int, help="evaluate only the first N faces of the split")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images, counting them")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from fer_engine.spec import LABELS

        from .classifiers import load_classifier
        from .data import load_fer2013
        from .metrics import Report

        classifier = load_classifier(args.model, args.device)
        data = load_fer2013(args.data, skip_bad_rows=args.skip_bad_rows)
        split = data.split(args.split).head(args.limit)
        started = time.perf_counter()
        probs = classifier.predict_probs(split.images, batch_size=args.batch_size, tta=args.tta)
        elapsed = time.perf_counter() - started
        probs = probs[:, classifier.spec.label_index(LABELS)]
        report = Report.from_predictions(split.labels, probs.argmax(1), LABELS)
        print(f"{classifier.description}\n{args.split} of {data.source}{' with TTA (mirror)' if args.tta else ', single crop'}")
        print(report.format())
        print(f"\n{len(split) / elapsed:.0f} faces/s")
        result = {"model": str(args.model), "split": args.split, "tta": args.tta, "data": data.source,
                  "faces_per_s": len(split) / elapsed, **report.to_dict()}
        png = Path(args.png) if args.png else (Path(args.json).with_suffix(".png") if args.json else None)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2))
            print(f"report: {args.json}")
        if png:
            from .plots import plot_confusion

            png.parent.mkdir(parents=True, exist_ok=True)
            plot_confusion(report.confusion, LABELS, png,
                           f"{classifier.spec.model} on {args.split}: {report.accuracy * 100:.2f}%")
            print(f"confusion matrix: {png}")
        return 0

    return run_cli(body, "fer-eval")


if __name__ == "__main__":
    sys.exit(main())
