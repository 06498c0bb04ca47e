"""runtime/ is what goes on a Jetson: it must work where torch, transformers and optimum cannot be imported."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO, import_blocker

BLOCKER = import_blocker("torch", "transformers", "optimum", "torchvision")


def test_runtime_runs_an_onnx_model_without_torch(tmp_path):
    pytest.importorskip("torch", reason="exporting the test model needs torch; the run itself is torch-free")
    from fer_engine.export.onnx_export import export_fp32
    from fer_engine.train.models import create_model

    model = export_fp32(create_model("cnn", from_config="tiny"), tmp_path / "cnn.onnx", 17)
    script = BLOCKER + textwrap.dedent(f"""
        import numpy as np
        from fer_engine.runtime.onnx_model import OnnxClassifier
        classifier = OnnxClassifier({str(model)!r})
        faces = [np.full((60, 50), 128, np.uint8), np.zeros((48, 48), np.uint8)]
        probs = classifier.predict_probs(faces)
        assert probs.shape == (2, 7) and abs(probs.sum() - 2) < 1e-4, probs
        assert "torch" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_numpy_and_torch_preprocessing_agree():
    import dataclasses

    pytest.importorskip("torch", reason="compares with the training preprocessing, which needs torch")

    import cv2

    from fer_engine.runtime.preprocess import faces_to_pixel_values
    from fer_engine.train.models import create_model
    from fer_engine.train.preprocess import faces_to_tensor, to_pixel_values

    rng = np.random.default_rng(0)
    faces = np.stack([cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (0, 0), 3) for _ in range(4)])
    cnn = create_model("cnn", from_config="tiny").spec
    vit = create_model("vit", from_config="tiny").spec
    for spec, tolerance in [(cnn, 1e-5), (vit, 0.02), (dataclasses.replace(vit, image_size=(224, 224)), 0.02)]:
        expected = to_pixel_values(faces_to_tensor(faces), spec).numpy()
        got = faces_to_pixel_values(faces, spec)
        assert got.shape == expected.shape
        # Identical at the model's own size; resizing (down for 32, up for 224) differs only in interpolation.
        assert np.abs(got - expected).max() < tolerance, spec.image_size


def test_fer_run_runs_without_torch(tmp_path):
    from fer_engine.benchmarks.face_video import drawn_faces, make_face_video

    video = tmp_path / "drawn.mp4"
    make_face_video(video, drawn_faces(4), np.arange(4), frames=6, faces_per_frame=2)
    out = tmp_path / "out.jsonl"
    script = BLOCKER + textwrap.dedent(f"""
        from fer_engine.runtime.cli_run import main
        code = main(["--video", {str(video)!r}, "--json", {str(out)!r}, "--output", {str(tmp_path / "o.mp4")!r},
                     "--no-display", "-q"])
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        print("exit", code)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exit 0"
    assert len(out.read_text().splitlines()) == 6


@pytest.mark.parametrize("module, argv", [
    ("fer_engine.benchmarks.cli_bench", ["--quick"]),
    ("fer_engine.benchmarks.gpu_check", ["--out", "{tmp}/gpu-check"]),
    ("fer_engine.train.cli_train", ["--model", "cnn", "--data", "{tmp}/missing.csv", "--out", "{tmp}/run"]),
])
def test_commands_that_need_torch_say_which_extra_installs_it(module, argv, tmp_path):
    """The base install is the runtime only (a Jetson, the GPU server image): the other commands must say
    what to install, not end in a traceback."""
    script = BLOCKER + textwrap.dedent(f"""
        import sys
        from {module} import main
        sys.exit(main({[a.format(tmp=tmp_path) for a in argv]!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert 'error: this needs torch, which is not installed in this Python: pip install "fer-engine[train]"' in result.stderr
