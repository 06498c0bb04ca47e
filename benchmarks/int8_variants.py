"""int8 variants of the shipped ``cnn`` classifier side by side: PublicTest accuracy and faces/s.

    python -m fer_engine.benchmarks.int8_variants --out /tmp/int8 [--variants PATTERN ...]
        [--threads 1 2] [--batches 64 16 1] [--opt-levels all extended] [--openvino-python /tmp/ovenv/bin/python]

Each variant is built from ``runtime/models/cnn.onnx`` with onnxruntime.quantization's ``quantize_static``
(after ``quant_pre_process``, as ``export/quantize.py`` does), calibrated on the same 500 FER2013 Training
faces (seed 0) as ``fer-export``, and cached under ``OUT/models``. A variant's name says how it was made:

    {qdq|qop}-{pc|pt}-{u8s8|s8s8|u8u8}-{rr|full}-{minmax|percentile|entropy}[-fp32first]

QDQ or QOperator format; per-channel or per-tensor weights; activation and weight types; 7-bit weights
(``reduce_range``) or full range; calibration method; ``-fp32first`` leaves the first convolution (one input
channel, K = 9) in fp32. ``fp32`` and ``shipped`` (``runtime/models/cnn-int8.onnx``) are measured beside them;
``qdq-pc-u8s8-rr-minmax`` is how the shipped file is made.

Accuracy: all PublicTest faces, one view, through ``faces_to_pixel_values`` with the file's spec. Speed: every
(variant, graph optimisation level) session of one thread count is timed round-robin, ``--repeats`` times a
chunk of about ``--chunk-seconds`` after one warm call, so another process that takes the core for a while
slows all variants alike; faces/s is the median of the chunks (min and max are kept in the JSON). Pin the
process yourself (``taskset -c 1``): the threads asked for are onnxruntime's intra-op threads.

The JSON (``OUT/int8_variants.json``) keeps the rows of earlier runs into the same folder, replaced where a
row has the same (variant, provider, threads, opt level, batch, spinning), so a later ``--threads 2`` run adds
its figures to the 1-thread ones.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_engine.cli import run_cli

PROG = "python -m fer_engine.benchmarks.int8_variants"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FP32 = ROOT / "runtime" / "models" / "cnn.onnx"
DEFAULT_SHIPPED = ROOT / "runtime" / "models" / "cnn-int8.onnx"
DEFAULT_DATA = "../shared/data/fer2013/fer2013.csv.gz"
OPT_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "layout": "ORT_ENABLE_LAYOUT",
              "all": "ORT_ENABLE_ALL"}
TYPES = {"u8s8": ("QUInt8", "QInt8"), "s8s8": ("QInt8", "QInt8"), "u8u8": ("QUInt8", "QUInt8")}
CALIBRATIONS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}

# The variants run when --variants is not given: the format × granularity × types × range grid with MinMax,
# then the calibration methods and the fp32 first convolution on the shipped recipe and its full-range twin.
GRID = [f"{fmt}-{gran}-{types}-{rng}-minmax" for fmt in ("qdq", "qop") for gran in ("pc", "pt")
        for types in TYPES for rng in ("rr", "full")]
EXTRA = ["qdq-pc-u8s8-rr-percentile", "qdq-pc-u8s8-rr-entropy", "qdq-pc-u8s8-full-percentile",
         "qdq-pc-u8s8-full-entropy", "qdq-pc-u8s8-rr-minmax-fp32first", "qdq-pc-u8s8-full-minmax-fp32first",
         "qop-pc-u8s8-rr-minmax-fp32first"]
DEFAULT_VARIANTS = ["fp32", "shipped", *GRID, *EXTRA]


@dataclass(frozen=True)
class Variant:
    name: str
    fmt: str | None = None  # qdq / qop; None for the fp32 and shipped files
    per_channel: bool = True
    types: str = "u8s8"
    reduce_range: bool = True
    calibration: str = "minmax"
    fp32_first: bool = False

    @property
    def built(self) -> bool:
        return self.fmt is not None

    def describe(self) -> dict:
        if not self.built:
            return {"variant": self.name}
        return {"variant": self.name, "format": {"qdq": "QDQ", "qop": "QOperator"}[self.fmt],
                "per_channel": self.per_channel, "activation": self.types[:2], "weight": self.types[2:],
                "reduce_range": self.reduce_range, "calibration": self.calibration, "fp32_first_conv": self.fp32_first,
                # AVX512-VNNI's VPDPBUSD multiplies unsigned by signed bytes: u8 activations × s8 weights is the
                # layout onnxruntime's kernels take natively; the other pairs are shifted to it or run otherwise.
                "vnni_native": self.types == "u8s8"}


def parse_variant(name: str) -> Variant:
    if name in ("fp32", "shipped"):
        return Variant(name)
    parts = name.split("-")
    fp32_first = parts[-1] == "fp32first"
    if fp32_first:
        parts = parts[:-1]
    if (len(parts) != 5 or parts[0] not in ("qdq", "qop") or parts[1] not in ("pc", "pt") or parts[2] not in TYPES
            or parts[3] not in ("rr", "full") or parts[4] not in CALIBRATIONS):
        raise SystemExit(f"{PROG}: '{name}' is not a variant name: "
                         "{qdq|qop}-{pc|pt}-{u8s8|s8s8|u8u8}-{rr|full}-{minmax|percentile|entropy}[-fp32first], "
                         "fp32 or shipped")
    return Variant(name, parts[0], parts[1] == "pc", parts[2], parts[3] == "rr", parts[4], fp32_first)


def select_variants(patterns: list[str] | None) -> list[Variant]:
    """Names or shell patterns (``'qdq-pc-*-minmax'``) over the default list; a full name outside it works too."""
    if not patterns:
        return [parse_variant(n) for n in DEFAULT_VARIANTS]
    names: list[str] = []
    for pattern in patterns:
        matched = fnmatch.filter(DEFAULT_VARIANTS, pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not matched:
            raise SystemExit(f"{PROG}: no variant matches '{pattern}' (--list shows them)")
        names += [n for n in matched if n not in names]
    return [parse_variant(n) for n in names]


# --- building ------------------------------------------------------------------------------------------------

def first_conv(path: Path) -> str:
    import onnx

    return next(n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")


def build_variant(variant: Variant, prepared: Path, out: Path, spec, batches: list[np.ndarray]) -> float:
    """Writes ``out`` and returns the seconds it took (calibration included)."""
    import dataclasses

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from fer_engine.export.onnx_export import save_model
    from fer_engine.export.quantize import CalibrationBatches

    activation, weight = (getattr(QuantType, t) for t in TYPES[variant.types])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fer-int8-variant-") as tmp:
        raw = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(raw), CalibrationBatches(batches),
                        quant_format=QuantFormat.QDQ if variant.fmt == "qdq" else QuantFormat.QOperator,
                        per_channel=variant.per_channel, activation_type=activation, weight_type=weight,
                        calibrate_method=getattr(CalibrationMethod, CALIBRATIONS[variant.calibration]),
                        reduce_range=variant.reduce_range,
                        nodes_to_exclude=[first_conv(prepared)] if variant.fp32_first else None,
                        extra_options={"CalibTensorRangeSymmetric": False, "CalibStridedMinMax": 1})
        model = onnx.load(str(raw))
        extra = {**spec.extra, "int8_mode": "static", "int8_variant": variant.name}
        save_model(model, dataclasses.replace(spec, precision="int8", extra=extra), out)
    return time.perf_counter() - started


# --- running -------------------------------------------------------------------------------------------------

def make_session(path: Path, threads: int, opt: str, spinning: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt])
    if spinning != "default":
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning == "on" else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def accuracy_of(session, x: np.ndarray, labels: np.ndarray, batch: int = 256) -> tuple[float, np.ndarray]:
    name = session.get_inputs()[0].name
    predicted = np.concatenate([session.run(None, {name: x[i:i + batch]})[0].argmax(1) for i in range(0, len(x), batch)])
    return float((predicted == labels).mean() * 100), predicted


def optimized_ops(path: Path, opt: str) -> dict:
    """Op types of the graph onnxruntime runs at ``opt`` (its optimized model, written to a temp file)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="fer-int8-opt-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt])
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return dict(Counter(n.op_type for n in onnx.load(str(Path(tmp) / "opt.onnx")).graph.node).most_common())


def time_round_robin(sessions: dict, x: np.ndarray, batch: int, repeats: int, chunk_seconds: float) -> dict:
    """faces/s per session key: ``repeats`` chunks each, the sessions interleaved chunk by chunk."""
    feeds = {key: {s.get_inputs()[0].name: np.ascontiguousarray(x[:batch])} for key, s in sessions.items()}
    calls = {}
    for key, session in sessions.items():  # warm-up, and how many calls make a chunk
        for _ in range(3):
            session.run(None, feeds[key])
        t0 = time.perf_counter()
        session.run(None, feeds[key])
        calls[key] = max(1, round(chunk_seconds / max(time.perf_counter() - t0, 1e-6)))
    rates: dict = {key: [] for key in sessions}
    for _ in range(repeats):
        for key, session in sessions.items():
            session.run(None, feeds[key])
            t0 = time.perf_counter()
            for _ in range(calls[key]):
                session.run(None, feeds[key])
            rates[key].append(batch * calls[key] / (time.perf_counter() - t0))
    return {key: {"faces_per_s": statistics.median(r), "faces_per_s_min": min(r), "faces_per_s_max": max(r),
                  "chunks": len(r), "calls_per_chunk": calls[key]} for key, r in rates.items()}


OPENVINO_SNIPPET = r"""
import json, statistics, sys, time
import numpy as np, onnxruntime as ort
models, xfile, labelsfile, threads, batches, repeats, chunk = json.loads(sys.argv[1]), *sys.argv[2:8]
x, labels = np.load(xfile), np.load(labelsfile)
out = {"onnxruntime": ort.__version__, "providers": ort.get_available_providers(), "rows": [], "failed": {}}
for t in [int(v) for v in threads.split(",")]:
    sessions, accuracy = {}, {}
    for name, model in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = t
        try:
            s = ort.InferenceSession(model, options, providers=["OpenVINOExecutionProvider"],
                                     provider_options=[{"device_type": "CPU", "num_of_threads": str(t)}])
        except Exception as exc:
            out["failed"][name] = str(exc).strip().splitlines()[0]
            continue
        n = s.get_inputs()[0].name
        pred = np.concatenate([s.run(None, {n: x[i:i + 256]})[0].argmax(1) for i in range(0, len(x), 256)])
        sessions[name], accuracy[name] = s, float((pred == labels).mean() * 100)
    for b in [int(v) for v in batches.split(",")]:
        feeds, calls, rates = {}, {}, {name: [] for name in sessions}
        for name, s in sessions.items():  # warm-up, and how many calls make a chunk
            feeds[name] = {s.get_inputs()[0].name: np.ascontiguousarray(x[:b])}
            for _ in range(3): s.run(None, feeds[name])
            t0 = time.perf_counter(); s.run(None, feeds[name])
            calls[name] = max(1, round(float(chunk) / max(time.perf_counter() - t0, 1e-6)))
        for _ in range(int(repeats)):  # round-robin, as the CPU provider's rows
            for name, s in sessions.items():
                s.run(None, feeds[name]); t0 = time.perf_counter()
                for _ in range(calls[name]): s.run(None, feeds[name])
                rates[name].append(b * calls[name] / (time.perf_counter() - t0))
        for name, r in rates.items():
            out["rows"].append({"variant": name, "threads": t, "batch": b, "accuracy": accuracy[name],
                                "session_providers": sessions[name].get_providers(),
                                "faces_per_s": statistics.median(r), "faces_per_s_min": min(r),
                                "faces_per_s_max": max(r), "chunks": len(r), "calls_per_chunk": calls[name]})
print(json.dumps(out))
"""


def run_openvino(python: str, paths: dict, x: np.ndarray, labels: np.ndarray, args, folder: Path) -> list[dict]:
    """The variants on onnxruntime-openvino's OpenVINOExecutionProvider, in ``python`` (its own venv: the
    package replaces onnxruntime), timed as the CPU provider's rows."""
    xfile, labelsfile = folder / "publictest_pixels.npy", folder / "publictest_labels.npy"
    np.save(xfile, x)
    np.save(labelsfile, labels)
    done = subprocess.run([python, "-c", OPENVINO_SNIPPET, json.dumps({k: str(v) for k, v in paths.items()}),
                           str(xfile), str(labelsfile), ",".join(map(str, args.threads)),
                           ",".join(map(str, args.batches)), str(args.repeats), str(args.chunk_seconds)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"OpenVINO EP failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return []
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, why in result["failed"].items():
        print(f"OpenVINO EP cannot load {name}: {why}", file=sys.stderr)
    return [{**row, "provider": "OpenVINOExecutionProvider", "opt": "openvino", "spinning": "default",
             "onnxruntime": result["onnxruntime"]} for row in result["rows"]]


# --- the run -------------------------------------------------------------------------------------------------

def run(args) -> int:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fer_engine.export.quantize import pick_calibration_faces
    from fer_engine.modelfile import spec_from_json
    from fer_engine.runtime.preprocess import faces_to_pixel_values
    from fer_engine.train.data import load_fer2013

    from .environment import cpu_flags, environment

    variants = select_variants(args.variants)
    out = Path(args.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    fp32_model = onnx.load(str(args.fp32))
    spec = spec_from_json({p.key: p.value for p in fp32_model.metadata_props}.get("fer"), str(args.fp32))
    data = load_fer2013(args.data)
    public = data.split("PublicTest")  # never PrivateTest
    x = faces_to_pixel_values(public.images, spec)
    calibration = pick_calibration_faces(data, args.calibration_size, seed=0)
    calibration_batches = [faces_to_pixel_values(calibration[i:i + 32], spec) for i in range(0, len(calibration), 32)]

    paths: dict[str, Path] = {}
    build_seconds: dict[str, float] = {}
    prepared = out / "models" / "prepared.onnx"
    for v in variants:
        if v.name == "fp32":
            paths[v.name] = Path(args.fp32)
        elif v.name == "shipped":
            paths[v.name] = Path(args.shipped)
        else:
            path = out / "models" / f"{v.name}.onnx"
            if args.rebuild or not path.is_file():
                if not prepared.is_file() or args.rebuild:
                    quant_pre_process(str(args.fp32), str(prepared), skip_symbolic_shape=False)
                build_seconds[v.name] = build_variant(v, prepared, path, spec, calibration_batches)
                print(f"built {v.name} in {build_seconds[v.name]:.1f} s", file=sys.stderr)
            paths[v.name] = path

    # Accuracy (and agreement with fp32), one thread, at the first opt level (--accuracy-all-levels: each);
    # kept from the folder's JSON for a file that was not rebuilt since.
    json_path = out / "int8_variants.json"
    old = json.loads(json_path.read_text()) if json_path.is_file() and not args.fresh else {}
    accuracy_levels = args.opt_levels if args.accuracy_all_levels else args.opt_levels[:1]
    info: dict[str, dict] = {}
    fp32_pred = None
    for v in variants:
        stat = paths[v.name].stat()
        earlier = old.get("variants", {}).get(v.name)
        if (earlier and earlier.get("file") == str(paths[v.name]) and earlier.get("mtime") == stat.st_mtime
                and all(o in earlier["accuracy"] for o in accuracy_levels)):
            info[v.name] = earlier
            print(f"{v.name}: PublicTest {earlier['accuracy']} (from {json_path})", file=sys.stderr)
            continue
        if fp32_pred is None:
            _, fp32_pred = accuracy_of(make_session(Path(args.fp32), 1, "all", "default"), x, public.labels)
        entry = {**v.describe(), "file": str(paths[v.name]), "size_mb": stat.st_size / 1e6, "mtime": stat.st_mtime,
                 "build_s": build_seconds.get(v.name), "accuracy": {}, "agreement_with_fp32": {},
                 "ops": optimized_ops(paths[v.name], args.opt_levels[0])}
        for opt in accuracy_levels:
            acc, pred = accuracy_of(make_session(paths[v.name], 1, opt, "default"), x, public.labels)
            entry["accuracy"][opt] = acc
            entry["agreement_with_fp32"][opt] = float((pred == fp32_pred).mean() * 100)
        info[v.name] = entry
        print(f"{v.name}: PublicTest {entry['accuracy']}", file=sys.stderr)

    rows = []
    for threads in args.threads:
        sessions = {(v.name, opt): make_session(paths[v.name], threads, opt, args.spinning)
                    for v in variants for opt in args.opt_levels}
        for batch in args.batches:
            started = time.perf_counter()
            timed = time_round_robin(sessions, x, batch, args.repeats, args.chunk_seconds)
            for (name, opt), t in timed.items():
                rows.append({"variant": name, "provider": "CPUExecutionProvider", "threads": threads, "opt": opt,
                             "batch": batch, "spinning": args.spinning, "accuracy": info[name]["accuracy"].get(opt), **t})
            print(f"timed {threads} thread(s), batch {batch} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        del sessions

    if args.openvino_python:
        chosen = {v.name: paths[v.name] for v in variants}
        rows += run_openvino(args.openvino_python, chosen, x, public.labels, args, out)

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                  "amx_int8", "amx_bf16"})
    report = {"environment": {**environment(None), "cpu_flags": flags, "ort_version": ort.__version__,
                              "argv": sys.argv[1:]},
              "calibration": f"{len(calibration)} Training faces, seed 0",
              "accuracy_faces": f"PublicTest, {len(public.labels)} faces, one view",
              "variants": info, "rows": rows}
    if old:
        key = lambda r: (r["variant"], r.get("provider"), r["threads"], r["opt"], r["batch"], r.get("spinning"))
        new_keys = {key(r) for r in rows}
        report["rows"] = [r for r in old.get("rows", []) if key(r) not in new_keys] + rows
        report["variants"] = {**old.get("variants", {}), **info}
        report["earlier_runs"] = old.get("earlier_runs", []) + [old.get("environment")]
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    print_table(rows, info, args)
    print(f"\nJSON: {json_path}")
    return 0


def print_table(rows: list[dict], info: dict, args) -> None:
    columns = sorted({(r["provider"], r["threads"], r["opt"], r["batch"]) for r in rows},
                     key=lambda c: (c[0] != "CPUExecutionProvider", c[1],
                                    args.opt_levels.index(c[2]) if c[2] in args.opt_levels else -1, -c[3]))
    cell = {(r["variant"], r["provider"], r["threads"], r["opt"], r["batch"]): r for r in rows}
    reference = "shipped" if "shipped" in info else None
    first_opt = args.opt_levels[0]
    ref_acc = info[reference]["accuracy"][first_opt] if reference else None
    head = ["variant", f"PublicTest % ({first_opt})", "Δ vs shipped", "agree fp32 %"]
    ov_accuracy = {r["variant"]: r["accuracy"] for r in rows if r["provider"] != "CPUExecutionProvider"}
    if ov_accuracy:
        head.append("OV PublicTest %")
    head += [(f"OV {t}t" if p != "CPUExecutionProvider" else f"{t}t {o}") + f" b{b}" for p, t, o, b in columns]
    print("| " + " | ".join(head) + " |")
    print("| --- | " + " | ".join("---:" for _ in head[1:]) + " |")
    for name, entry in info.items():
        acc = entry["accuracy"][first_opt]
        line = [name, f"{acc:.2f}", f"{acc - ref_acc:+.2f}" if ref_acc is not None else "",
                f"{entry['agreement_with_fp32'][first_opt]:.1f}"]
        if ov_accuracy:
            line.append(f"{ov_accuracy[name]:.2f}" if name in ov_accuracy else "")
        for c in columns:
            r = cell.get((name, *c))
            if r is None:
                line.append("")
                continue
            ratio = ""
            ref = cell.get((reference, *c)) if reference else None
            if ref and name != reference:
                ratio = f" ({r['faces_per_s'] / ref['faces_per_s']:.2f}×)"
            line.append(f"{r['faces_per_s']:,.0f}{ratio}")
        print("| " + " | ".join(line) + " |")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Variants by default: " + " ".join(DEFAULT_VARIANTS))
    p.add_argument("--out", help="folder for the built variants and int8_variants.json (required but with --list)")
    p.add_argument("--variants", nargs="+", metavar="NAME", help="names or shell patterns (default: all listed below)")
    p.add_argument("--list", action="store_true", help="print the variants selected (all by default) and exit")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="intra-op thread counts (default: 1)")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 16, 1], help="batch sizes (default: 64 16 1)")
    p.add_argument("--opt-levels", nargs="+", choices=list(OPT_LEVELS), default=["all", "extended"],
                   help="graph optimisation levels (default: all extended; the first is the table's accuracy)")
    p.add_argument("--accuracy-all-levels", action="store_true",
                   help="measure accuracy at every --opt-levels level, not only the first")
    p.add_argument("--spinning", choices=["default", "on", "off"], default="default",
                   help="session.intra_op.allow_spinning (default: onnxruntime's own, as the runtime)")
    p.add_argument("--repeats", type=int, default=7, help="timed chunks per session and batch (median)")
    p.add_argument("--chunk-seconds", type=float, default=0.25, help="about how long one chunk runs")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"FER2013 csv(.gz) (default: {DEFAULT_DATA})")
    p.add_argument("--fp32", default=str(DEFAULT_FP32), help="the fp32 ONNX file quantized")
    p.add_argument("--shipped", default=str(DEFAULT_SHIPPED), help="the int8 file shipped now")
    p.add_argument("--calibration-size", type=int, default=500, help="Training faces (default: 500, as fer-export)")
    p.add_argument("--rebuild", action="store_true", help="quantize again even where OUT/models has the file")
    p.add_argument("--fresh", action="store_true", help="overwrite the JSON instead of merging into it")
    p.add_argument("--openvino-python", metavar="PYTHON",
                   help="a Python with onnxruntime-openvino (a separate venv): time the variants on its EP too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print("\n".join(v.name for v in select_variants(args.variants)))
        return 0
    if not args.out:
        build_parser().error("--out is required")
    return run_cli(lambda: run(args), PROG)


if __name__ == "__main__":
    sys.exit(main())
