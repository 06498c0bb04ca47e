"""Quiet by default: the libraries' own warnings are hidden unless -v; ours and every error still show."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("verbose", [False, True])
def test_library_warnings_are_hidden_unless_verbose_and_ours_and_errors_always_show(verbose):
    result = run_python(f"""
        import logging, sys, types, warnings
        from fer_engine.quiet import quiet_libraries
        quiet_libraries(verbose={verbose})
        # a warning attributed to a library module, as torch's TracerWarning is to the traced transformers code
        library = types.ModuleType("transformers.models.fake")
        exec(compile("import warnings\\ndef warn(): warnings.warn('tracer note', UserWarning)", "fake.py", "exec"),
             library.__dict__)
        library.__dict__["__name__"] = "transformers.models.fake"
        library.warn()
        warnings.warn("our own warning", UserWarning)
        # onnxruntime's quantizer logs through the root logger: a record from a file inside the installed package
        site = "/usr/lib/python3/site-packages/onnxruntime/quantization/qdq_quantizer.py"
        for level, text in ((logging.WARNING, "Axis 1 is out-of-range"), (logging.ERROR, "a library error")):
            logging.getLogger().handle(logging.LogRecord("root", level, site, 1, text, None, None))
        logging.getLogger("fer_engine.runtime").warning("our own log line")
    """)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "our own warning" in err and "our own log line" in err and "a library error" in err
    assert ("tracer note" in err) == verbose and ("out-of-range" in err) == verbose


def test_fer_export_of_a_transformer_is_quiet_and_verbose_on_request(tmp_path):
    command = [sys.executable, "-m", "fer_engine.export.cli_export", "--model", "vit", "--from-config", "tiny",
               "--int8", "--int8-mode", "dynamic", "--no-verify"]
    quiet = subprocess.run(command + ["--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # torch_dtype, opset advice, TracerWarnings, optimum's config note: all hidden
    verbose = subprocess.run(command + ["--out", str(tmp_path / "b"), "-v"], capture_output=True, text=True,
                             timeout=300)
    assert verbose.returncode == 0 and "TracerWarning" in verbose.stderr
