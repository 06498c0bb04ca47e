"""What a model file is: the ``fer`` spec stored with every exported model, wherever it lives.

The contract is in docs/architecture.md ("The model spec"): an ONNX file carries the spec's JSON under
the ``metadata_props`` key ``fer``, a TensorRT engine in ``<engine>.json`` beside it (with the build's
facts under ``"build"``), a Triton model in its config's ``fer`` parameter. Exporters write and runtimes
read it through the functions here, so the key, the sidecar's name and the error wording exist once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import FerError
from .spec import ModelSpec

METADATA_KEY = "fer"  # ONNX metadata_props key, Triton config parameter, checkpoint config.json section
ENGINE_SIDECAR_SUFFIX = ".json"  # cnn.engine -> cnn.engine.json


def spec_from_json(text: str | None, where: str) -> ModelSpec:
    """The spec in ``text``; ``where`` names the file or model in the error when there is none."""
    if not text:
        raise FerError(f"{where}: this model has no '{METADATA_KEY}' metadata, so its labels and preprocessing "
                       f"are unknown: export it with fer-export")
    try:
        return ModelSpec.from_metadata(json.loads(text))
    except json.JSONDecodeError as exc:
        raise FerError(f"the '{METADATA_KEY}' metadata of {where} is not JSON: {exc}") from exc
    except FerError as exc:
        raise FerError(f"{where}: {exc}") from exc


def open_onnx(path: str | os.PathLike, options: Any = None, providers: list[str] | None = None):
    """An onnxruntime session for ``path`` and the spec it carries; a bad file is one error naming it."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FerError(f"model file not found: {path}" if not path.is_dir() else
                       f"{path} is a folder: pass an exported model file (.onnx)")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise FerError(f"onnxruntime cannot load {path} (is it an ONNX model from fer-export?): "
                       f"{str(exc).strip().splitlines()[0]}") from exc
    return session, onnx_session_spec(session, str(path))


def onnx_session_spec(session, where: str) -> ModelSpec:
    return spec_from_json(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), where)


def set_onnx_spec(model, spec: ModelSpec) -> None:
    """Store ``spec`` in an ``onnx.ModelProto``, replacing any earlier one."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    model.metadata_props.add(key=METADATA_KEY, value=spec.to_json())


def engine_sidecar(engine_path: str | os.PathLike) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ENGINE_SIDECAR_SUFFIX)


def read_engine_sidecar(engine_path: str | os.PathLike) -> tuple[ModelSpec, dict]:
    """The spec of a TensorRT engine and its build facts (``{}`` when the sidecar has none)."""
    sidecar = engine_sidecar(engine_path)
    if not sidecar.is_file():
        raise FerError(f"{engine_path} has no metadata file beside it ({sidecar.name}): build engines with "
                       f"fer-export --tensorrt")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FerError(f"{sidecar} is not valid JSON: {exc}") from exc
    build = meta.pop("build", {})
    return spec_from_json(json.dumps(meta), str(sidecar)), build


def engine_build_facts(engine_path: str | os.PathLike) -> dict:
    """The ``build`` facts of an engine's sidecar, ``{}`` if it is missing or unreadable."""
    try:
        return json.loads(engine_sidecar(engine_path).read_text()).get("build", {})
    except (OSError, ValueError):
        return {}


def write_engine_sidecar(engine_path: str | os.PathLike, spec: ModelSpec, build: Mapping[str, Any]) -> Path:
    from .outputs import write_atomically

    meta = {**spec.to_metadata(), "build": dict(build)}
    return write_atomically(engine_sidecar(engine_path), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
