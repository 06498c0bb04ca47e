"""The format table (core/formats.py): its lookups, and its readers taking their facts from it."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from fer_engine.errors import FerError
from fer_engine.formats import (FORMATS, Thresholds, export_flags, format_for, format_named, format_of, formats_of_kind,
                                import_ref, kind_of, selected_formats, suffix_runtimes, suffixes)


def names(formats) -> list[str]:
    return [f.name for f in formats]


def test_lookups_by_name_precision_and_suffix():
    assert format_named("onnx-int8").file_name(model="cnn") == "cnn-int8.onnx"
    assert format_named("onnx-fp16").file_name(model="vit") == "vit-fp16.onnx"
    assert format_named("onnx-fp32").file_name(model="cnn") == "cnn.onnx"
    with pytest.raises(FerError, match="Did you mean 'onnx-int8'"):
        format_named("onnx-int9")
    assert format_for("tensorrt", "int8").name == "tensorrt-int8" and format_for("onnx", "fp16").name == "onnx-fp16"
    with pytest.raises(FerError, match="no bf16 onnx format"):
        format_for("onnx", "bf16")
    assert format_of("out/cnn-int8.onnx", "int8").name == "onnx-int8"
    assert format_of(Path("m.PLAN"), "fp16").name == "tensorrt-fp16"
    with pytest.raises(FerError, match="no fp32 format is written as a '.engine' file"):
        format_of("cnn.engine", "fp32")
    assert kind_of("a/b.engine") == "tensorrt" and kind_of("x.onnx") == "onnx" and kind_of("x.tflite") is None
    assert names(formats_of_kind("tensorrt")) == ["tensorrt-fp16", "tensorrt-int8"]
    assert suffixes() == [".onnx", ".engine", ".plan"]
    assert suffix_runtimes() == {".onnx": "fer_engine.runtime.onnx_model:OnnxClassifier",
                                 ".engine": "fer_engine.runtime.tensorrt_model:TensorRTClassifier",
                                 ".plan": "fer_engine.runtime.tensorrt_model:TensorRTClassifier"}


def test_engine_names_come_from_the_table():
    from fer_engine.export.tensorrt import EngineRequest
    from fer_engine.spec import ModelSpec

    request = EngineRequest(Path("m.onnx"), Path("out"), "fp16", max_batch=32)
    assert request.engine_name(ModelSpec("cnn"), "87") == "cnn_b1-32_fp16_sm87.engine"
    with pytest.raises(FerError, match="no fp32 tensorrt format"):
        EngineRequest(Path("m.onnx"), Path("out"), "fp32").engine_name(ModelSpec("cnn"), "87")


@pytest.mark.parametrize("flags, expected", [
    ((), ["onnx-fp32"]),
    (("int8",), ["onnx-fp32", "onnx-int8"]),
    (("tensorrt",), ["onnx-fp32", "tensorrt-fp16"]),
    (("fp16", "tensorrt", "int8"), ["onnx-fp32", "onnx-int8", "onnx-fp16", "tensorrt-fp16", "tensorrt-int8"]),
])
def test_export_flags_select_formats_in_table_order(flags, expected):
    assert names(selected_formats(flags)) == expected
    assert export_flags() == {"int8", "fp16", "tensorrt"}


def test_the_table_is_consistent():
    assert len(set(names(FORMATS))) == len(FORMATS) and len({f.file for f in FORMATS}) == len(FORMATS)
    for position, fmt in enumerate(FORMATS):
        assert fmt.file.endswith(fmt.suffix) and all(s == s.lower() and s.startswith(".") for s in fmt.suffixes)
        assert fmt.name == f"{fmt.kind}-{fmt.precision}"
        if fmt.source:  # made from a format that comes earlier and is selected whenever this one is
            source = format_named(fmt.source)
            assert FORMATS.index(source) < position and set(source.flags) <= set(fmt.flags)
        assert (fmt.trained is None) == (fmt.untrained is None)
        if fmt.verified:
            assert fmt.thresholds(True).judged_by() and fmt.thresholds(False).judged_by()
            assert "agreement" not in fmt.thresholds(False).judged_by()  # untrained top-1 choices flip on noise
        else:
            with pytest.raises(FerError, match="not verified"):
                fmt.thresholds(True)
    for suffix in suffixes():  # one runtime class per suffix, whatever the precision
        assert len({f.runtime for f in FORMATS if suffix in f.suffixes}) == 1
    assert Thresholds(agreement=0.9, max_abs_diff=1e-3).judged_by() == ["agreement", "max_abs_diff"]


def test_every_producer_and_runtime_class_resolves():
    from fer_engine.runtime.classifier import BatchedClassifier

    for fmt in FORMATS:
        producer = import_ref(fmt.producer)
        assert producer.__module__.startswith("fer_engine.export.")
        assert list(inspect.signature(producer).parameters) == ["job", "fmt"]
        assert issubclass(import_ref(fmt.runtime), BatchedClassifier)


def test_every_runtime_backend_honours_batch_size():
    """ONNX, TensorRT and Triton (and PyTorch checkpoints) inherit the one ``predict_probs`` that batches."""
    from fer_engine.runtime.backends import BACKENDS, URL_BACKENDS
    from fer_engine.runtime.classifier import BatchedClassifier
    from fer_engine.spec import ModelSpec
    from fer_engine.train.classifiers import TorchClassifier

    classes = {import_ref(ref) for ref in [*BACKENDS.values(), *URL_BACKENDS.values()]} | {TorchClassifier}
    assert {c.__name__ for c in classes} == {"OnnxClassifier", "TensorRTClassifier", "TritonClassifier",
                                             "TorchClassifier"}
    for cls in classes:
        assert issubclass(cls, BatchedClassifier) and "predict_probs" not in vars(cls), cls

    calls = []

    class Counting(BatchedClassifier):
        spec = ModelSpec("cnn")

        def predict_logits(self, pixel_values):
            calls.append(len(pixel_values))
            return np.zeros((len(pixel_values), 7), np.float32)

    assert Counting().predict_probs(np.zeros((10, 48, 48), np.uint8), batch_size=4).shape == (10, 7)
    assert calls == [4, 4, 2]


def test_the_table_imports_nothing_heavy():
    script = ("import sys, fer_engine.formats as f; f.suffix_runtimes(); "
              "heavy = {'torch', 'onnx', 'onnxruntime', 'tensorrt', 'fer_engine.runtime', 'fer_engine.export'}; "
              "print(sorted(heavy & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fer_bench_rows_are_named_after_the_formats():
    from fer_engine.benchmarks.bench_backends import OnnxBackend, TensorRTBackend, all_backends

    backends = all_backends()
    for backend in backends:
        if isinstance(backend, (OnnxBackend, TensorRTBackend)):
            assert backend.name.startswith(backend.format.name) and backend.precision == backend.format.precision
            assert not (backend.on_cpu and backend.format.needs_gpu)
    cpu_onnx = {b.format.name for b in backends if isinstance(b, OnnxBackend) and b.on_cpu}
    assert cpu_onnx == {f.name for f in formats_of_kind("onnx") if not f.needs_gpu}
    assert {b.name for b in backends if isinstance(b, TensorRTBackend)} == set(names(formats_of_kind("tensorrt")))
