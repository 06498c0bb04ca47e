"""Classifier backends chosen by model-file suffix (from the format table); shipped models by name.

``.onnx`` → ONNX Runtime (providers TensorRT > CUDA > CPU by what is installed), ``.engine`` / ``.plan``
→ TensorRT, as fer_engine.formats says; the URLs ``triton://HOST:PORT/MODEL`` (gRPC) and
``triton+http://HOST:PORT/MODEL`` → a model served by Triton Inference Server. Each backend gives ``spec``,
``providers``, ``description`` and ``predict_logits`` / ``predict_probs``; the backend module is imported
only when its suffix or scheme is chosen.
"""

from __future__ import annotations

from pathlib import Path

from fer_engine.errors import FerError
from fer_engine.formats import import_ref, suffix_runtimes
from fer_engine.spec import did_you_mean

SHIPPED_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "cnn-int8"

# suffix → "module:Class"; a new file format is an entry of the format table (core/formats.py).
BACKENDS: dict[str, str] = suffix_runtimes()
# URL scheme → "module:Class", for models served elsewhere.
URL_BACKENDS: dict[str, str] = {
    scheme: "fer_engine.runtime.triton_model:TritonClassifier" for scheme in ("triton", "triton+grpc", "triton+http")
}


def shipped_models() -> dict[str, Path]:
    return {path.stem: path for path in sorted(SHIPPED_DIR.glob("*.onnx"))}


def resolve_model(name_or_path: str | None) -> Path:
    """A model file from a path or the name of a shipped model (``cnn-int8``, ``cnn``)."""
    name_or_path = name_or_path or DEFAULT_MODEL
    shipped = shipped_models()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise FerError(f"{path} is a folder: pass an exported model file (.onnx, .engine); "
                       "export a checkpoint with fer-export first")
    hint = did_you_mean(name_or_path, shipped)
    raise FerError(f"model '{name_or_path}' is neither a file nor a shipped model "
                   f"({', '.join(shipped) or 'none shipped'}).{hint}")


def load_classifier(model: str | None = None, providers: list[str] | None = None, threads: int | None = None):
    scheme = model.split("://", 1)[0].lower() if model and "://" in model else None
    if scheme in URL_BACKENDS:
        return import_ref(URL_BACKENDS[scheme])(model, providers=providers, threads=threads)
    path = resolve_model(model)
    suffix = path.suffix.lower()
    if suffix not in BACKENDS:
        raise FerError(f"no backend for '{path.name}': model files must end in {', '.join(BACKENDS)}")
    return import_ref(BACKENDS[suffix])(path, providers=providers, threads=threads)
