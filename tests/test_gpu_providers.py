"""fer-run with onnxruntime-gpu, installed as the Dockerfile installs it, in the Python named by
$FER_GPU_PYTHON (.ci/run makes one; onnxruntime-gpu and onnxruntime cannot share an environment).

Where the GPU provider cannot start (CI has no GPU and no CUDA libraries), fer-run must say which library is
missing and what to install, run on the CPU when the CPU was allowed, and fail with that reason when only GPU
providers were asked for. Where CUDA does start, the model line must name it. Without $FER_GPU_PYTHON these
tests skip; the reasons themselves are checked below without it.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

from conftest import REPO
from fer_engine.benchmarks.face_video import drawn_faces, make_face_video
from fer_engine.runtime.providers import explain_load_error, start_failures, why_not_started

GPU_PYTHON = os.environ.get("FER_GPU_PYTHON")
needs_gpu_python = pytest.mark.skipif(
    not GPU_PYTHON, reason="needs $FER_GPU_PYTHON, a Python with onnxruntime-gpu installed (.ci/run makes one)")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu") / "drawn.mp4"
    make_face_video(path, drawn_faces(8), np.arange(8) % 7, frames=6, faces_per_frame=2)
    return path


def fer_run(video, out, *providers: str) -> subprocess.CompletedProcess:
    cmd = [GPU_PYTHON, "-m", "fer_engine.runtime.cli_run", "--video", str(video), "--json", str(out), "--no-render",
           "--no-display", "--detector", "haar", *(["--providers", ",".join(providers)] if providers else [])]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def cuda_started(result: subprocess.CompletedProcess) -> bool:
    return "(CUDAExecutionProvider)" in result.stderr or "(TensorrtExecutionProvider)" in result.stderr


MISSING = r"lib[\w.+-]+\.so[\d.]* is missing; "


@needs_gpu_python
def test_the_dockerfiles_install_recipe_offers_the_gpu_providers():
    result = subprocess.run([GPU_PYTHON, "-c", "import onnxruntime as o; print(o.get_available_providers())"],
                            capture_output=True, text=True, timeout=120)
    assert "CUDAExecutionProvider" in result.stdout, result.stdout + result.stderr
    assert "TensorrtExecutionProvider" in result.stdout


@needs_gpu_python
def test_a_cuda_that_cannot_start_is_explained_and_the_run_goes_on_on_the_cpu(video, tmp_path):
    out = tmp_path / "faces.jsonl"
    result = fer_run(video, out, "cuda", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 6
    if cuda_started(result):
        return  # a machine with a working GPU: nothing fell back
    warning = re.search(r"fer-run: onnxruntime could not start CUDAExecutionProvider \(CUDAExecutionProvider: "
                        + MISSING + r"(.+)\): running on CPUExecutionProvider", result.stderr)
    assert warning, result.stderr
    assert "pip install \"onnxruntime-gpu[cuda,cudnn]==" in warning.group(1) or "no NVIDIA driver" in warning.group(1)
    assert "Traceback" not in result.stderr


@needs_gpu_python
def test_asking_for_gpu_providers_alone_fails_with_the_reason(video, tmp_path):
    out = tmp_path / "faces.jsonl"
    result = fer_run(video, out, "cuda")
    if cuda_started(result):
        assert result.returncode == 0
        return
    assert result.returncode == 2, result.stderr
    assert re.search(r"fer-run: error: onnxruntime could not start CUDAExecutionProvider \(CUDAExecutionProvider: "
                     + MISSING, result.stderr), result.stderr
    assert "To run on the CPU instead, allow it: fer-run --providers cuda,cpu, fer-eval --device auto" in result.stderr
    assert "Traceback" not in result.stderr


@needs_gpu_python
def test_the_default_providers_warn_once_for_each_that_did_not_start(video, tmp_path):
    result = fer_run(video, tmp_path / "faces.jsonl")
    assert result.returncode == 0, result.stderr
    if not cuda_started(result):
        line = next(l for l in result.stderr.splitlines() if l.startswith("fer-run: onnxruntime could not start"))
        assert re.search(r"\(TensorrtExecutionProvider: lib\S+ is missing, CUDAExecutionProvider: lib\S+ is missing; ", line)


@pytest.mark.parametrize("message, problem, fix", [
    ("libcublasLt.so.13: cannot open shared object file: No such file or directory", "libcublasLt.so.13 is missing",
     r"^onnxruntime-gpu \S+ needs .*: install them, or pip install \"onnxruntime-gpu\[cuda,cudnn\]==\S+\"$"),
    ("libcuda.so.1: cannot open shared object file: No such file or directory", "libcuda.so.1 is missing",
     r"^no NVIDIA driver here: check nvidia-smi .*--gpus all"),
    ("libnvinfer.so.10: cannot open shared object file: No such file or directory", "libnvinfer.so.10 is missing",
     r"^install TensorRT 10 or put its lib folder on LD_LIBRARY_PATH$"),
    ("/x/libonnxruntime_providers_cuda.so: undefined symbol: cudnnCreate",
     "/x/libonnxruntime_providers_cuda.so: undefined symbol: cudnnCreate", r"^onnxruntime-gpu \S+ needs "),
])
def test_loader_messages_become_what_to_install(message, problem, fix):
    got_problem, got_fix = explain_load_error("CUDAExecutionProvider", message)
    assert got_problem == problem
    assert re.search(fix, got_fix)


def test_a_fix_shared_by_several_providers_is_said_once(monkeypatch):
    import fer_engine.runtime.providers as providers

    reasons = {"TensorrtExecutionProvider": ("libcublas.so.13 is missing", "install CUDA 13"),
               "CUDAExecutionProvider": ("libcublasLt.so.13 is missing", "install CUDA 13")}
    monkeypatch.setattr(providers, "why_not_started", reasons.get)
    assert start_failures(list(reasons)) == ("TensorrtExecutionProvider: libcublas.so.13 is missing, "
                                             "CUDAExecutionProvider: libcublasLt.so.13 is missing; install CUDA 13")


def test_a_provider_without_a_library_in_this_onnxruntime_says_so():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    assert why_not_started("CUDAExecutionProvider") == ("this onnxruntime has no library for it", "")
    assert why_not_started("NoSuchExecutionProvider") == ("this onnxruntime has no library for it", "")
