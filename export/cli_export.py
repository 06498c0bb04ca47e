"""``fer-export``: a trained model to self-describing ONNX (fp32, int8, fp16) and TensorRT engines,
each verified against PyTorch."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fer_engine.cli import run_cli

DEFAULT_CHECKPOINTS = {"cnn": Path("checkpoints/cnn")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-export", description=__doc__,
        epilog="Example: fer-export --model cnn --checkpoint checkpoints/cnn --int8 "
               "--calibration-data fer2013.csv.gz --out exports/cnn")
    p.add_argument("--model", required=True, help="cnn, vit, convnext or convnextv2")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="DIR", help="a fer-train checkpoint folder (cnn default: checkpoints/cnn)")
    src.add_argument("--pretrained", metavar="ID_OR_DIR", help="a Hugging Face hub id or local folder (HF models)")
    src.add_argument("--from-config", nargs="?", const="full", metavar="full|tiny|JSON",
                     help="an untrained model built from its config (speed work and tests)")
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
    p.add_argument("--max-batch", type=int, default=32, help="largest batch of the TensorRT profile (default: 32)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: exports/MODEL)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    p.add_argument("--verify-size", type=int, help="verify on the first N PublicTest faces (default: all)")
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

        from .onnx_export import MAX_OPSET, MIN_OPSET, export_fp32

        if not MIN_OPSET <= args.opset <= MAX_OPSET:
            raise FerError(f"opset {args.opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET}")
        if args.max_batch < 1:
            raise FerError("--max-batch must be at least 1")
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
        request = EngineRequest(onnx_path, out, precision, args.max_batch, dla_core=args.dla_core)
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


if __name__ == "__main__":
    sys.exit(main())
