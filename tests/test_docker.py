"""The Docker images cannot be built here (no registry): check what can rot without a build."""

import fnmatch
import re
import shlex
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


def pip_installed_names(dockerfile: str) -> set[str]:
    """Distribution names the Dockerfile's ``pip install`` commands name (ARG defaults filled in)."""
    text = (REPO / dockerfile).read_text().replace("\\\n", " ")
    args = dict(re.findall(r'^ARG (\w+)="?([^"\n]*)"?$', text, re.M))
    names = set()
    for command in re.findall(r"pip3? install ([^&\n]*)", text):
        command = re.sub(r"\$\{\w+:\+[^}]*\}", "", command)  # ${INDEX:+--extra-index-url ...}: options only
        for word in shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), command)):
            if not word.startswith("-") and word != ".":
                names.add(re.match(r"[A-Za-z0-9_.-]+", word).group(0).lower())
    return names


def test_the_jetson_image_installs_every_base_dependency_but_opencv():
    """Dockerfile.jetson installs fer-engine with --no-deps (to keep the system OpenCV with GStreamer), so its
    own pip line must name every other base dependency; one left out once (onnx) broke YuNet there."""
    tomllib = pytest.importorskip("tomllib")
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in dependencies} - {"opencv-python-headless"}
    missing = wanted - pip_installed_names("Dockerfile.jetson")
    assert not missing, f"Dockerfile.jetson does not install {sorted(missing)}"
