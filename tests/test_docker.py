"""The Docker images cannot be built here (no registry): check what can rot without a build."""

import fnmatch
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

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


# ---- stopping a container: docker stop sends SIGTERM to PID 1, then SIGKILL after its grace period --------
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def test_fer_run_is_the_container_process_so_it_gets_the_stop_signal():
    """A shell between Docker and fer-run would swallow SIGTERM (PID 1 ignores signals it has no handler for)
    and the container would be killed after the grace period, its outputs cut short. Every fer-run the
    entrypoint starts is exec'ed; the GPU image runs fer-run directly, in the exec form."""
    code = [line.split("#")[0] for line in ENTRYPOINT.read_text().splitlines()]
    runs = [line.strip() for line in code if re.search(r"\bfer-run\b", line)]
    assert runs, "the entrypoint no longer runs fer-run"
    for line in runs:
        assert re.search(r"(^|[;|&(]\s*|\)\s+)exec fer-run\b", line), f"fer-run started without exec: {line!r}"
    assert re.search(r'^ENTRYPOINT \["fer-run"\]$', (REPO / "Dockerfile").read_text(), re.M)
    assert re.search(r'^ENTRYPOINT \["fer-entrypoint"\]$', (REPO / "Dockerfile.jetson").read_text(), re.M)


def fake_commands(folder, fer_run: str, python3: str):
    folder.mkdir()
    for name, body in (("fer-run", fer_run), ("python3", python3)):
        (folder / name).write_text("#!/bin/sh\n" + body + "\n")
        (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin", "FER_ENGINE_DIR": str(folder / "engines")}


def test_the_entrypoint_execs_fer_run_in_its_own_process(tmp_path):
    """With FER_TENSORRT=0 (and likewise after an engine build) fer-run replaces the entrypoint's shell:
    same process id, so SIGTERM reaches it and its exit code (143) is the container's."""
    env = fake_commands(tmp_path / "bin", 'echo "$$" > "$PIDFILE"; trap "exit 143" TERM; while :; do sleep 0.1; done',
                        "exit 1")
    env.update(FER_TENSORRT="0", PIDFILE=str(tmp_path / "pid"))
    process = subprocess.Popen(["bash", str(ENTRYPOINT), "--video", "in.mp4"], env=env)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text().strip():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        assert int((tmp_path / "pid").read_text()) == process.pid
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 143
    finally:
        process.kill()


def test_a_stop_during_the_engine_build_stops_the_builder(tmp_path):
    """The engine build runs before fer-run, for minutes on a Jetson: a stop then ends the builder and the
    container at once (exit 143) instead of waiting for the kill after the grace period."""
    env = fake_commands(tmp_path / "bin", "exit 0", 'echo "$$" > "$PIDFILE"; exec sleep 60')
    env["PIDFILE"] = str(tmp_path / "builder")
    process = subprocess.Popen(["bash", str(ENTRYPOINT), "--video", "in.mp4"], env=env)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "builder").exists() or not (tmp_path / "builder").read_text().strip():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        builder = int((tmp_path / "builder").read_text())
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 143
        assert time.monotonic() - started < 10
        deadline = time.monotonic() + 10
        while running(builder):  # the builder was told to stop too
            assert time.monotonic() < deadline, "the builder outlived the entrypoint"
            time.sleep(0.05)
    finally:
        process.kill()


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing
