"""ONNX files of the same classifier side by side: PublicTest and PrivateTest accuracy, faces/s per batch size.

    python -m fer_engine.benchmarks.onnx_compare --data fer2013.csv.gz runtime/models/cnn.onnx old-int8.onnx new-int8.onnx

What showed that full-range int8 weights lose accuracy on CPUs without VNNI (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import sys

from fer_engine.cli import comma_separated, naming, positive_float, positive_int, run_cli

from .timing import measure

PROG = "python -m fer_engine.benchmarks.onnx_compare"


def run(args) -> int:
    from fer_engine.runtime.onnx_model import OnnxClassifier
    from fer_engine.runtime.preprocess import faces_to_pixel_values
    from fer_engine.train.data import load_fer2013

    data = load_fer2013(args.data, skip_bad_rows=args.skip_bad_rows)
    if args.skip_bad_rows:
        print(data.skipped_note())
    splits = {name: data.split(name) for name in ("PublicTest", "PrivateTest")}
    batches = args.batch_sizes
    print("| file | PublicTest | PrivateTest | " + " | ".join(f"faces/s batch {b}" for b in batches) + " |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in batches) + " |")
    for path in args.files:
        with naming(path):
            classifier = OnnxClassifier(path, providers=["CPUExecutionProvider"], threads=args.threads)
        accuracy = [(classifier.predict_probs(s.images).argmax(1) == s.labels).mean() * 100 for s in splits.values()]
        x = faces_to_pixel_values(splits["PublicTest"].images[:max(batches)], classifier.spec)
        rates = [measure(lambda b=b: classifier.predict_logits(x[:b]), b, min_seconds=args.seconds).faces_per_s
                 for b in batches]
        print(f"| {path} | {accuracy[0]:.2f} % | {accuracy[1]:.2f} % | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help=".onnx files with fer metadata")
    p.add_argument("--data", required=True, help="FER2013 csv(.gz)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images of --data, counting them")
    p.add_argument("--batch-sizes", type=comma_separated(positive_int), default="1,8,32,64")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--seconds", type=positive_float, default=3.0, help="minimum measuring time per batch size")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), PROG)


if __name__ == "__main__":
    sys.exit(main())
