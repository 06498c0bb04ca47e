"""Triton Inference Server: the model repository fer-export writes, and the triton:// runtime backend.

The client tests run against a real tritonserver: the one bundled with nvidia-pytriton (CPU, Python backend
only), found in this interpreter or in the one named by $FER_TRITON_SERVER_PYTHON (nvidia-pytriton pins
numpy<2, so it may live in a venv of its own). Without it they skip, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, import_blocker
from fer_engine.errors import FerError
from fer_engine.export.cli_export import main as fer_export
from fer_engine.export.triton_repo import TritonOptions, model_config, write_model, write_repository
from fer_engine.runtime.backends import load_classifier
from fer_engine.runtime.onnx_model import OnnxClassifier
from fer_engine.runtime.triton_model import parse_triton_url
from fer_engine.spec import ModelSpec
from test_runtime_torch_free import BLOCKER

MODELS = REPO / "runtime" / "models"
INT8 = MODELS / "cnn-int8.onnx"

GOLDEN = """\
name: "cnn_int8"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [
  {
    name: "pixel_values"
    data_type: TYPE_FP32
    dims: [ 1, 48, 48 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 7 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 16, 32 ]
  max_queue_delay_microseconds: 500
}
instance_group [
  {
    kind: KIND_CPU
    count: 2
  }
]
parameters {
  key: "fer"
  value: { string_value: 'FER_JSON' }
}
"""


def onnx_spec(path: Path) -> ModelSpec:
    return OnnxClassifier(path, providers=["cpu"], threads=1).spec


# ---- the repository ------------------------------------------------------------------------------------
def test_repository_matches_the_golden_layout_and_config(tmp_path):
    options = TritonOptions(max_batch_size=64, kind="cpu", instances=2, max_queue_delay_us=500,
                            preferred_batch_sizes=(16, 32))
    folders = write_repository([INT8, MODELS / "cnn.onnx"], tmp_path / "repo", options)
    assert [f.name for f in folders] == ["cnn_int8", "cnn"]
    files = sorted(str(p.relative_to(tmp_path / "repo")) for p in (tmp_path / "repo").rglob("*") if p.is_file())
    assert files == ["cnn/1/model.onnx", "cnn/config.pbtxt", "cnn_int8/1/model.onnx", "cnn_int8/config.pbtxt"]
    assert (tmp_path / "repo/cnn_int8/1/model.onnx").read_bytes() == INT8.read_bytes()
    expected = GOLDEN.replace("FER_JSON", onnx_spec(INT8).to_json())
    assert (tmp_path / "repo/cnn_int8/config.pbtxt").read_text() == expected
    assert '"precision": "fp32"' in (tmp_path / "repo/cnn/config.pbtxt").read_text()


def test_config_parses_as_tritons_model_config_protobuf(tmp_path):
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs fer-engine[triton]")
    folder = write_model(INT8, tmp_path, TritonOptions(max_queue_delay_us=250, preferred_batch_sizes=(8,)))
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("cnn_int8", "onnxruntime_onnx", 32)
    assert [(t.name, list(t.dims)) for t in config.input] == [("pixel_values", [1, 48, 48])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [7])]
    assert model_config_pb2.DataType.Name(config.input[0].data_type) == "TYPE_FP32"
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    group = config.instance_group[0]
    assert (model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind), group.count) == ("KIND_GPU", 1)
    assert ModelSpec.from_metadata(json.loads(config.parameters["fer"].string_value)) == onnx_spec(INT8)


def test_a_tensorrt_engine_becomes_a_plan_with_its_batch_limit(tmp_path):
    spec = onnx_spec(INT8)
    engine = tmp_path / "cnn_b1-16_int8_sm87.engine"
    engine.write_bytes(b"engine bytes")
    meta = spec.to_metadata() | {"build": {"tensorrt": "10.3.0", "sm": "87", "max_batch": 16}}
    engine.with_name(engine.name + ".json").write_text(json.dumps(meta))
    config = model_config(engine, name="cnn_int8_trt")
    assert (config.platform, config.max_batch_size, config.kind) == ("tensorrt_plan", 16, "KIND_GPU")
    assert [(t.name, t.dims) for t in config.inputs + config.outputs] == [("pixel_values", (1, 48, 48)), ("logits", (7,))]
    folder = write_model(engine, tmp_path / "repo", name="cnn_int8_trt")
    assert (folder / "1" / "model.plan").read_bytes() == b"engine bytes"
    with pytest.raises(FerError, match="batches up to 16"):
        model_config(engine, TritonOptions(max_batch_size=32))
    with pytest.raises(FerError, match="GPU only"):
        model_config(engine, TritonOptions(kind="cpu"))


@pytest.mark.parametrize("name, content, message", [
    ("missing.onnx", None, "not found"),
    ("model.pt", b"x", "cannot serve"),
    ("bad.onnx", b"not onnx", "onnxruntime cannot load"),
])
def test_bad_model_files_get_one_clear_line(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(FerError, match=message):
        model_config(tmp_path / name)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(FerError, match="exceed the max batch size"):
        model_config(INT8, TritonOptions(max_batch_size=8, preferred_batch_sizes=(16,)))
    with pytest.raises(FerError, match="kind"):
        TritonOptions(kind="tpu")
    shutil.copyfile(INT8, tmp_path / "cnn_int8.onnx")
    with pytest.raises(FerError, match="same Triton name"):
        write_repository([INT8, tmp_path / "cnn_int8.onnx"], tmp_path / "repo")


def test_fer_export_writes_a_repository_for_existing_files_without_torch(tmp_path):
    repo = tmp_path / "repo"
    script = BLOCKER + textwrap.dedent(f"""
        from fer_engine.export.cli_export import main
        code = main(["--triton", {str(repo)!r}, "--from-file", "cnn-int8", "--triton-kind", "cpu",
                     "--max-batch", "16"])
        assert "torch" not in sys.modules
        print("exit", code)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exit 0" in result.stdout and "triton:" in result.stdout
    config = (repo / "cnn_int8" / "config.pbtxt").read_text()
    assert "max_batch_size: 16" in config and "kind: KIND_CPU" in config


def test_fer_export_from_file_needs_triton(capsys):
    assert fer_export(["--from-file", str(INT8)]) == 2
    assert "--triton REPO_DIR" in capsys.readouterr().err
    assert fer_export(["--triton", "repo"]) == 2
    assert "--model" in capsys.readouterr().err


# ---- model URLs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("triton://localhost:8001/cnn_int8", ("grpc", "localhost", 8001, "cnn_int8", "")),
    ("triton+grpc://10.0.0.5/cnn", ("grpc", "10.0.0.5", 8001, "cnn", "")),
    ("triton+http://server/cnn_int8/2", ("http", "server", 8000, "cnn_int8", "2")),
    ("TRITON+HTTP://server:9000/cnn/", ("http", "server", 9000, "cnn", "")),
])
def test_triton_urls_are_parsed(url, expected):
    ref = parse_triton_url(url)
    assert (ref.protocol, ref.host, ref.port, ref.model, ref.version) == expected


@pytest.mark.parametrize("url", ["triton://localhost:8001", "triton://localhost/a/b", "triton://:8001/cnn",
                                 "triton://host:port/cnn", "grpc://host/cnn"])
def test_bad_triton_urls_say_what_a_good_one_looks_like(url):
    with pytest.raises(FerError, match="triton://localhost:8001/cnn_int8"):
        parse_triton_url(url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_an_unreachable_server_gets_one_clear_line(scheme):
    pytest.importorskip("tritonclient.grpc", reason="needs fer-engine[triton]")
    with pytest.raises(FerError, match="cannot reach the Triton server at 127.0.0.1") as error:
        load_classifier(f"{scheme}://127.0.0.1:{free_port()}/cnn_int8")
    assert "\n" not in str(error.value)


def test_missing_tritonclient_says_how_to_install_it():
    script = import_blocker("tritonclient") + textwrap.dedent("""
        from fer_engine.errors import FerError
        from fer_engine.runtime.backends import load_classifier
        try:
            load_classifier("triton://127.0.0.1:1/cnn_int8")
        except FerError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "pip install 'fer-engine[triton]'" in result.stdout, result.stdout + result.stderr


# ---- against a real tritonserver -----------------------------------------------------------------------
PROBE = """
import json, sys, sysconfig
from pytriton.utils.distribution import get_libs_path, get_root_module_path
print(json.dumps({"root": str(get_root_module_path()), "libs": str(get_libs_path()), "bin": sys.prefix + "/bin",
                  "libdir": sysconfig.get_config_var("LIBDIR"), "version": "%d.%d" % sys.version_info[:2]}))
"""


def pytriton_server_python() -> dict | None:
    python = os.environ.get("FER_TRITON_SERVER_PYTHON") or sys.executable
    try:
        result = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return json.loads(result.stdout) if result.returncode == 0 else None


def serve_as_python_backend(folder: Path) -> None:
    """Our generated model folder, served by the Python backend instead of onnxruntime (see triton_python_model.py)."""
    config = folder / "config.pbtxt"
    text = config.read_text()
    assert 'platform: "onnxruntime_onnx"' in text
    config.write_text(text.replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
    shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), folder / "1" / "model.py")


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory):
    pytest.importorskip("tritonclient.grpc", reason="needs fer-engine[triton]")
    dist = pytriton_server_python()
    if dist is None:
        pytest.skip("no tritonserver: nvidia-pytriton (which bundles one) is not installed here; pip install "
                    "nvidia-pytriton onnxruntime, or set FER_TRITON_SERVER_PYTHON to a python that has them")
    tmp = tmp_path_factory.mktemp("triton")
    server = tmp / "tritonserver"
    shutil.copytree(Path(dist["root"]) / "tritonserver", server, ignore=shutil.ignore_patterns("python_backend_stubs"))
    stub = Path(dist["root"]) / "tritonserver" / "python_backend_stubs" / dist["version"] / "triton_python_backend_stub"
    shutil.copy(stub, server / "backends" / "python" / stub.name)

    repo = tmp / "repo"
    options = TritonOptions(max_batch_size=16, kind="cpu", max_queue_delay_us=2000, preferred_batch_sizes=(8, 16))
    serve_as_python_backend(write_model(INT8, repo, options))
    no_fer = write_model(INT8, repo, options, name="no_fer")
    serve_as_python_backend(no_fer)
    text = (no_fer / "config.pbtxt").read_text()
    (no_fer / "config.pbtxt").write_text(text[:text.index("parameters {")])

    http, grpc = free_port(), free_port()
    env = dict(os.environ, PATH=f"{dist['bin']}:{os.environ['PATH']}",
               # The stub embeds libpython: take the server python's own, not another build of the same version.
               LD_LIBRARY_PATH=":".join(p for p in (dist["libdir"], dist["libs"], os.environ.get("LD_LIBRARY_PATH")) if p))
    log = (tmp / "tritonserver.log").open("w")
    process = subprocess.Popen(
        [str(server / "bin" / "tritonserver"), f"--model-repository={repo}", f"--backend-directory={server / 'backends'}",
         "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
         "--allow-metrics=false", "--exit-timeout-secs=5", f"--backend-config=python,shm-region-prefix-name=fer{os.getpid()}_"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tritonserver did not become ready:\n{(tmp / 'tritonserver.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"grpc": grpc, "http": http}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def random_faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


@pytest.mark.parametrize("scheme, port", [("triton", "grpc"), ("triton+http", "http")])
def test_triton_backend_matches_local_onnxruntime(triton_server, scheme, port):
    classifier = load_classifier(f"{scheme}://127.0.0.1:{triton_server[port]}/cnn_int8")
    local = OnnxClassifier(INT8, providers=["cpu"], threads=1)
    assert classifier.spec == local.spec and classifier.max_batch == 16
    faces = random_faces(40)  # more than max_batch_size: sent in three requests
    np.testing.assert_allclose(classifier.predict_probs(faces), local.predict_probs(faces), atol=1e-5)
    # fer-run infers on a thread of its own; the HTTP client is per thread.
    results = {}
    worker = threading.Thread(target=lambda: results.update(probs=classifier.predict_probs(faces[:5])))
    worker.start()
    worker.join()
    np.testing.assert_allclose(results["probs"], local.predict_probs(faces[:5]), atol=1e-5)
    assert classifier.predict_probs(faces[:0]).shape == (0, 7)


def test_fer_run_on_triton_gives_the_local_results(triton_server, tmp_path):
    from fer_engine.benchmarks.face_video import drawn_faces, make_face_video
    from fer_engine.runtime.cli_run import main as fer_run

    video = tmp_path / "drawn.mp4"
    make_face_video(video, drawn_faces(8), np.arange(8) % 7, frames=6, faces_per_frame=3)
    runs = {}
    for name, model in [("local", str(INT8)), ("triton", f"triton://127.0.0.1:{triton_server['grpc']}/cnn_int8")]:
        out = tmp_path / f"{name}.jsonl"
        assert fer_run(["--video", str(video), "--model", model, "--json", str(out), "--detector", "haar",
                        "--smooth", "0", "--no-render", "-q"]) == 0
        runs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    faces = [(f["box"], f["label"], f["probs"]) for r in runs["local"] for f in r["faces"]]
    served = [(f["box"], f["label"], f["probs"]) for r in runs["triton"] for f in r["faces"]]
    assert len(faces) == len(served) > 0
    for (box, label, probs), (box2, label2, probs2) in zip(faces, served):
        assert box == box2 and label == label2
        assert max(abs(probs[k] - probs2[k]) for k in probs) < 1e-4


def test_fer_eval_scores_a_served_model_like_the_local_file(triton_server, tmp_path, capsys):
    from conftest import write_csv
    from fer_engine.train import cli_eval

    csv_path = write_csv(tmp_path / "fer.csv", n=70)
    reports = {}
    for name, model in [("local", str(INT8)), ("triton", f"triton://127.0.0.1:{triton_server['grpc']}/cnn_int8")]:
        out = tmp_path / f"{name}.json"
        assert cli_eval.main([model, "--data", str(csv_path), "--split", "PublicTest", "--json", str(out)]) == 0
        reports[name] = json.loads(out.read_text())
    assert reports["triton"]["accuracy"] == reports["local"]["accuracy"]
    assert reports["triton"]["confusion"] == reports["local"]["confusion"]


@pytest.mark.parametrize("model, message", [
    ("cnn_int9", "model 'cnn_int9' is not loaded on the Triton server .* Did you mean 'cnn_int8'"),
    ("no_fer", "has no 'fer' parameter"),
])
@pytest.mark.parametrize("scheme, port", [("triton", "grpc"), ("triton+http", "http")])
def test_server_side_mistakes_get_one_clear_line(triton_server, scheme, port, model, message):
    with pytest.raises(FerError, match=message) as error:
        load_classifier(f"{scheme}://127.0.0.1:{triton_server[port]}/{model}")
    assert "\n" not in str(error.value)

