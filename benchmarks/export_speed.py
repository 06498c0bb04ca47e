"""Speed of one exported classifier against its PyTorch eager fp32 model, measured in the same run:

    python -m fer_engine.benchmarks.export_speed --checkpoint checkpoints/cnn \\
        --onnx runtime/models/cnn.onnx runtime/models/cnn-int8.onnx --batch 64 --threads 2

Prints a Markdown table (p50/p90/p99 latency, faces/s, speed-up over PyTorch) and, for each ONNX file,
the operators of the graph onnxruntime actually runs after its optimizations (fused and int8 kernels).
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from fer_engine.cli import naming, positive_float, positive_int, run_cli

from .timing import measure

PROG = "python -m fer_engine.benchmarks.export_speed"


def optimized_ops(path: Path, threads: int) -> dict[str, int]:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(collections.Counter(n.op_type for n in graph.node).most_common())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the fer-train checkpoint the files were exported from")
    p.add_argument("--onnx", nargs="+", required=True, help="exported .onnx files")
    p.add_argument("--batch", type=positive_int, default=64)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--seconds", type=positive_float, default=5.0, help="minimum measuring time per row")
    p.add_argument("--json", metavar="OUT", help="write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), PROG)


def run(args) -> int:
    import onnxruntime as ort
    import torch

    from fer_engine.outputs import check_outputs, write_outputs
    from fer_engine.runtime.onnx_model import OnnxClassifier
    from fer_engine.train.checkpoint import load_checkpoint

    check_outputs(files={"--json": args.json})
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    spec = ckpt.spec
    x = np.random.default_rng(0).normal(size=(args.batch, spec.channels, *spec.image_size)).astype(np.float32)
    rows = []
    with torch.inference_mode():
        xt = torch.from_numpy(x)
        timing = measure(lambda: ckpt.module(xt), args.batch, min_seconds=args.seconds)
    rows.append({"backend": "PyTorch eager", "precision": "fp32", "file": args.checkpoint, **timing.to_dict()})
    ops = {}
    for path in args.onnx:
        with naming(path):
            classifier = OnnxClassifier(path, threads=args.threads)
        timing = measure(lambda: classifier.predict_logits(x), args.batch, min_seconds=args.seconds)
        rows.append({"backend": "onnxruntime CPU", "precision": classifier.spec.precision, "file": path,
                     "size_mb": Path(path).stat().st_size / 1e6, **timing.to_dict()})
        ops[path] = optimized_ops(Path(path), args.threads)
    base = rows[0]["faces_per_s"]
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"{spec.model}, batch {args.batch}, {args.threads} threads; {cpu}; torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}\n")
    print("| backend | precision | p50 ms | p90 ms | p99 ms | faces/s | vs PyTorch fp32 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['backend']} | {r['precision']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['faces_per_s']:.0f} | {r['faces_per_s'] / base:.2f}x |")
    for path, counts in ops.items():
        print(f"\n{Path(path).name} after onnxruntime's optimizations: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    write_outputs([("--json", args.json,
                    lambda path: path.write_text(json.dumps({"rows": rows, "optimized_ops": ops, "cpu": cpu}, indent=2)))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
