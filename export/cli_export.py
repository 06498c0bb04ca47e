"""``fer-export``: a trained model to self-describing ONNX (fp32, int8, fp16) and TensorRT engines,
each verified against PyTorch, and optionally a Triton Inference Server model repository for them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fer_engine.cli import add_verbose, int_between, non_negative_int, positive_int, run_cli
from fer_engine.progress import bar, write

from .onnx_export import MAX_OPSET, MIN_OPSET
from .triton_repo import DEFAULT_MAX_BATCH  # one default for TensorRT profiles and Triton's max_batch_size
from .verify import Weights



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-export", description=__doc__,
        epilog="Examples: fer-export --model cnn --checkpoint checkpoints/cnn --int8 "
               "--calibration-data fer2013.csv.gz --out exports/cnn --triton triton-models; "
               "fer-export --triton triton-models --from-file runtime/models/cnn-int8.onnx")
    p.add_argument("--model", help="cnn, vit, convnext or convnextv2 (required unless --from-file)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="DIR", help="a fer-train checkpoint folder (cnn default: checkpoints/cnn)")
    src.add_argument("--pretrained", metavar="ID_OR_DIR",
                     help="a Hugging Face hub id or local folder (HF models; default for vit/convnext/convnextv2: the "
                          "published FER2013 fine-tune of the project fer-engine replaces, see fer-train --list-models)")
    p.add_argument("--new-head", action="store_true",
                   help="with --pretrained: replace an emotion model's head by a new, untrained one (by default it is "
                        "kept and its labels mapped onto ours)")
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
    p.add_argument("--calibration-size", type=positive_int, default=500, help="calibration faces (default: 500)")
    p.add_argument("--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip malformed rows or images of --calibration-data, counting them")
    p.add_argument("--fp16", action="store_true", help="also write an fp16 model (for GPUs)")
    p.add_argument("--tensorrt", action="store_true", help="build TensorRT engines (fp16, and int8 with --int8)")
    p.add_argument("--dla-core", type=non_negative_int, help="build the TensorRT engine for this DLA core (Jetson)")
    p.add_argument("--opset", type=int_between(MIN_OPSET, MAX_OPSET), default=17,
                   help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default: 17, which TensorRT 8.6 also reads)")
    p.add_argument("--max-batch", type=positive_int,
                   help=f"largest batch of the TensorRT profile and of the Triton model (default: {DEFAULT_MAX_BATCH}; "
                        "for an existing engine, the batch it was built for)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: exports/MODEL)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    p.add_argument("--verify-size", type=positive_int, metavar="N",
                   help="verify on the first N PublicTest faces (default: all; 256 random faces without data)")
    t = p.add_argument_group("Triton Inference Server (docs/triton.md)")
    t.add_argument("--triton", metavar="REPO_DIR",
                   help="also write a Triton model repository: REPO_DIR/<name>/config.pbtxt and 1/model.onnx|model.plan")
    t.add_argument("--triton-kind", default="gpu", choices=["gpu", "cpu"],
                   help="where Triton runs the model instances (default: gpu)")
    t.add_argument("--triton-instances", type=positive_int, default=1,
                   help="model instances (per GPU for gpu; default: 1)")
    t.add_argument("--triton-queue-delay-us", type=non_negative_int, default=1000,
                   help="how long Triton's dynamic batcher waits to fill a batch, in microseconds (default: 1000)")
    t.add_argument("--triton-preferred-batch", type=positive_int, nargs="+", metavar="N",
                   help="batch sizes the dynamic batcher aims for (default: none, as large as the queue allows)")
    add_verbose(p)
    return p


@dataclass
class Inputs:
    """What the export reads from --calibration-data, read before any file is written."""

    calibration: object  # uint8 faces [N, 48, 48] for static int8 and TensorRT int8, or None
    verify_faces: object  # uint8 faces, or None with --no-verify
    verify_labels: object  # labels of verify_faces, or None (random faces)
    verify_described: str = ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from fer_engine.errors import FerError
        from fer_engine.formats import export_flags, selected_formats
        from fer_engine.outputs import check_outputs

        from .job import ExportJob

        triton_options = _triton_options(args) if args.triton else None
        if args.from_file:
            if not args.triton:
                raise FerError("--from-file only writes a Triton repository: add --triton REPO_DIR")
            check_outputs(folders={"--triton": args.triton})
            from fer_engine.runtime.backends import resolve_model

            _triton(args, [resolve_model(name) for name in args.from_file], triton_options)
            return 0
        if not args.model:
            raise FerError("say which model to export: --model cnn|vit|convnext|convnextv2 "
                           "(or --from-file PATH --triton REPO_DIR for a file exported before)")
        int8_mode = _check_options(args, triton_options)
        out = Path(args.out or f"exports/{args.model}")
        check_outputs(folders={"--out": out, "--triton": args.triton})
        inputs = _read_inputs(args, needs_calibration=int8_mode == "static" or (args.tensorrt and args.int8))
        built, weights = _load_source(args)
        job = ExportJob(built, out, args.opset, int8_mode or args.int8_mode, inputs.calibration,
                        args.calibration_method, args.max_batch or DEFAULT_MAX_BATCH, args.dla_core)
        formats = selected_formats(flag for flag in export_flags() if getattr(args, flag))
        engines = [f for f in formats if f.kind == "tensorrt"]
        if engines:
            _check_tensorrt(job, engines)
        with _removed_if_left_empty(out):
            return _export(args, job, weights, inputs, formats, triton_options)

    return run_cli(body, "fer-export", verbose=args.verbose)


def _check_options(args, triton_options) -> str | None:
    """Refuse combinations that cannot work before anything is read or written; returns the int8 mode."""
    from fer_engine.errors import FerError
    from fer_engine.train.data import check_data_path
    from fer_engine.train.models import get_family

    from .quantize import NEEDS_CALIBRATION, resolve_mode

    get_family(args.model)
    if args.tensorrt and triton_options and triton_options.kind == "cpu":
        raise FerError("TensorRT engines run on a GPU only: drop --tensorrt or use --triton-kind gpu")
    too_big = [n for n in args.triton_preferred_batch or () if n > (args.max_batch or DEFAULT_MAX_BATCH)]
    if args.triton and too_big:
        raise FerError(f"--triton-preferred-batch {' '.join(map(str, too_big))} exceeds the max batch size "
                       f"{args.max_batch or DEFAULT_MAX_BATCH}: raise --max-batch or lower the preferred batch")
    int8_mode = resolve_mode(args.int8_mode, args.model) if args.int8 else None
    if not args.calibration_data:
        if int8_mode == "static":
            raise FerError(f"{NEEDS_CALIBRATION} (--int8-mode auto is static for {args.model})"
                           if args.int8_mode == "auto" else NEEDS_CALIBRATION)
        if args.tensorrt and args.int8:
            raise FerError("a TensorRT int8 engine needs calibration faces: pass --calibration-data fer2013.csv.gz")
    else:
        check_data_path(args.calibration_data)
    return int8_mode


def _read_inputs(args, needs_calibration: bool) -> Inputs:
    """Calibration and verification faces: a bad data file stops the export before it writes anything."""
    from fer_engine.train.data import load_fer2013

    from .quantize import pick_calibration_faces
    from .verify import verification_faces

    data = None
    if args.calibration_data and (needs_calibration or not args.no_verify):
        data = load_fer2013(args.calibration_data, skip_bad_rows=args.skip_bad_rows)
        if args.skip_bad_rows:
            print(data.skipped_note())
    calibration = pick_calibration_faces(data, args.calibration_size) if needs_calibration else None
    if args.no_verify:
        return Inputs(calibration, None, None)
    return Inputs(calibration, *verification_faces(data, args.verify_size))


def _load_source(args) -> tuple[object, Weights]:
    """The model (a ``BuiltModel``) and whether its weights were trained on FER2013."""
    from fer_engine.errors import FerError
    from fer_engine.train.checkpoint import load_checkpoint
    from fer_engine.train.models import BuiltModel, create_model, get_family

    if args.from_config:
        built = create_model(args.model, from_config=args.from_config)
        return built, Weights(False, f"--from-config {args.from_config}")
    finetuned = get_family(args.model).finetuned_id
    pretrained = args.pretrained or (finetuned if not args.checkpoint else None)
    if pretrained:
        built = create_model(args.model, pretrained=pretrained, new_head=args.new_head)
        if get_family(args.model).finetuned_id is None or built.arch.get("head_imported"):  # ours: a fer-train checkpoint
            return built, Weights(True, f"--pretrained {pretrained}")
        return built, Weights(False, f"--pretrained {pretrained} with a new, untrained 7-emotion head")
    checkpoint = args.checkpoint or get_family(args.model).default_checkpoint
    if checkpoint is None:
        raise FerError("say what to export: --checkpoint DIR (from fer-train), --pretrained ID_OR_DIR or --from-config")
    ckpt = load_checkpoint(checkpoint, expect_model=args.model)
    return BuiltModel(ckpt.module, ckpt.spec, ckpt.arch), Weights(True, f"checkpoint {checkpoint}")


def _check_tensorrt(job, engines: list) -> None:
    """Print the trtexec commands, then refuse --tensorrt where TensorRT is missing, before any file is written."""
    from fer_engine.errors import FerError
    from fer_engine.runtime.cuda import import_tensorrt

    from .tensorrt import engine_request, trtexec_command

    spec = job.built.spec
    for engine in engines:
        request = engine_request(job, engine)
        placeholder = job.out / request.engine_name(spec, "XX")
        print(f"TensorRT {engine.precision}; the same with trtexec:\n  {trtexec_command(request, spec, placeholder)}")
    try:
        import_tensorrt()
    except FerError as exc:
        raise FerError(f"{exc} Or drop --tensorrt to write the ONNX files here.") from exc


@contextmanager
def _removed_if_left_empty(folder: Path) -> Iterator[None]:
    """An export that fails before its first file leaves no empty output folder behind (nor the parents it made)."""
    created = []
    path = folder.absolute()
    while not path.exists():
        created.append(path)
        path = path.parent
    try:
        yield
    except BaseException:
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break  # not empty (a file was written) or gone: keep what is there
        raise


def _export(args, job, weights: Weights, inputs: Inputs, formats: list, triton_options) -> int:
    """Each selected format made by its producer (fer_engine.formats), in table order; then verified, served
    and reported."""
    from fer_engine.outputs import write_atomically

    out = job.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"model": job.built.spec.model, "opset": args.opset, "weights": weights.to_dict(), "files": {}}
    files, engines = [], []
    with bar(total=len(formats), desc="exporting", unit="file") as shown:
        for fmt in formats:
            shown.set_description(f"exporting {fmt.name}")
            started = time.perf_counter()
            made = job.produce(fmt)
            write(f"{made.label}: {made.path} ({time.perf_counter() - started:.1f} s)")
            shown.update(1)
            report.update(made.report)
            if fmt.verified:
                files.append(made.path)
            else:
                engines.append(made.path)
                report.setdefault(fmt.kind, []).append({"precision": fmt.precision, "engine": str(made.path)})
    passed = True
    if not args.no_verify:
        report["verification"] = _verify(job.built, weights, inputs, files)
        passed = all(row["passed"] for row in report["verification"]["rows"])
    report["files"] = {p.name: p.stat().st_size for p in files}
    if args.triton and passed:
        report["triton"] = [str(f) for f in _triton(args, files + engines, triton_options)]
    write_atomically(out / "export_report.json", lambda path: path.write_text(json.dumps(report, indent=2)))
    print(f"report: {out / 'export_report.json'}")
    if not passed:
        print("fer-export: error: a verification threshold failed (see the table); the files are kept for "
              "inspection, or pass --no-verify", file=sys.stderr)
        return 1
    return 0


def _verify(built, weights: Weights, inputs: Inputs, files: list[Path]) -> dict:
    from fer_engine.runtime.preprocess import faces_to_pixel_values

    from .verify import format_table, torch_logits, verify_file

    pixel_values = faces_to_pixel_values(inputs.verify_faces, built.spec)
    with bar(total=len(pixel_values), desc="verifying: PyTorch", unit="face") as shown:
        reference = torch_logits(built.module, pixel_values, progress=shown)
    rows = []
    for path in files:  # a bar per file: the faces verified (minutes for a large model)
        with bar(total=len(pixel_values), desc=f"verifying {path.name}", unit="face") as shown:
            rows.append(verify_file(path, reference, pixel_values, inputs.verify_labels, trained=weights.trained,
                                    progress=shown))
    print(f"\nverified against PyTorch on {inputs.verify_described}; weights: {weights.describe()}\n{format_table(rows)}")
    return {"faces": inputs.verify_described, "weights": weights.to_dict(),
            "judged_by": "top-1 agreement and accuracy" if weights.trained else "logits: max |Δlogit| and correlation",
            "rows": [r.to_dict() for r in rows]}


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
