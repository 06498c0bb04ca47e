"""onnxruntime's execution providers: which ones to ask for, and why one asked for did not start.

onnxruntime-gpu drops CUDA or TensorRT without an error when their libraries cannot be loaded and carries
on with the CPU. ``why_not_started`` loads the provider's library the way onnxruntime does and turns what
the loader says (``libcublasLt.so.13: cannot open shared object file``) into what to install.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import re
from functools import lru_cache
from pathlib import Path

from fer_engine.errors import FerError

# Fastest first: onnxruntime tries them in this order and uses the first that can run each node.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
                    "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
# The shared library in onnxruntime/capi that each GPU provider lives in.
PROVIDER_LIBRARIES = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt"}

log = logging.getLogger("fer_engine.runtime")


def short_name(provider: str) -> str:
    """'cuda' for CUDAExecutionProvider: the name --providers takes."""
    return next((alias for alias, full in PROVIDER_ALIASES.items() if full == provider), provider)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def onnxruntime_conflict() -> str | None:
    """onnxruntime and onnxruntime-gpu install the same ``onnxruntime`` package: with both present the CPU
    build can win and the GPU providers vanish without a word. A fix to tell the user, or None."""
    from importlib import metadata

    installed = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            installed.add(dist)
        except metadata.PackageNotFoundError:
            pass
    if installed == {"onnxruntime", "onnxruntime-gpu"} and "CUDAExecutionProvider" not in available_providers():
        return ("both onnxruntime and onnxruntime-gpu are installed and the CPU build won: run "
                "'pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu'")
    return None


def choose_providers(requested: list[str] | None = None) -> list[str]:
    """``requested`` (short names like 'cuda' or full provider names) checked against what this
    onnxruntime has; by default every available one of TensorRT > CUDA > CPU."""
    available = available_providers()
    if not requested:
        return [p for p in PREFERRED_PROVIDERS if p in available] or available
    chosen = []
    for name in requested:
        full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
        if full not in available:
            fix = onnxruntime_conflict() or "for CUDA/TensorRT install fer-engine[gpu]"
            raise FerError(f"execution provider '{name}' is not available in this onnxruntime "
                           f"(available: {', '.join(available)}); {fix}")
        chosen.append(full)
    return chosen


@lru_cache(maxsize=1)
def preload_nvidia_wheels() -> None:
    """Load CUDA and cuDNN from NVIDIA's pip wheels (``pip install "onnxruntime-gpu[cuda,cudnn]"``) before a
    GPU session starts: the loader does not look in site-packages, and onnxruntime only does when asked
    (``onnxruntime.preload_dlls``). Does nothing where those wheels are not installed."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None or importlib.util.find_spec("nvidia") is None:
        return
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):  # it prints each library it cannot load
            preload()
    except Exception as exc:  # noqa: BLE001 - a failed preload only means the provider may not start
        log.debug("onnxruntime.preload_dlls failed: %s", exc)
    for line in printed.getvalue().splitlines():
        log.debug("onnxruntime.preload_dlls: %s", line)


def provider_library(provider: str) -> Path | None:
    name = PROVIDER_LIBRARIES.get(provider)
    if name is None:
        return None
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    for candidate in (capi / f"libonnxruntime_providers_{name}.so", capi / f"onnxruntime_providers_{name}.dll"):
        if candidate.is_file():
            return candidate
    return None


def why_not_started(provider: str) -> tuple[str, str]:
    """(what went wrong, what to do) for a ``provider`` onnxruntime could not start, as far as loading its
    library tells."""
    library = provider_library(provider)
    if library is None:
        return "this onnxruntime has no library for it", ""
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        return explain_load_error(provider, str(exc))
    return ("its libraries load", "no usable GPU was found: check nvidia-smi (in Docker: --gpus all and the NVIDIA "
            "Container Toolkit)")


def start_failures(providers: list[str]) -> str:
    """One line for the providers that did not start: each one's problem, then each distinct fix once."""
    problems, fixes = [], []
    for provider in providers:
        problem, fix = why_not_started(provider)
        problems.append(f"{provider}: {problem}")
        if fix and fix not in fixes:
            fixes.append(fix)
    return "; ".join([", ".join(problems)] + fixes)


def explain_load_error(provider: str, message: str) -> tuple[str, str]:
    """(what went wrong, what to do) for the loader's ``message`` about ``provider``'s library."""
    found = re.search(r"([\w.+-]+\.(?:so[\d.]*|dll)): cannot open shared object file", message)
    if not found:  # e.g. an undefined symbol: libraries of the wrong version
        fix = _cuda_fix() if provider == "CUDAExecutionProvider" else "check the TensorRT and CUDA installs"
        return message.strip().splitlines()[0], fix
    missing = f"{found.group(1)} is missing"
    if found.group(1).startswith("libcuda.so"):
        return missing, ("no NVIDIA driver here: check nvidia-smi (in Docker: --gpus all and the NVIDIA Container "
                         "Toolkit)")
    if found.group(1).startswith(("libnvinfer", "libnvonnxparser")):
        return missing, f"install TensorRT {_tensorrt_major(found.group(1))}or put its lib folder on LD_LIBRARY_PATH"
    return missing, _cuda_fix()


def _tensorrt_major(library: str) -> str:
    found = re.search(r"\.so\.(\d+)", library)
    return f"{found.group(1)} " if found else ""


def _cuda_fix() -> str:
    import onnxruntime as ort

    try:
        from onnxruntime.capi.build_and_package_info import cuda_version
    except ImportError:
        cuda_version = ""
    cuda = f"CUDA {cuda_version.split('.')[0]}" if cuda_version else "the CUDA version it was built for"
    return (f"onnxruntime-gpu {ort.__version__} needs {cuda} and its cuDNN: install them, or "
            f"pip install \"onnxruntime-gpu[cuda,cudnn]=={ort.__version__}\"")
