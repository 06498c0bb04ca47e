"""What a set of teachers can give a distilled student: each checkpoint's PublicTest accuracy and every
combination's, on the single face and averaged over K fixed augmented views — the target that
``fer-train --distill-target mean`` hands the student (train/distill.py).

    python -m fer_engine.benchmarks.teachers --data fer2013.csv.gz --views 12 checkpoints/cnn runs/other/best
"""

from __future__ import annotations

import argparse
import itertools
import json

from fer_engine.cli import add_verbose, positive_int, run_cli

PROG = "python -m fer_engine.benchmarks.teachers"


def judge(folders: list[str], data: str, views: int, seed: int = 0, augment: str = "strong", amp: str = "auto",
          batch_size: int = 256) -> list[dict]:
    """One row per non-empty combination of ``folders``: accuracy on PublicTest, single view and K-view mean
    (the views in bf16 where the CPU has it, as fer-train computes the targets)."""
    import numpy as np
    import torch

    from fer_engine.train.augment import augment_preset
    from fer_engine.train.checkpoint import load_checkpoint
    from fer_engine.train.data import load_fer2013
    from fer_engine.train.distill import teacher_probs, view_warps
    from fer_engine.train.evaluate import predict_probs
    from fer_engine.train.trainer import resolve_amp

    split = load_fer2013(data).split("PublicTest")
    spec = load_checkpoint(folders[0]).spec
    warps = view_warps(len(split.labels), views, augment_preset(augment), seed)
    dtype = resolve_amp(amp, torch.device("cpu"))
    single, mean = {}, {}
    with torch.no_grad():
        for folder in folders:
            teacher = load_checkpoint(folder)
            columns = teacher.spec.label_index(spec.labels)
            probs = predict_probs(teacher.module, teacher.spec, split.images, batch_size=batch_size)
            single[folder] = probs[:, columns]
            views_probs = teacher_probs(teacher, spec, split.images, warps, 1.0, "cpu", dtype, batch_size)
            mean[folder] = views_probs.mean(0).numpy()

    def accuracy(probs: np.ndarray) -> float:
        return float(np.mean(probs.argmax(1) == split.labels))

    rows = []
    for size in range(1, len(folders) + 1):
        for combo in itertools.combinations(folders, size):
            rows.append({"teachers": list(combo), "single_view": accuracy(sum(single[f] for f in combo)),
                         f"mean_of_{views}_views": accuracy(sum(mean[f] for f in combo))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("teachers", nargs="+", help="fer-train checkpoint folders")
    parser.add_argument("--data", required=True, help="FER2013 csv(.gz): the teachers are judged on PublicTest")
    parser.add_argument("--views", type=positive_int, default=24, help="augmented views per face (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the views (default 0)")
    parser.add_argument("--json", metavar="OUT", help="write the rows as JSON")
    add_verbose(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda: _main(args), PROG, verbose=args.verbose)


def _main(args) -> int:
    rows = judge(args.teachers, args.data, args.views, args.seed)
    for row in rows:
        print(f"{' + '.join(row['teachers'])}: single view {row['single_view'] * 100:.2f} %, "
              f"mean of {args.views} views {row[f'mean_of_{args.views}_views'] * 100:.2f} %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
