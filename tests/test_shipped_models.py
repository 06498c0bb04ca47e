"""The shipped models (checkpoints/cnn, checkpoints/cnn-ensemble and runtime/models/*.onnx) load, describe themselves and
reach the accuracy recorded when they were exported."""

import json

import pytest

from fer_engine.runtime.onnx_model import OnnxClassifier
from fer_engine.spec import LABELS
from fer_engine.train import cli_eval

from conftest import DEFAULT_CHECKPOINT, FER2013, REPO, needs_fer2013

MODELS = REPO / "runtime" / "models"
# shipped file → (model name, its export report, the checkpoint it was exported from)
SHIPPED = {
    MODELS / "cnn.onnx": ("cnn", MODELS / "export_report.json", DEFAULT_CHECKPOINT),
    MODELS / "cnn-int8.onnx": ("cnn", MODELS / "export_report.json", DEFAULT_CHECKPOINT),
    MODELS / "cnn-ensemble-int8.onnx": ("cnn-ensemble", MODELS / "cnn-ensemble.export_report.json",
                                        REPO / "checkpoints" / "cnn-ensemble"),
}
pytestmark = pytest.mark.skipif(not all(p.is_file() for p in SHIPPED), reason="no shipped ONNX models yet")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_describes_itself(path):
    classifier = OnnxClassifier(path)
    assert classifier.spec.labels == LABELS and classifier.spec.model == SHIPPED[path][0]
    assert classifier.spec.precision == ("int8" if "int8" in path.name else "fp32")


@needs_fer2013
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_meets_its_recorded_publictest_accuracy(path, tmp_path):
    _, report, checkpoint = SHIPPED[path]
    recorded = json.loads(report.read_text())
    assert recorded["weights"]["source"] == f"checkpoint {checkpoint.relative_to(REPO)}"
    row = next(r for r in recorded["verification"]["rows"] if r["file"].endswith(path.name))
    out = tmp_path / "eval.json"
    assert cli_eval.main([str(path), "--data", str(FER2013), "--split", "PublicTest", "--json", str(out)]) == 0
    accuracy = json.loads(out.read_text())["accuracy"]
    assert accuracy == pytest.approx(row["accuracy"], abs=0.005)
    checkpoint_row = next(r for r in recorded["verification"]["rows"] if r["precision"] == "fp32")
    assert accuracy >= checkpoint_row["reference_accuracy"] - 0.005  # int8 loses at most half a point
