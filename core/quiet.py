"""Quiet by default: the warnings libraries write for their own developers (deprecations, tracer notes,
opset advice, quantizer chatter) say nothing to someone exporting or benchmarking a model, so the fer-*
commands hide them unless ``-v``. Errors always show. Nothing here imports the libraries."""

from __future__ import annotations

import logging
import os
import warnings

LIBRARIES = ("torch", "transformers", "optimum", "onnx", "onnxruntime", "onnxscript", "huggingface_hub",
             "accelerate", "safetensors", "tensorflow", "keras", "tf_keras", "fer")
_MODULES = r"(" + "|".join(LIBRARIES) + r")(\..*)?$"
_PATHS = tuple(f"{os.sep}{name}{os.sep}" for name in LIBRARIES)
_INSTALLED = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


class _LibraryRecords(logging.Filter):
    """Drops warnings and info that a library logged through the root logger (``logging.warning(...)``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname
        library = any(p in path for p in _INSTALLED) and any(p in path for p in _PATHS)
        return record.levelno >= logging.ERROR or not library


def quiet_libraries(verbose: bool = False) -> None:
    """Hide the libraries' warnings for this process (``verbose``: leave them as they are)."""
    if verbose:
        return
    # transformers and optimum read these when they configure their loggers; the user's own setting wins.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", module=_MODULES)
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    root = logging.getLogger()
    if not any(isinstance(f, _LibraryRecords) for f in root.filters):
        root.addFilter(_LibraryRecords())
    for name in ("onnxruntime", "torch", "tensorflow", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
