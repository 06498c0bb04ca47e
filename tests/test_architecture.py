"""The contracts of docs/architecture.md are written once: these checks keep it so."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("core", "runtime", "train", "export", "benchmarks") for p in (REPO / folder).rglob("*.py")]


def occurrences(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [f"{p.relative_to(REPO)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
            if regex.search(line)]


@pytest.mark.parametrize("what, pattern, home", [
    ("the fer metadata key", r"""^\s*[A-Z_]+\s*=\s*["']fer["']""", "core/modelfile.py"),
    ("the engine sidecar's name", r"""\.name\s*\+\s*["']\.json["']|ENGINE_SIDECAR_SUFFIX\s*=""", "core/modelfile.py"),
    ("the write-then-rename helpers", r"""["']\.partial|\.partial-""", "core/outputs.py"),
    # The format table: file names, engine suffixes, verification thresholds (docs/architecture.md, "Formats").
    ("the exported files' names", r"""[}"']-(int8|fp16)\.onnx|_sm\{""", "core/formats.py"),
    ("the engine suffixes", r"""["']\.(engine|plan)["']""", "core/formats.py"),
    ("the verification thresholds",
     r"""THRESHOLDS\s*=|\b(agreement|correlation|max_abs_diff|accuracy_drop)["']?\s*[=:]\s*\d""", "core/formats.py"),
    ("the producers and runtime classes of file formats",
     r"""["']fer_engine\.(export\.\w+|runtime\.(onnx|tensorrt)_model):\w+["']""", "core/formats.py"),
])
def test_defined_once(what, pattern, home):
    found = occurrences(pattern)
    assert found and all(f.startswith(home + ":") for f in found), f"{what} outside {home}: {found}"


def test_no_source_cites_a_file_outside_the_repository():
    assert not occurrences(r"DESIGN\.md")
    assert (REPO / "docs" / "architecture.md").is_file()


def test_no_family_is_tested_by_name_outside_the_registry():
    """What a model family needs (exporter, int8 mode, calibration, default checkpoint) is asked of the registry."""
    found = [f for f in occurrences(r"""[=!]=\s*["'](cnn|vit|convnext|convnextv2)["']|["'](cnn|vit|convnext|convnextv2)["']\s*[=!]=""")
             if not f.startswith(("train/models.py", "train/cnn.py"))]
    assert not found, found
