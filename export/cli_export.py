"""``fer-export``: a trained model to self-describing ONNX (fp32, int8, fp16) and TensorRT engines,
each verified against PyTorch, and optionally a Triton Inference Server model repository for them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fer_engine.cli import run_cli

from .triton_repo import DEFAULT_MAX_BATCH  # one default for TensorRT profiles and Triton's max_batch_size

DEFAULT_CHECKPOINTS = {"cnn": Path("checkpoints/cnn")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-export", description=__doc__,
        epilog="Examples: fer-export --model cnn --checkpoint checkpoints/cnn --int8 "
               "--calibration-data fer2013.csv.gz --out exports/cnn --triton triton-models; "
               "fer-export --triton triton-models --from-file runtime/models/cnn-int8.onnx")
    p.add_argument("--model", help="cnn, vit, convnext or convnextv2 (required unless --from-file)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="DIR", help="a fer-train checkpoint folder (cnn default: checkpoints/cnn)")
    src.add_argument("--pretrained", metavar="ID_OR_DIR", help="a Hugging Face hub id or local folder (HF models)")
    src.add_argument("--from-config", nargs="?", const="full", metavar="full|tiny|JSON",
                     help="an untrained model built from its config (speed work and tests)")
    src.add_argument("--from-file", action="append", metavar="PATH",
                     help="an already exported .onnx/.engine file or shipped model name (cnn-int8), repeatable: "
                          "only writes the --triton repository, without torch")
    p.add_argument("--int8", action="store_true", help="also write an int8 model")
    p.add_argument("--int8-mode", default="auto", choices=["auto", "static", "dynamic"],
                   help="auto: the faster mode for this architecture, as measured (default: auto)")
    p.add_argument("--calibration-data", metavar="PATH",
                   help="FER2013 csv(.gz) or image folder: Training faces calibrate int8, PublicTest faces verify")
    p.add_argument("--calibration-size", type=int, default=500, help="calibration faces (default: 500)")
    p.add_argument("--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--fp16", action="store_true", help="also write an fp16 model (for GPUs)")
    p.add_argument("--tensorrt", action="store_true", help="build TensorRT engines (fp16, and int8 with --int8)")
    p.add_argument("--dla-core", type=int, help="build the TensorRT engine for this DLA core (Jetson)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17, which TensorRT 8.6 also reads)")
    p.add_argument("--max-batch", type=int,
                   help=f"largest batch of the TensorRT profile and of the Triton model (default: {DEFAULT_MAX_BATCH}; "
                        "for an existing engine, the batch it was built for)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: exports/MODEL)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    p.add_argument("--verify-size", type=int, help="verify on the first N PublicTest faces (default: all)")
    t = p.add_argument_group("Triton Inference Server (docs/triton.md)")
    t.add_argument("--triton", metavar="REPO_DIR",
                   help="also write a Triton model repository: REPO_DIR/<name>/config.pbtxt and 1/model.onnx|model.plan")
    t.add_argument("--triton-kind", default="gpu", choices=["gpu", "cpu"],
                   help="where Triton runs the model instances (default: gpu)")
    t.add_argument("--triton-instances", type=int, default=1, help="model instances (per GPU for gpu; default: 1)")
    t.add_argument("--triton-queue-delay-us", type=int, default=1000,
                   help="how long Triton's dynamic batcher waits to fill a batch, in microseconds (default: 1000)")
    t.add_argument("--triton-preferred-batch", type=int, nargs="+", metavar="N",
                   help="batch sizes the dynamic batcher aims for (default: none, as large as the queue allows)")
    return p


def _load_source(args):
    from fer_engine.errors import FerError
    from fer_engine.train.checkpoint import load_checkpoint
    from fer_engine.train.models import BuiltModel, create_model, get_family

    get_family(args.model)
    if args.pretrained or args.from_config:
        return create_model(args.model, pretrained=args.pretrained, from_config=args.from_config)
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINTS.get(args.model)
    if checkpoint is None:
        raise FerError("say what to export: --checkpoint DIR (from fer-train), --pretrained ID_OR_DIR or --from-config")
    ckpt = load_checkpoint(checkpoint, expect_model=args.model)
    return BuiltModel(ckpt.module, ckpt.spec, ckpt.arch)


def _writable_folder(path: Path) -> Path:
    from fer_engine.errors import FerError

    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".fer-export-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise FerError(f"cannot write to the output folder {path}: {exc.strerror or exc}") from exc
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from fer_engine.errors import FerError

        if args.max_batch is not None and args.max_batch < 1:
            raise FerError("--max-batch must be at least 1")
        triton_options = _triton_options(args) if args.triton else None
        if args.from_file:
            if not args.triton:
                raise FerError("--from-file only writes a Triton repository: add --triton REPO_DIR")
            from fer_engine.runtime.backends import resolve_model

            _triton(args, [resolve_model(name) for name in args.from_file], triton_options)
            return 0
        if not args.model:
            raise FerError("say which model to export: --model cnn|vit|convnext|convnextv2 "
                           "(or --from-file PATH --triton REPO_DIR for a file exported before)")
        if args.tensorrt and triton_options and triton_options.kind == "cpu":
            raise FerError("TensorRT engines run on a GPU only: drop --tensorrt or use --triton-kind gpu")

        from .onnx_export import MAX_OPSET, MIN_OPSET, export_fp32

        if not MIN_OPSET <= args.opset <= MAX_OPSET:
            raise FerError(f"opset {args.opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET}")
        out = _writable_folder(Path(args.out or f"exports/{args.model}"))
        built = _load_source(args)
        name = built.spec.model
        started = time.perf_counter()
        files = [export_fp32(built, out / f"{name}.onnx", args.opset)]
        print(f"fp32: {files[0]} ({time.perf_counter() - started:.1f} s)")
        report: dict = {"model": name, "opset": args.opset, "files": {}}
        if args.int8:
            from .quantize import quantize

            started = time.perf_counter()
            path, mode = quantize(files[0], out / f"{name}-int8.onnx", built.spec, args.int8_mode,
                                  args.calibration_data, args.calibration_size, args.calibration_method)
            files.append(path)
            report["int8_mode"] = mode
            print(f"int8 ({mode}): {path} ({time.perf_counter() - started:.1f} s)")
        if args.fp16:
            from .fp16 import convert_fp16

            files.append(convert_fp16(files[0], out / f"{name}-fp16.onnx", built.spec))
            print(f"fp16: {files[-1]}")
        if args.tensorrt:
            report["tensorrt"] = _tensorrt(args, built, files[0], out)
        passed = True
        if not args.no_verify:
            from .verify import format_table, torch_logits, verification_faces, verify_file
            from fer_engine.runtime.preprocess import faces_to_pixel_values

            faces, labels, described = verification_faces(args.calibration_data, args.verify_size)
            pixel_values = faces_to_pixel_values(faces, built.spec)
            reference = torch_logits(built.module, pixel_values)
            rows = [verify_file(path, reference, pixel_values, labels) for path in files]
            print(f"\nverified against PyTorch on {described}\n{format_table(rows)}")
            report["verification"] = {"faces": described, "rows": [r.to_dict() for r in rows]}
            passed = all(r.passed for r in rows)
        report["files"] = {p.name: p.stat().st_size for p in files}
        if args.triton and passed:
            engines = [Path(e["engine"]) for e in report.get("tensorrt", [])]
            report["triton"] = [str(f) for f in _triton(args, files + engines, triton_options)]
        (out / "export_report.json").write_text(json.dumps(report, indent=2))
        print(f"report: {out / 'export_report.json'}")
        if not passed:
            print("fer-export: error: a verification threshold failed (see the table); the files are kept for "
                  "inspection, or pass --no-verify", file=sys.stderr)
            return 1
        return 0

    return run_cli(body, "fer-export")


def _tensorrt(args, built, onnx_path: Path, out: Path) -> list[dict]:
    from .tensorrt import EngineRequest, build_engine, trtexec_command

    results = []
    for precision in ["fp16"] + (["int8"] if args.int8 else []):
        request = EngineRequest(onnx_path, out, precision, args.max_batch or DEFAULT_MAX_BATCH, dla_core=args.dla_core)
        placeholder = out / request.engine_name(built.spec, "XX")
        print(f"TensorRT {precision}; the same with trtexec:\n  {trtexec_command(request, built.spec, placeholder)}")
        calibration = None
        if precision == "int8":
            from .quantize import calibration_faces

            calibration = calibration_faces(args.calibration_data, args.calibration_size)
        engine = build_engine(request, built.spec, calibration)
        print(f"engine: {engine}")
        results.append({"precision": precision, "engine": str(engine)})
    return results


def _triton_options(args):
    from .triton_repo import TritonOptions

    return TritonOptions(max_batch_size=args.max_batch, kind=args.triton_kind, instances=args.triton_instances,
                         max_queue_delay_us=args.triton_queue_delay_us,
                         preferred_batch_sizes=tuple(args.triton_preferred_batch or ()))


def _triton(args, files: list[Path], options) -> list[Path]:
    from .triton_repo import write_repository

    folders = write_repository(files, args.triton, options)
    for folder in folders:
        print(f"triton: {folder}")
    print(f"serve with: tritonserver --model-repository={Path(args.triton).resolve()}  (docs/triton.md)")
    return folders


if __name__ == "__main__":
    sys.exit(main())
