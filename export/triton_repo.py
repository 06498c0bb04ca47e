"""A Triton Inference Server model repository for exported models: ``REPO/<name>/config.pbtxt`` and
``REPO/<name>/1/model.onnx`` (or ``model.plan`` for a TensorRT engine).

torch-free (onnxruntime reads the ONNX graph), so it also runs on files exported earlier. The model's
``fer`` metadata goes into the config as the string parameter ``fer`` (the same JSON as in the ONNX
file), which a client reads from the server's model configuration endpoint.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fer_engine.errors import FerError
from fer_engine.formats import kind_of
from fer_engine.modelfile import METADATA_KEY, open_onnx, read_engine_sidecar  # the client reads what this writes

DEFAULT_MAX_BATCH = 32
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
# onnxruntime's element types → Triton's data types.
ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
             "tensor(bfloat16)": "TYPE_BF16", "tensor(int8)": "TYPE_INT8", "tensor(uint8)": "TYPE_UINT8",
             "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64", "tensor(bool)": "TYPE_BOOL"}


@dataclass(frozen=True)
class TritonOptions:
    """How Triton serves each model: batching and where its instances run."""

    max_batch_size: int | None = None  # None: 32 for ONNX, the engine's own maximum for TensorRT
    kind: str = "gpu"  # gpu | cpu
    instances: int = 1  # execution instances (per GPU for gpu)
    max_queue_delay_us: int = 1000  # how long the dynamic batcher waits for more requests
    preferred_batch_sizes: tuple[int, ...] = ()  # batches the batcher aims for; empty: as large as possible

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FerError(f"Triton instance kind '{self.kind}' is unknown: choose {' or '.join(KINDS)}")
        if self.instances < 1:
            raise FerError("the Triton instance count must be at least 1")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise FerError("the Triton max batch size must be at least 1")
        if self.max_queue_delay_us < 0:
            raise FerError("the Triton queue delay cannot be negative")


@dataclass(frozen=True)
class TensorConfig:
    name: str
    data_type: str
    dims: tuple[int, ...]  # without the batch dimension; -1 where variable


@dataclass(frozen=True)
class ModelConfig:
    """The part of Triton's ``ModelConfig`` protobuf that we write."""

    name: str
    platform: str  # onnxruntime_onnx | tensorrt_plan
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    kind: str = "KIND_GPU"
    instances: int = 1
    max_queue_delay_us: int = 1000
    preferred_batch_sizes: tuple[int, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)

    def to_pbtxt(self) -> str:
        def tensors(section: str, items: tuple[TensorConfig, ...]) -> list[str]:
            body = ",\n".join(f"  {{\n    name: {_quote(t.name)}\n    data_type: {t.data_type}\n"
                              f"    dims: [ {', '.join(map(str, t.dims))} ]\n  }}" for t in items)
            return [f"{section} [", body, "]"]

        lines = [f"name: {_quote(self.name)}", f"platform: {_quote(self.platform)}",
                 f"max_batch_size: {self.max_batch_size}"]
        lines += tensors("input", self.inputs) + tensors("output", self.outputs)
        batching = [f"  max_queue_delay_microseconds: {self.max_queue_delay_us}"]
        if self.preferred_batch_sizes:
            batching.insert(0, f"  preferred_batch_size: [ {', '.join(map(str, self.preferred_batch_sizes))} ]")
        lines += ["dynamic_batching {", *batching, "}"]
        lines += ["instance_group [", f"  {{\n    kind: {self.kind}\n    count: {self.instances}\n  }}", "]"]
        for key, value in self.parameters.items():
            lines += ["parameters {", f"  key: {_quote(key)}", f"  value: {{ string_value: {_quote(value)} }}", "}"]
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A protobuf text-format string: double-quoted, or single-quoted when it holds JSON, which stays readable."""
    quote = "'" if '"' in text else '"'
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n") + quote


def triton_name(path: Path) -> str:
    """``cnn-int8.onnx`` → ``cnn_int8``: a name that is safe as a folder and in a URL."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", path.stem).strip("_") or "model"


def _serving(options: TritonOptions, spec) -> dict:
    """The ModelConfig fields that come from the options and the spec, whatever the platform."""
    return dict(kind=KINDS[options.kind], instances=options.instances, max_queue_delay_us=options.max_queue_delay_us,
                preferred_batch_sizes=options.preferred_batch_sizes, parameters={METADATA_KEY: spec.to_json()})


def _onnx_config(path: Path, name: str, options: TritonOptions) -> ModelConfig:
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only the I/O is read
    session_options.intra_op_num_threads = 1
    session, spec = open_onnx(path, session_options)

    def tensor(arg) -> TensorConfig:
        if arg.type not in ORT_TYPES:
            raise FerError(f"{path}: tensor '{arg.name}' has type {arg.type}, which Triton's config cannot describe")
        batch, *rest = arg.shape
        if isinstance(batch, int):
            raise FerError(f"{path}: the first dimension of '{arg.name}' is fixed ({batch}), so Triton cannot batch "
                           "it; export with a dynamic batch dimension (fer-export does)")
        return TensorConfig(arg.name, ORT_TYPES[arg.type], tuple(d if isinstance(d, int) else -1 for d in rest))

    return ModelConfig(
        name=name, platform="onnxruntime_onnx", max_batch_size=options.max_batch_size or DEFAULT_MAX_BATCH,
        inputs=tuple(tensor(a) for a in session.get_inputs()), outputs=tuple(tensor(a) for a in session.get_outputs()),
        **_serving(options, spec))


def _engine_config(path: Path, name: str, options: TritonOptions) -> ModelConfig:

    spec, build = read_engine_sidecar(path)
    if options.kind != "gpu":
        raise FerError(f"{path} is a TensorRT engine: Triton runs it on a GPU only (use kind gpu)")
    engine_max = int(build.get("max_batch", DEFAULT_MAX_BATCH))
    max_batch = options.max_batch_size or engine_max
    if max_batch > engine_max:
        raise FerError(f"{path} was built for batches up to {engine_max}: choose a Triton max batch size of at most "
                       f"{engine_max}, or rebuild the engine with fer-export --tensorrt --max-batch {max_batch}")
    height, width = spec.image_size
    # fer-export's engines keep the ONNX file's names and float32 I/O (docs/architecture.md), whatever their precision.
    return ModelConfig(
        name=name, platform="tensorrt_plan", max_batch_size=max_batch,
        inputs=(TensorConfig("pixel_values", "TYPE_FP32", (spec.channels, height, width)),),
        outputs=(TensorConfig("logits", "TYPE_FP32", (len(spec.labels),)),), **_serving(options, spec))


def model_config(path: str | Path, options: TritonOptions | None = None, name: str | None = None) -> ModelConfig:
    """The Triton configuration of an exported model (``.onnx``, or ``.engine``/``.plan`` with its ``.json``)."""
    path = Path(path)
    options = options or TritonOptions()
    if not path.is_file():
        raise FerError(f"model file not found: {path}")
    name = name or triton_name(path)
    configs = {"onnx": _onnx_config, "tensorrt": _engine_config}  # by the kind of format (fer_engine.formats)
    kind = kind_of(path)
    if kind not in configs:
        raise FerError(f"cannot serve '{path.name}' with Triton: pass an .onnx file or a TensorRT .engine/.plan")
    config = configs[kind](path, name, options)
    too_big = [size for size in config.preferred_batch_sizes if size > config.max_batch_size]
    if too_big:
        raise FerError(f"preferred batch sizes {too_big} exceed the max batch size {config.max_batch_size}")
    return config


def write_model(path: str | Path, repo: str | Path, options: TritonOptions | None = None,
                name: str | None = None) -> Path:
    """Write ``repo/<name>/config.pbtxt`` and ``repo/<name>/1/model.onnx|model.plan``; returns the model folder."""
    path = Path(path)
    config = model_config(path, options, name)
    folder = Path(repo) / config.name
    version = folder / "1"
    try:
        version.mkdir(parents=True, exist_ok=True)
        target = version / ("model.onnx" if config.platform == "onnxruntime_onnx" else "model.plan")
        for old in version.glob("model.*"):
            old.unlink()
        shutil.copyfile(path, target)
        (folder / "config.pbtxt").write_text(config.to_pbtxt())
    except OSError as exc:
        raise FerError(f"cannot write the Triton repository {repo}: {exc.strerror or exc}") from exc
    return folder


def write_repository(paths, repo: str | Path, options: TritonOptions | None = None) -> list[Path]:
    """One Triton model per exported file, named after the file (``cnn-int8.onnx`` → ``cnn_int8``)."""
    paths = [Path(p) for p in paths]
    names = [triton_name(p) for p in paths]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FerError(f"two files would be served under the same Triton name ({', '.join(duplicates)}): rename one")
    return [write_model(p, repo, options) for p in paths]

