"""A TensorRT engine from an exported ONNX file, without torch: ``python -m fer_engine.export.build_engine``.

``fer-export --tensorrt`` exports from a checkpoint, so it needs torch. A Jetson or a GPU server with the
runtime-only install has the shipped (or a copied) ONNX file instead; this builds the engine there, on the
device that will run it, with the same builder (:func:`fer_engine.export.tensorrt.build_engine`):

    python -m fer_engine.export.build_engine --onnx cnn --out engines              # fp16
    python -m fer_engine.export.build_engine --onnx cnn --out engines --dla-core 0 # on a DLA (Jetson)
    python -m fer_engine.export.build_engine --onnx cnn --precision int8 --calibration-data fer2013.csv.gz
    python -m fer_engine.export.build_engine --onnx cnn --dry-run                   # the trtexec command only

Progress goes to stderr; the engine's path is the only line on stdout, so scripts can take it with
``ENGINE=$(python -m fer_engine.export.build_engine ...)``. An engine is reused only when its recorded build
key matches (``export.tensorrt.build_key``: ONNX content, shapes, precision, workspace, DLA core, calibration
faces, TensorRT version, GPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_engine.cli import non_negative_int, positive_int, run_cli
from fer_engine.errors import FerError
from fer_engine.formats import formats_of_kind, kind_of

PROG = "python -m fer_engine.export.build_engine"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Build a TensorRT engine from an exported ONNX file (no torch).")
    p.add_argument("--onnx", default="cnn", metavar="PATH|NAME",
                   help="fp32 ONNX file from fer-export, or a shipped model name (default: cnn)")
    p.add_argument("--out", default="engines", metavar="DIR", help="engine folder, reused as a cache (default: engines)")
    p.add_argument("--precision", default="fp16", choices=[f.precision for f in formats_of_kind("tensorrt")],
                   help="engine precision (default: fp16)")
    p.add_argument("--max-batch", type=positive_int, default=32,
                   help="largest batch of the optimization profile (default: 32)")
    p.add_argument("--opt-batch", type=positive_int, help="batch TensorRT tunes for, at most --max-batch (default: min(8, max batch))")
    p.add_argument("--workspace-mb", type=positive_int, default=1024, help="builder workspace in MiB (default: 1024)")
    p.add_argument("--dla-core", type=non_negative_int,
                   help="build for this DLA core, GPU fallback on (Jetson AGX Orin, Orin NX, Xavier)")
    p.add_argument("--calibration-data", metavar="PATH",
                   help="int8: FER2013 csv(.gz) or image folder whose Training faces calibrate (a saved cache is reused)")
    p.add_argument("--calibration-size", type=positive_int, default=500, help="int8: calibration faces (default: 500)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images of --calibration-data")
    p.add_argument("--dry-run", action="store_true", help="print the equivalent trtexec command and stop (no TensorRT needed)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Every number is checked here, before anything is read: each alone by its type, then --opt-batch against
    --max-batch."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.opt_batch is not None and args.opt_batch > args.max_batch:
        parser.error(f"argument --opt-batch: {args.opt_batch} is above --max-batch ({args.max_batch}); "
                     "it must be between 1 and --max-batch")
    return args


def _source(name_or_path: str):
    """The ONNX file and its ``fer`` spec; only fp32 files, as fer-export --tensorrt uses."""
    from fer_engine.runtime.backends import resolve_model
    from fer_engine.modelfile import open_onnx

    path = resolve_model(name_or_path)
    if kind_of(path) != "onnx":
        raise FerError(f"{path} is not an ONNX file: pass the .onnx file exported by fer-export")
    _, spec = open_onnx(path)
    if spec.precision != "fp32":
        raise FerError(f"{path.name} is an {spec.precision} model: build engines from the fp32 ONNX file (the shipped "
                       "one is 'cnn'); TensorRT makes the fp16 or int8 engine itself")
    return path, spec


def _check_dla(trt, dla_core: int | None) -> None:
    if dla_core is None:
        return
    cores = trt.Builder(trt.Logger(trt.Logger.WARNING)).num_DLA_cores
    if dla_core >= cores:
        raise FerError(f"--dla-core {dla_core}: this device has {cores} DLA core(s). Jetson AGX Orin, Orin NX, AGX Xavier "
                       "and Xavier NX have DLA; Orin Nano and GPUs outside Jetson have none: drop --dla-core")


def _calibration_faces(data_path: str, size: int, skip_bad_rows: bool):
    """The same Training faces fer-export calibrates on (fixed seed)."""
    try:
        from .quantize import calibration_faces
    except ImportError as exc:  # export/quantize.py imports onnx, which the runtime-only install lacks
        raise FerError(f"int8 calibration from FER2013 needs the 'onnx' package here ({exc}): pip install onnx, or "
                       "build fp16, or put the int8 calibration cache of an earlier build in --out") from exc
    return calibration_faces(data_path, size, skip_bad_rows=skip_bad_rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        from fer_engine.outputs import check_outputs

        from .tensorrt import EngineRequest, build_engine, trtexec_command

        check_outputs(folders={"--out": args.out})
        if args.calibration_data:
            from fer_engine.train.data import check_data_path

            check_data_path(args.calibration_data)
        onnx_path, spec = _source(args.onnx)
        request = EngineRequest(onnx_path, Path(args.out), args.precision, args.max_batch, args.opt_batch,
                                args.workspace_mb, args.dla_core)
        placeholder = request.out_dir / request.engine_name(spec, "XX")
        if args.dry_run:
            print(f"engine: {placeholder} (XX: the GPU's compute capability, e.g. 87 on Jetson Orin)", file=sys.stderr)
            print(trtexec_command(request, spec, placeholder))
            return 0
        print(f"TensorRT {args.precision} engine for {onnx_path}; the same with trtexec:\n  "
              f"{trtexec_command(request, spec, placeholder)}", file=sys.stderr)
        from fer_engine.runtime.cuda import import_tensorrt

        _check_dla(import_tensorrt(), args.dla_core)
        calibration = None
        if args.precision == "int8" and args.calibration_data:
            calibration = _calibration_faces(args.calibration_data, args.calibration_size, args.skip_bad_rows)
        engine = build_engine(request, spec, calibration, log=lambda message: print(message, file=sys.stderr))
        print(engine)
        return 0

    return run_cli(body, PROG)


if __name__ == "__main__":
    sys.exit(main())
