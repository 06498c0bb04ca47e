"""runtime/stages/detect.py and what it uses: the detectors (YuNet shipped, Haar), downscaling, crops, alignment."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, YUNET, needs_fer2013, needs_yunet, read_jsonl
from fer_engine.runtime import Recognizer
from fer_engine.runtime.crops import crop_face, square_region
from fer_engine.runtime.detectors import DetectorConfig, create_detector
from fer_engine.runtime.tracking import iou_matrix


@needs_yunet
@needs_fer2013
def test_recognizer_predicts_gray_bgra_and_odd_sized_images(publictest):
    recognizer = Recognizer()
    canvas = np.full((301, 257), 120, np.uint8)
    canvas[60:180, 70:190] = cv2.resize(publictest.images[3], (120, 120), interpolation=cv2.INTER_CUBIC)
    for image in (canvas, cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGRA), cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)):
        faces = recognizer.predict(image)
        assert len(faces) == 1
        x, y, w, h = faces[0].box
        assert 70 <= x + w / 2 <= 190 and 60 <= y + h / 2 <= 180
    assert recognizer.predict(np.zeros((48, 64, 3), np.uint8)) == []


@needs_yunet
def test_yunet_on_onnxruntime_finds_the_same_faces_as_opencv(fer_video):
    from fer_engine.runtime.yunet import YuNetOnnx, YuNetOpenCV

    ours, reference = YuNetOnnx(YUNET, threads=1), YuNetOpenCV(YUNET)
    capture = cv2.VideoCapture(str(fer_video[0]))
    frames = [capture.read()[1] for _ in range(10)]
    # Half-size frames as fer-run detects on, sizes that are no multiple of 32 (padding), an empty frame.
    images = [cv2.resize(f, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for f in frames]
    images += [frames[0][:203, :301], frames[5][:203, 40:330], np.zeros((100, 140, 3), np.uint8)]
    found = 0
    for image in images:
        a, b = reference.detect(image), ours.detect(image)
        assert a.shape == b.shape, (image.shape, a.shape, b.shape)
        np.testing.assert_allclose(b, a, atol=1e-2)
        found += len(a)
    assert found >= 20  # pasted faces in every frame, most of them found: the comparison is not of empty sets
    # A narrower image padded to the same size as the one before: its padding is zeros again, not old pixels.
    ours._input(np.full((203, 301, 3), 255, np.uint8))
    assert not ours._input(np.zeros((203, 290, 3), np.uint8)).any()


@pytest.mark.parametrize("shape", [(720, 1280, 3), (481, 641, 3), (480, 640), (37, 53, 3)])
@pytest.mark.parametrize("scale", [0.5, 0.4, 1 / 3, 0.25, 0.75, 1.0, 1.5])
def test_detector_downscale_gives_the_size_asked_and_keeps_half_size_exact(shape, scale):
    from fer_engine.runtime.detectors import downscale

    image = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    small = downscale(image, scale)
    assert small.shape[:2] == (round(shape[0] * scale), round(shape[1] * scale)) and small.ndim == image.ndim
    if scale == 0.5 and shape[0] % 2 == 0 and shape[1] % 2 == 0:  # the default: exactly OpenCV's INTER_AREA
        np.testing.assert_array_equal(small, cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    if scale <= 0.5:  # halving steps average, not subsample: a one-pixel checkerboard comes out flat grey
        board = (np.indices(shape[:2]).sum(0) % 2 * 255).astype(np.uint8)
        assert np.abs(downscale(board, scale).astype(int) - 128).max() <= 1


@needs_yunet
def test_yunet_finds_the_same_faces_at_scales_that_are_not_a_half(fer_video):
    """Frames are downscaled in halving steps and a linear rest (fast), not OpenCV's INTER_AREA at any factor
    (4-9 ms a 720p frame): the faces must stay the same."""
    from fer_engine.runtime.detectors import downscale
    from fer_engine.runtime.yunet import YuNetOnnx

    net = YuNetOnnx(YUNET, threads=1)
    capture = cv2.VideoCapture(str(fer_video[0]))
    frames = [capture.read()[1] for _ in range(10)]
    for scale in (0.4, 0.6, 0.75):
        ours = [net.detect(downscale(f, scale)) for f in frames]
        area = [net.detect(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)) for f in frames]
        assert sum(map(len, area)) >= 20
        assert abs(sum(map(len, ours)) - sum(map(len, area))) <= 2, scale
        for a, b in zip(area, ours):
            if len(a) and len(b):
                assert np.median(iou_matrix(a[:, :4], b[:, :4]).max(1)) > 0.85, scale


def test_crop_is_square_widened_by_the_margin_and_padded_at_borders():
    assert square_region((10, 20, 40, 60), 0.5) == (-15, 5, 90)
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100) % 251
    gray = gray.astype(np.uint8)
    inside = crop_face(gray, (20, 20, 48, 48), (48, 48))
    np.testing.assert_array_equal(inside, gray[20:68, 20:68])
    corner = crop_face(gray, (-10, -10, 48, 48), (48, 48))
    assert corner.shape == (48, 48)
    np.testing.assert_array_equal(corner[10:, 10:], gray[:38, :38])
    np.testing.assert_array_equal(corner[0, 10:], gray[0, :38])  # replicated edge, not stretched


def test_alignment_undoes_a_rotation():
    face = np.zeros((200, 200), np.uint8)
    cv2.rectangle(face, (40, 80), (160, 100), 255, -1)  # a level bar through the "eyes"
    eyes = np.array([[60.0, 90.0], [140.0, 90.0]])
    angle = 20.0
    matrix = cv2.getRotationMatrix2D((100, 100), angle, 1.0)
    rotated = cv2.warpAffine(face, matrix, (200, 200))
    rotated_eyes = np.hstack([eyes, np.ones((2, 1))]) @ matrix.T
    landmarks = np.vstack([rotated_eyes, np.zeros((3, 2))])
    box = (40, 40, 120, 120)
    level = crop_face(face, box, (48, 48))
    aligned = crop_face(rotated, box, (48, 48), landmarks=landmarks)
    unaligned = crop_face(rotated, box, (48, 48))
    assert np.abs(aligned.astype(int) - level).mean() < np.abs(unaligned.astype(int) - level).mean() / 3


def test_yunet_is_the_packaged_default_and_haar_only_the_fallback_of_a_broken_install(monkeypatch, caplog, tmp_path):
    import fer_engine.runtime.detectors as detectors

    monkeypatch.delenv("FER_ENGINE_YUNET", raising=False)
    assert detectors.resolve_yunet_model() == detectors.PACKAGED_YUNET and detectors.PACKAGED_YUNET.is_file()
    assert create_detector(DetectorConfig()).name == "yunet"
    monkeypatch.setattr(detectors, "PACKAGED_YUNET", tmp_path / "missing.onnx")
    with caplog.at_level("WARNING"):
        detector = create_detector(DetectorConfig())
    assert detector.name == "haar" and "falling back to OpenCV's Haar cascade" in caplog.text


@needs_yunet
def test_yunet_without_the_onnx_package_runs_on_opencv(drawn_video, tmp_path):
    """onnx is in the base install, but an install with --no-deps (as on a Jetson) can lack it."""
    from conftest import import_blocker

    out = tmp_path / "faces.jsonl"
    script = import_blocker("onnx") + (
        "import sys\nfrom fer_engine.runtime.cli_run import main\n"
        f"sys.exit(main(['--video', {str(drawn_video)!r}, '--json', {str(out)!r}, '--no-render', '--no-display', "
        f"'--detector-model', {str(YUNET)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "the onnx package is not installed (pip install onnx): YuNet runs on OpenCV's FaceDetectorYN" in result.stderr
    assert "detector yunet-opencv" in result.stderr
    assert len(read_jsonl(out)) == 12


def test_the_wheel_ships_yunet_with_its_license(tmp_path):
    """An offline edge box gets the detector from the package itself (pip install ., not editable)."""
    import shutil
    import zipfile

    source = tmp_path / "src"  # a copy, so setuptools' build/ folder is not left in the repository
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv*", "*-venv", "runs", "build",
                                                                "*.egg-info", "__pycache__", "training-state",
                                                                "exports"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("fer_engine-*.whl"))).namelist()
    for name in ("yunet_s_640_640.onnx", "LICENSE", "NOTICE"):
        assert f"fer_engine/runtime/models/yunet/{name}" in names
    modules = [path.relative_to(REPO / "runtime").as_posix() for path in (REPO / "runtime").rglob("*.py")]
    missing = [m for m in modules if f"fer_engine/runtime/{m}" not in names]
    assert not missing, f"the wheel lacks runtime modules {missing} (pyproject.toml packages)"


def test_crops_cut_from_each_face_region_equal_crops_of_the_whole_gray_frame():
    from fer_engine.runtime.crops import crop_faces, to_gray
    from fer_engine.runtime.results import Detections

    rng = np.random.default_rng(0)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(40, 300, 2))
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        n = int(rng.integers(1, 4))
        boxes = np.stack([rng.uniform(-80, width + 20, n), rng.uniform(-80, height + 20, n),
                          rng.uniform(1, 150, n), rng.uniform(1, 150, n)], 1)
        detections = Detections(boxes, np.ones(n), rng.uniform(-50, 350, (n, 5, 2)))
        gray = to_gray(frame)
        for align in (False, True):
            expected = [crop_face(gray, box, (48, 48), 0.1, detections.landmarks[i] if align else None)
                        for i, box in enumerate(detections.boxes)]
            np.testing.assert_array_equal(crop_faces(frame, detections, (48, 48), 0.1, align), np.stack(expected))


def test_a_square_wholly_left_of_or_above_the_frame_crops_to_black():
    frame = np.full((100, 200), 200, np.uint8)
    for box in ([-90, 10, 40, 40], [10, -90, 40, 40]):
        assert not crop_face(frame, box, (48, 48)).any()
