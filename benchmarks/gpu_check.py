"""One prepared command for a machine with an NVIDIA GPU: what only a GPU can show, measured in one run.

    python -m fer_engine.benchmarks.gpu_check --data fer2013.csv.gz --out gpu-check

1. PyTorch CUDA eager fp32 and fp16 of the four architectures (cnn trained when its checkpoint is there,
   the others full size from their configs: speed only) at batch 1, 32 and 256;
2. ``cnn`` training throughput on the GPU (the trainer's own step: augmentation, AMP, AdamW);
3. onnxruntime's CUDA and TensorRT execution providers and TensorRT engines, where installed;
4. the YuNet face detector on onnxruntime's CPU and CUDA providers (fer-run runs it on the CPU today: this
   says whether moving it to the GPU would pay).

Every part that cannot run here is a row that says why (no CUDA, onnxruntime without GPU providers,
TensorRT not installed); the run goes on. Results: ``OUT/gpu_check.json`` and ``.md`` (the same tables).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fer_engine.cli import comma_separated, non_negative_int, one_of, positive_float, positive_int, run_cli

from . import cli_bench
from .environment import environment, format_environment

PROG = "gpu_check"
GPU_BACKENDS = ("pytorch-fp32-cuda", "pytorch-fp16-cuda", "onnx-fp32-cuda", "onnx-fp16-cuda", "onnx-int8-trt",
                "tensorrt-fp16", "tensorrt-int8")


@dataclass
class DetectorRow:
    frame: str
    provider: str
    status: str = "✅"
    reason: str = ""
    p50_ms: float | None = None
    frames_per_s: float | None = None


@dataclass
class TrainRow:
    model: str
    batch: int
    status: str = "✅"
    reason: str = ""
    images_per_s: float | None = None
    step_ms: float | None = None
    amp: str = ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m fer_engine.benchmarks.{PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="FER2013 csv(.gz): accuracy rows, int8 calibration and real training batches")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images of --data, counting them")
    p.add_argument("--out", default="gpu-check", help="folder for gpu_check.json and gpu_check.md (default: gpu-check)")
    p.add_argument("--models", type=comma_separated(str), help="models to time (default: every registered model)")
    p.add_argument("--batch-sizes", type=comma_separated(positive_int), default="1,32,256")
    p.add_argument("--backends", type=comma_separated(one_of(cli_bench.BACKENDS)), default=",".join(GPU_BACKENDS),
                   help="fer-bench backend names")
    p.add_argument("--duration", type=positive_float, default=2.0, help="minimum seconds of timing per row")
    p.add_argument("--train-batches", type=comma_separated(positive_int), default="128,512",
                   help="cnn training batch sizes")
    p.add_argument("--train-workers", type=non_negative_int, default=4,
                   help="threads preparing augmented batches (default: 4)")
    p.add_argument("--train-seconds", type=positive_float, default=20.0, help="timed training seconds per batch size")
    p.add_argument("--detector-model", help="YuNet .onnx (default: $FER_ENGINE_YUNET or the cache, as fer-run)")
    return p


DETECTOR_FRAMES = {"320x240 (640x480 at scale 0.5)": (240, 320), "640x360 (1280x720 at scale 0.5)": (360, 640)}


def detector_rows(model: str | None, duration: float, log) -> list[DetectorRow]:
    """YuNet's time per frame (decoding and NMS included) on each provider, on noise frames of fer-run's sizes."""
    import numpy as np
    import onnxruntime as ort

    from fer_engine.runtime.detectors import resolve_yunet_model
    from fer_engine.runtime.providers import preload_nvidia_wheels, start_failures
    from fer_engine.runtime.yunet import YuNetOnnx

    from .timing import measure

    providers = ("CPUExecutionProvider", "CUDAExecutionProvider")
    path = resolve_yunet_model(model)
    if path is None:
        return [DetectorRow(frame, p, "❌", "no YuNet file: pass --detector-model or set $FER_ENGINE_YUNET")
                for frame in DETECTOR_FRAMES for p in providers]
    rows = []
    rng = np.random.default_rng(0)
    for frame, size in DETECTOR_FRAMES.items():
        image = rng.integers(0, 256, (*size, 3), np.uint8)
        for provider in providers:
            if provider not in ort.get_available_providers():
                rows.append(DetectorRow(frame, provider, "❌", f"{provider} not in this onnxruntime"))
                continue
            if provider != "CPUExecutionProvider":
                preload_nvidia_wheels()
            detector = YuNetOnnx(path, providers=[provider])
            running = detector.session.get_providers()[0]
            if running != provider:
                rows.append(DetectorRow(frame, provider, "❌",
                                        f"onnxruntime fell back to {running}: {start_failures([provider])}"))
                continue
            log(f"YuNet {frame} on {provider}")
            timing = measure(lambda: detector.detect(image), 1, min_seconds=duration)
            rows.append(DetectorRow(frame, provider, p50_ms=timing.p50_ms, frames_per_s=timing.faces_per_s))
    return rows


def detector_markdown(rows: list[DetectorRow]) -> str:
    lines = ["| detector input | provider | p50 ms | frames/s | status |", "| --- | --- | ---: | ---: | --- |"]
    for r in rows:
        p50 = f"{r.p50_ms:.2f}" if r.p50_ms else ""
        rate = f"{r.frames_per_s:,.0f}" if r.frames_per_s else ""
        lines.append(f"| {r.frame} | {r.provider} | {p50} | {rate} | {r.status} {r.reason} |")
    return "\n".join(lines)


def train_throughput(data: str | None, batch: int, seconds: float, workers: int, log,
                     skip_bad_rows: bool = False) -> TrainRow:
    """Images/s of the trainer's own step on the GPU, after warm-up, with ``fer-train``'s defaults for cnn."""
    import torch

    if not torch.cuda.is_available():
        return TrainRow("cnn", batch, "❌", "no CUDA GPU")
    from fer_engine.train.trainer import TrainConfig, Trainer

    if not data:
        return TrainRow("cnn", batch, "❌", "needs --data (the trainer reads FER2013)")
    cfg = TrainConfig(model="cnn", data=data, batch_size=batch, device="cuda", workers=workers, final_test=False,
                      skip_bad_rows=skip_bad_rows)
    trainer = Trainer(cfg, log=lambda *_: None)

    def batches():
        epoch = 0
        while True:
            yield from trainer.stream.epoch(epoch)
            epoch += 1

    steps, started = 0, None
    trainer.module.train()
    for batch_of_faces in batches():
        trainer._train_step(batch_of_faces)
        steps += 1
        if steps == 10:  # warm-up: cuDNN autotuning, allocator
            torch.cuda.synchronize()
            started, steps = time.perf_counter(), 0
        elif started and time.perf_counter() - started >= seconds:
            torch.cuda.synchronize()
            break
    elapsed = time.perf_counter() - started
    log(f"train cnn batch {batch}: {steps * batch / elapsed:,.0f} images/s")
    return TrainRow("cnn", batch, images_per_s=steps * batch / elapsed, step_ms=1000 * elapsed / steps,
                    amp=str(trainer.amp).replace("torch.", ""))


def train_markdown(rows: list[TrainRow]) -> str:
    lines = ["| model | batch | images/s | ms/step | amp | status |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        rate = f"{r.images_per_s:,.0f}" if r.images_per_s else ""
        step = f"{r.step_ms:.1f}" if r.step_ms else ""
        lines.append(f"| {r.model} | {r.batch} | {rate} | {step} | {r.amp} | {r.status} {r.reason} |")
    return "\n".join(lines)


def run(args) -> int:
    def log(message: str) -> None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    from fer_engine.outputs import check_outputs, write_outputs

    out = Path(args.out)
    check_outputs(folders={"--out": out})
    if args.data:
        from fer_engine.train.data import check_data_path

        check_data_path(args.data)
    env = environment(None)
    try:
        import torch

        env["torch"], env["torch_cuda"] = torch.__version__, torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else env.get("gpu")
    except ImportError:
        env["torch"] = None
    from fer_engine.train.models import get_family, list_models

    args.models = [get_family(name).name for name in args.models] if args.models else list_models()
    bench_args = cli_bench.build_parser().parse_args(
        ["--models", ",".join(args.models), "--backends", ",".join(args.backends),
         "--batch-sizes", ",".join(map(str, args.batch_sizes)), "--duration", str(args.duration),
         "--work-dir", str(out / "work")] + (["--data", args.data] if args.data else [])
        + (["--skip-bad-rows"] if args.skip_bad_rows else []))
    splits = cli_bench.load_splits(args.data, args.skip_bad_rows, log)
    backends = cli_bench.choose_backends(bench_args)
    rows = []
    for name in args.models:
        case = cli_bench.make_case(name, bench_args, out / "work")
        log(f"{case.name}: {case.source}")
        rows += cli_bench.bench_case(case, backends, args.batch_sizes, bench_args, splits, log)
        del case
        cli_bench.free_memory()
    train_rows = []
    for batch in args.train_batches:
        try:
            train_rows.append(train_throughput(args.data, batch, args.train_seconds, args.train_workers, log,
                                               args.skip_bad_rows))
        except Exception as exc:  # a failing row says why; the check goes on
            train_rows.append(TrainRow("cnn", batch, "❌", f"{type(exc).__name__}: {exc}"))
    detectors = detector_rows(args.detector_model, args.duration, log)
    report = ("## Environment\n\n" + format_environment(env) + "\n\n## Inference\n\n" + cli_bench.markdown(rows)
              + "\n\n## cnn training on the GPU\n\n" + train_markdown(train_rows)
              + "\n\n## YuNet face detector\n\n" + detector_markdown(detectors) + "\n")
    print(report)
    summary = {"environment": env, "inference": [asdict(r) for r in rows], "training": [asdict(r) for r in train_rows],
               "detector": [asdict(r) for r in detectors]}
    write_outputs([("--out (Markdown)", out / "gpu_check.md", lambda path: path.write_text(report)),
                   ("--out (JSON)", out / "gpu_check.json",
                    lambda path: path.write_text(json.dumps(summary, indent=2, default=str)))],
                  announce=lambda option, path: log(f"wrote {path}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), PROG)


if __name__ == "__main__":
    sys.exit(main())
