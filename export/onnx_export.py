"""fp32 ONNX export with the ``fer`` metadata: ``cnn`` through ``torch.onnx.export``, the Hugging Face
models through optimum's ``main_export``. Input ``pixel_values`` [N, C, H, W] with a dynamic batch axis,
output ``logits`` [N, 7]."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from fer_engine.errors import FerError
from fer_engine.modelfile import set_onnx_spec
from fer_engine.outputs import write_atomically
from fer_engine.spec import ModelSpec

from .job import Produced

if TYPE_CHECKING:
    from fer_engine.formats import Format

    from .job import ExportJob

MIN_OPSET, MAX_OPSET = 13, 21


def save_model(model: onnx.ModelProto, spec: ModelSpec, path: Path) -> None:
    """Store ``spec`` in the model and write it whole or not at all (no valid-looking half file)."""
    set_onnx_spec(model, spec)
    write_atomically(path, lambda tmp: onnx.save(model, str(tmp)))


def export_fp32(built, out: Path, opset: int) -> Path:
    """``built``: a ``BuiltModel`` (module, spec). Writes ``out`` (a .onnx path) and returns it."""
    import torch

    from fer_engine.train.models import get_family

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise FerError(f"opset {opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET}")
    spec = built.spec
    module = built.module.eval().to("cpu").to(memory_format=torch.contiguous_format)
    with tempfile.TemporaryDirectory(prefix="fer-export-") as tmp:
        raw = Path(tmp) / "model.onnx"
        if get_family(spec.model).exporter == "torch":
            dummy = torch.zeros(1, spec.channels, *spec.image_size)
            torch.onnx.export(module, (dummy,), str(raw), input_names=["pixel_values"], output_names=["logits"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=opset, dynamo=False)
        else:
            _optimum_export(module.hf, Path(tmp), opset)
        model = onnx.load(str(raw))
    _check_io(model)
    _inline_constant_identities(model)
    save_model(model, spec, out)
    return out


def produce_fp32(job: ExportJob, fmt: Format) -> Produced:
    return Produced(export_fp32(job.built, job.path(fmt), job.opset), fmt.precision)


def _optimum_export(hf_model, folder: Path, opset: int) -> None:
    from optimum.exporters.onnx import main_export

    source = folder / "hf"
    hf_model.save_pretrained(str(source), safe_serialization=True)
    main_export(str(source), output=str(folder), task="image-classification", opset=opset, device="cpu",
                do_validation=False)
    shutil.rmtree(source, ignore_errors=True)


def _inline_constant_identities(model: onnx.ModelProto) -> None:
    """The TorchScript exporter shares equal weights through Identity nodes; quantizers expect each
    Conv/Gemm weight to be an initializer, so give every such output its own initializer."""
    initializers = {i.name: i for i in model.graph.initializer}
    for node in list(model.graph.node):
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
            model.graph.node.remove(node)


def _check_io(model: onnx.ModelProto) -> None:
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs[:1] != ["pixel_values"] or outputs[:1] != ["logits"]:
        raise FerError(f"exported graph has inputs {inputs} and outputs {outputs}, expected pixel_values -> logits")
