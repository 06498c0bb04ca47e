"""``fer-eval``: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix of a model
on one FER2013 split."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fer_engine.cli import add_verbose, naming, positive_int, run_cli
from fer_engine.spec import SPLITS

TTA_TITLES = {None: ", single crop", "flip": " with TTA (mirror)", "ten-crop": " with TTA (ten crops with mirrors)"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-eval", description=__doc__,
        epilog="Example: fer-eval checkpoints/cnn --data fer2013.csv.gz --split PrivateTest --json eval.json")
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="a fer-train checkpoint folder, an exported .onnx file, a TensorRT engine, a triton:// URL or "
                        "a shipped model's name (cnn, cnn-int8); default: the shipped cnn checkpoint")
    p.add_argument("--model", dest="family", metavar="NAME",
                   help="instead of MODEL: a Hugging Face emotion model of this family (vit, convnext, convnextv2), "
                        "its labels mapped onto ours; without --pretrained, the family's published FER2013 fine-tune")
    p.add_argument("--pretrained", metavar="ID_OR_DIR", help="with --model: the hub id or local folder to evaluate")
    p.add_argument("--data", required=True, help="Kaggle fer2013.csv(.gz) or an image-folder root")
    p.add_argument("--split", default="PrivateTest", choices=SPLITS, help="default: PrivateTest")
    views = p.add_mutually_exclusive_group()
    views.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    views.add_argument("--ten-crop", action="store_true",
                       help="average ten views of each face: the four corners and the centre, each 11/12 of the side "
                            "resized back, with their mirror images (ten times the work)")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON (and the confusion PNG beside it)")
    p.add_argument("--png", metavar="OUT", help="write the confusion matrix as a PNG here")
    p.add_argument("--batch-size", type=positive_int, default=256, help="faces per inference call (default: 256)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate only the first N faces of the split")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images, counting them")
    add_verbose(p)
    return p


def png_output(args) -> tuple[str, str | None]:
    """The confusion PNG's option and path: --png, else beside --json."""
    if args.png:
        return "--png", args.png
    if args.json:
        return "--png (beside --json)", str(Path(args.json).with_suffix(".png"))
    return "--png", None


def ten_crop_views(faces, fraction: float = 44 / 48) -> list:
    """Ten views of uint8 faces [N, H, W]: the four corner crops and the centre crop of ``fraction`` of the side,
    each resized back to H x W, and their mirror images (the multi-crop evaluation of the FER2013 literature)."""
    import cv2
    import numpy as np

    height, width = faces.shape[1:3]
    ch, cw = round(height * fraction), round(width * fraction)
    corners = [(0, 0), (0, width - cw), (height - ch, 0), (height - ch, width - cw),
               ((height - ch) // 2, (width - cw) // 2)]
    views = []
    for top, left in corners:
        crops = faces[:, top:top + ch, left:left + cw]
        view = np.stack([cv2.resize(np.ascontiguousarray(c), (width, height), interpolation=cv2.INTER_LINEAR)
                         for c in crops]) if len(faces) else faces.copy()
        views += [view, view[:, :, ::-1].copy()]
    return views


def predict_with_progress(classifier, faces, batch_size: int, tta: str | None):
    """``classifier.predict_probs`` a batch at a time (each view's, averaged, for ten-crop), with a bar of the
    faces done on a terminal."""
    import numpy as np

    from fer_engine.progress import bar

    views = ten_crop_views(faces) if tta == "ten-crop" else [faces]
    flip = tta == "flip"
    total = None
    with bar(total=len(faces) * len(views), desc="evaluating", unit="face") as shown:
        for view in views:
            chunks = []
            for start in range(0, len(view), batch_size):
                chunks.append(classifier.predict_probs(view[start:start + batch_size], batch_size=batch_size, tta=flip))
                shown.update(len(chunks[-1]))
            probs = (np.concatenate(chunks) if chunks
                     else classifier.predict_probs(view[:0], batch_size=batch_size, tta=flip))
            total = probs if total is None else total + probs
    return total / len(views)


def default_model() -> str | None:
    """The model fer-eval reads without MODEL or --model: the shipped cnn checkpoint (found from the package,
    whatever the working folder), else the shipped cnn ONNX file; None where neither is installed."""
    from fer_engine.runtime.backends import shipped_models
    from fer_engine.train.models import get_family

    checkpoint = get_family("cnn").default_checkpoint
    if checkpoint is not None and checkpoint.is_dir():
        return str(checkpoint)
    shipped = shipped_models().get("cnn")
    return str(shipped) if shipped is not None else None


def resolve_shipped(model: str) -> str:
    """MODEL as given, or the file of a shipped model named so (cnn-int8, cnn) when no such path exists here."""
    from fer_engine.runtime.backends import shipped_models

    if "://" in model or Path(model).exists():
        return model
    shipped = shipped_models().get(model)
    return str(shipped) if shipped is not None else model


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from fer_engine.outputs import check_outputs, write_outputs
        from fer_engine.spec import LABELS

        from .classifiers import load_classifier
        from .data import check_data_path, load_fer2013
        from .metrics import Report

        from fer_engine.errors import FerError

        png_option, png = png_output(args)
        check_outputs(files={"--json": args.json, png_option: png})
        if args.model and (args.family or args.pretrained):
            raise FerError("give either MODEL (a checkpoint or exported file) or --model/--pretrained, not both")
        if args.pretrained and not args.family:
            raise FerError("--pretrained needs --model NAME (vit, convnext or convnextv2) to say how to load it")
        if not args.model and not args.family:
            args.model = default_model()
            if args.model is None:
                raise FerError("say what to evaluate: MODEL (a checkpoint folder, .onnx, engine or triton:// URL), "
                               "or --model NAME [--pretrained ID_OR_DIR] for a Hugging Face emotion model")
        if args.model:
            args.model = resolve_shipped(args.model)
        check_data_path(args.data)
        if args.family:
            from .classifiers import load_pretrained

            args.model = args.pretrained or args.family
            classifier = load_pretrained(args.family, args.pretrained, args.device)
        else:
            with naming(args.model):
                classifier = load_classifier(args.model, args.device)
        data = load_fer2013(args.data, skip_bad_rows=args.skip_bad_rows)
        split = data.split(args.split).head(args.limit)
        tta = "ten-crop" if args.ten_crop else "flip" if args.tta else None
        started = time.perf_counter()
        with naming(args.model):
            probs = predict_with_progress(classifier, split.images, args.batch_size, tta)
        elapsed = time.perf_counter() - started
        probs = probs[:, classifier.spec.label_index(LABELS)]
        report = Report.from_predictions(split.labels, probs.argmax(1), LABELS)
        print(f"{classifier.description}\n{args.split} of {data.source}{TTA_TITLES[tta]}"
              + (f"; the first {len(split)} faces (--limit)" if args.limit else ""))
        if args.skip_bad_rows:
            print(data.skipped_note())
        print(report.format())
        print(f"\n{len(split) / elapsed:.0f} faces/s")
        result = {"model": str(args.model), "split": args.split, "tta": args.tta, "ten_crop": args.ten_crop,
                  "data": data.source, "limit": args.limit, "skipped_rows": data.skipped,
                  "faces_per_s": len(split) / elapsed, **report.to_dict()}

        def write_png(path: Path) -> None:
            from .plots import plot_confusion

            plot_confusion(report.confusion, LABELS, path,
                           f"{classifier.spec.model} on {args.split}: {report.accuracy * 100:.2f}%")

        titles = {"--json": "report", png_option: "confusion matrix"}
        write_outputs([("--json", args.json, lambda path: path.write_text(json.dumps(result, indent=2))),
                       (png_option, png, write_png)],
                      announce=lambda option, path: print(f"{titles[option]}: {path}"))
        return 0

    return run_cli(body, "fer-eval", verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
