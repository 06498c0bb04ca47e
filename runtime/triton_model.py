"""A model served by NVIDIA Triton Inference Server as a classifier, so many fer-run processes share one server.

Model references are URLs: ``triton://HOST[:PORT]/MODEL[/VERSION]`` (gRPC, default port 8001) or
``triton+http://HOST[:PORT]/MODEL[/VERSION]`` (HTTP, default port 8000); ``triton+grpc://`` is the same as
``triton://``. The ``fer`` metadata (labels, input size, mean, std) comes from the server: the string
parameter ``fer`` of the model's configuration, which ``fer-export --triton`` writes. Needs ``tritonclient``
(``pip install 'fer-engine[triton]'``); never torch.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from fer_engine.errors import FerError
from fer_engine.modelfile import METADATA_KEY, spec_from_json
from fer_engine.spec import ModelSpec, did_you_mean

from .classifier import BatchedClassifier

# scheme → (protocol, default port)
SCHEMES = {"triton": ("grpc", 8001), "triton+grpc": ("grpc", 8001), "triton+http": ("http", 8000)}
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TritonRef:
    protocol: str  # grpc | http
    host: str
    port: int
    model: str
    version: str = ""  # "" = the server's choice (its latest)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        scheme = "triton" if self.protocol == "grpc" else "triton+http"
        return f"{scheme}://{self.address}/{self.model}" + (f"/{self.version}" if self.version else "")


def parse_triton_url(url: str) -> TritonRef:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    example = "triton://localhost:8001/cnn_int8 (gRPC) or triton+http://localhost:8000/cnn_int8"
    if scheme not in SCHEMES:
        raise FerError(f"'{url}' is not a Triton model URL: use {example}")
    protocol, default_port = SCHEMES[scheme]
    path = [p for p in parts.path.split("/") if p]
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise FerError(f"'{url}' has a bad port: use {example}") from exc
    if not parts.hostname or not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise FerError(f"'{url}' does not name a server and a model: use {example}, optionally with /VERSION")
    return TritonRef(protocol, parts.hostname, port, path[0], path[1] if len(path) == 2 else "")


def _import_client(protocol: str):
    try:
        client = importlib.import_module(f"tritonclient.{protocol}")
        utils = importlib.import_module("tritonclient.utils")
    except ImportError as exc:
        raise FerError(f"Triton models need the tritonclient package ({exc.name or exc} is missing): "
                       "pip install 'fer-engine[triton]'") from exc
    return client, utils.InferenceServerException


class TritonClassifier(BatchedClassifier):
    """``predict_logits`` / ``predict_probs`` through a Triton server, like ``OnnxClassifier``."""

    def __init__(self, url: str, providers: list[str] | None = None, threads: int | None = None):
        # providers and threads are the server's business (its config.pbtxt); they are ignored here.
        self.ref = parse_triton_url(url)
        self._module, self._error = _import_client(self.ref.protocol)
        self._local = threading.local()
        config = self._read_config()
        self.spec = self._read_spec(config)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.max_batch = int(config.get("max_batch_size", 0))
        platform = config.get("platform") or config.get("backend") or "?"
        self.providers = [f"Triton {platform}"]
        self.description = f"{self.spec.model} {self.spec.precision} on Triton {self.ref} ({platform})"

    def _client(self):
        # The HTTP client (gevent) must not be shared between threads, and fer-run infers on its own thread.
        client = getattr(self._local, "client", None)
        if client is None:
            if self.ref.protocol == "http":
                client = self._module.InferenceServerClient(self.ref.address, connection_timeout=CONNECT_TIMEOUT_S)
            else:
                client = self._module.InferenceServerClient(self.ref.address)
            self._local.client = client
        return client

    def _call(self, method: str, *args, **kwargs):
        if self.ref.protocol == "grpc":
            kwargs.setdefault("client_timeout", CONNECT_TIMEOUT_S)
        return getattr(self._client(), method)(*args, **kwargs)

    def _read_config(self) -> dict:
        ref = self.ref
        try:
            self._call("is_server_live")
        except (self._error, OSError) as exc:
            raise FerError(f"cannot reach the Triton server at {ref.address} ({ref.protocol}): {_first_line(exc)}; "
                           "start it (docs/triton.md) or check the host and port") from exc
        try:
            ready = self._call("is_model_ready", ref.model, ref.version)
        except (self._error, OSError) as exc:
            raise FerError(f"the Triton server at {ref.address} cannot say whether model '{ref.model}' is ready: "
                           f"{_first_line(exc)}") from exc
        if not ready:
            known = self._model_names()
            hint = did_you_mean(ref.model, known) if known else ""
            version = f" version {ref.version}" if ref.version else ""
            raise FerError(f"model '{ref.model}'{version} is not loaded on the Triton server at {ref.address} "
                           f"(loaded there: {', '.join(known) or 'none'}).{hint} Add it with fer-export --triton "
                           "and restart or reload the server")
        try:
            if ref.protocol == "grpc":
                return self._call("get_model_config", ref.model, ref.version, as_json=True)["config"]
            return self._call("get_model_config", ref.model, ref.version)
        except (self._error, OSError) as exc:
            raise FerError(f"cannot read the configuration of model '{ref.model}' from {ref.address}: "
                           f"{_first_line(exc)}") from exc

    def _model_names(self) -> list[str]:
        try:
            index = self._call("get_model_repository_index", **({"as_json": True} if self.ref.protocol == "grpc" else {}))
        except (self._error, OSError):
            return []
        models = index.get("models", []) if isinstance(index, dict) else index
        return sorted({m["name"] for m in models if m.get("state", "READY") == "READY"})

    def _read_spec(self, config: dict) -> ModelSpec:
        value = config.get("parameters", {}).get(METADATA_KEY, {}).get("string_value")
        where = f"model '{self.ref.model}' on the Triton server at {self.ref.address}"
        if not value:
            raise FerError(f"{where} has no '{METADATA_KEY}' parameter in its config.pbtxt, so its labels and "
                           "preprocessing are unknown: write its repository with fer-export --triton")
        return spec_from_json(value, where)

    def predict_logits(self, pixel_values: np.ndarray) -> np.ndarray:
        step = self.max_batch or len(pixel_values) or 1
        outputs = []
        for start in range(0, len(pixel_values), step):
            batch = np.ascontiguousarray(pixel_values[start:start + step], np.float32)
            request = self._module.InferInput(self.input_name, list(batch.shape), "FP32")
            request.set_data_from_numpy(batch)
            try:
                result = self._client().infer(self.ref.model, [request], model_version=self.ref.version,
                                              outputs=[self._module.InferRequestedOutput(self.output_name)])
            except (self._error, OSError) as exc:
                raise FerError(f"Triton inference on {self.ref} failed: {_first_line(exc)}") from exc
            outputs.append(result.as_numpy(self.output_name))
        if not outputs:
            return np.zeros((0, len(self.spec.labels)), np.float32)
        return np.concatenate(outputs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
