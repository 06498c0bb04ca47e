"""The Docker images cannot be built here (no registry): check what can rot without a build."""

import fnmatch
import subprocess

import pytest

from conftest import REPO

DOCKERFILES = ["Dockerfile", "Dockerfile.jetson"]


def ignored(path: str) -> bool:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(parts[0], p) for p in patterns)


def copied_sources(dockerfile: str) -> list[str]:
    sources = []
    for line in (REPO / dockerfile).read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    sources = copied_sources(dockerfile)
    assert "runtime" in sources and "pyproject.toml" in sources
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile} copies {source}, which is not in the repository"
        assert not ignored(source), f"{dockerfile} copies {source}, which .dockerignore leaves out"
    assert not ignored("runtime/models/cnn-int8.onnx")  # the shipped models go into the image


def test_entrypoint_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(REPO / "docker" / "entrypoint.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
