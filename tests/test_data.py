import gzip

import cv2
import numpy as np
import pytest

from fer_engine.errors import FerError
from fer_engine.spec import LABELS
from fer_engine.train.data import load_fer2013

from conftest import FER2013, make_faces, needs_fer2013, write_csv

GOOD_PIXELS = " ".join(["7"] * 2304)


def test_csv_loads_splits_and_labels(tiny_csv):
    data = load_fer2013(tiny_csv)
    images, labels, splits = make_faces(70)
    assert data.images.shape == (70, 48, 48) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert len(data.split("Training")) == 42 and len(data.split("PublicTest")) == 14
    assert len(data.split("PrivateTest")) == 14


def test_gzipped_csv_reads_like_plain(tmp_path):
    plain = load_fer2013(write_csv(tmp_path / "a.csv"), cache=False)
    gz = load_fer2013(write_csv(tmp_path / "a.csv.gz"), cache=False)
    np.testing.assert_array_equal(plain.images, gz.images)
    np.testing.assert_array_equal(plain.labels, gz.labels)


def test_cache_hit_and_invalidation(tmp_path):
    path = write_csv(tmp_path / "f.csv", n=35)
    first = load_fer2013(path)
    second = load_fer2013(path)
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first.images, second.images)
    write_csv(path, n=35, seed=1)  # new content -> new key, parsed again
    third = load_fer2013(path)
    assert not third.from_cache
    assert not np.array_equal(third.images, first.images)


@pytest.mark.parametrize("row, message", [
    (["3", " ".join(["1"] * 2303), "Training"], "2303 pixel values, expected 2304"),
    (["3", " ".join(["1"] * 2303 + ["256"]), "Training"], "pixel value 256 outside 0..255"),
    (["3", " ".join(["1"] * 2303 + ["-1"]), "Training"], "pixel value -1 outside 0..255"),
    (["3", " ".join(["1"] * 2303 + ["x"]), "Training"], "space-separated integers"),
    (["9", GOOD_PIXELS, "Training"], "unknown emotion label '9'"),
    (["3", GOOD_PIXELS, "Validation2"], "unknown Usage 'Validation2'"),
])
def test_bad_csv_row_names_file_and_line(tmp_path, row, message):
    path = write_csv(tmp_path / "bad.csv", n=14, rows=[row])
    with pytest.raises(FerError) as err:
        load_fer2013(path)
    assert message in str(err.value)
    assert f"{path}, line 16" in str(err.value)  # header + 14 rows, then the bad one
    assert "--skip-bad-rows" in str(err.value)
    skipped = load_fer2013(path, skip_bad_rows=True)
    assert skipped.skipped == 1 and len(skipped.labels) == 14


def test_missing_columns(tmp_path):
    path = write_csv(tmp_path / "cols.csv", n=7, header=("emotion", "pixels", "Split"))
    with pytest.raises(FerError, match="missing column.*usage"):
        load_fer2013(path)


def test_empty_and_non_csv_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FerError, match="empty"):
        load_fer2013(empty)
    broken_gz = tmp_path / "broken.csv.gz"
    broken_gz.write_bytes(gzip.compress(b"emotion,pixels,Usage\n")[:-8])
    with pytest.raises(FerError):
        load_fer2013(broken_gz)
    with pytest.raises(FerError, match="data not found"):
        load_fer2013(tmp_path / "nope.csv")


def write_tree(root, layout):
    """layout: {relative path: label index} -> images whose mean encodes the label."""
    for rel, value in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((48, 48), 20 + 30 * value, np.uint8))
    return root


def test_image_folder_layout_and_canonical_labels(tmp_path):
    # Folders in alphabetical order, split by folder name and by file prefix in a shared test/ folder.
    root = write_tree(tmp_path / "faces", {
        "train/angry/Training_1.png": 0, "train/surprise/Training_2.png": 5, "train/neutral/x.png": 6,
        "test/happy/PublicTest_3.png": 3, "test/sad/PrivateTest_4.png": 4, "val/disgust/d.png": 1,
        "test/fear/f.png": 2,
    })
    data = load_fer2013(root)
    assert data.summary().startswith("7 faces (Training 3, PublicTest 2, PrivateTest 2)")
    for image, label in zip(data.images, data.labels):
        assert abs(int(image.mean()) - (20 + 30 * label)) <= 1, LABELS[label]
    assert sorted(LABELS[i] for i in data.split("PublicTest").labels) == ["disgust", "happy"]


def test_image_folder_resizes_other_sizes(tmp_path):
    path = tmp_path / "r" / "train" / "happy" / "a.jpg"
    path.parent.mkdir(parents=True)
    cv2.imwrite(str(path), np.full((96, 120, 3), 128, np.uint8))
    data = load_fer2013(tmp_path / "r")
    assert data.images.shape == (1, 48, 48)


@pytest.mark.parametrize("layout, extra, message", [
    ({}, None, "is empty"),
    ({"train/happy/a.png": 3}, ("train/happy/notes.txt", b"hello"), "not an image file"),
    ({"train/happy/a.png": 3}, ("train/happy/b.png", b"not really a png"), "cannot be decoded"),
    ({"train/happy/a.png": 3}, ("train/joy/b.png", None), "unknown emotion folder 'joy'"),
    ({"train/happy/a.png": 3}, ("holdout/happy/b.png", None), "unknown split folder 'holdout'"),
])
def test_bad_image_folders(tmp_path, layout, extra, message):
    root = write_tree(tmp_path / "tree", layout)
    root.mkdir(exist_ok=True)
    if extra:
        rel, payload = extra
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if payload is None:
            cv2.imwrite(str(target), np.zeros((48, 48), np.uint8))
        else:
            target.write_bytes(payload)
    with pytest.raises(FerError) as err:
        load_fer2013(root)
    assert message in str(err.value)
    if extra:
        assert str(root / extra[0]) in str(err.value)
        assert load_fer2013(root, skip_bad_rows=True).skipped == 1


@needs_fer2013
def test_real_fer2013_counts():
    data = load_fer2013(FER2013)
    assert data.summary().startswith("35887 faces (Training 28709, PublicTest 3589, PrivateTest 3589)")
    assert data.split("Training").class_counts().tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert data.split("PrivateTest").class_counts().tolist() == [491, 55, 528, 879, 594, 416, 626]


def zip_tree(path, members: dict) -> "Path":
    """A zip whose members are ``name -> bytes``, as the image download comes."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return path


def png(value: int) -> bytes:
    return cv2.imencode(".png", np.full((48, 48), value, np.uint8))[1].tobytes()


@pytest.mark.parametrize("top", ["", "archive/"])
def test_zip_of_the_image_layout_reads_like_the_folder(tmp_path, top):
    # The common image download: archive.zip holding train/ and test/, sometimes inside one more folder.
    path = zip_tree(tmp_path / "archive.zip", {
        f"{top}train/angry/Training_1.png": png(20), f"{top}train/happy/Training_2.png": png(110),
        f"{top}test/sad/PublicTest_3.png": png(140), f"{top}test/fear/PrivateTest_4.png": png(80),
        f"{top}__MACOSX/train/._x.png": b"resource fork",
    })
    data = load_fer2013(path)
    assert data.summary().startswith("4 faces (Training 2, PublicTest 1, PrivateTest 1)")
    assert [LABELS[i] for i in data.split("Training").labels] == ["angry", "happy"]
    assert [int(im.mean()) for im in data.split("Training").images] == [20, 110]
    assert load_fer2013(path).from_cache  # cached by content, as the CSV is


def test_bad_zips_say_what_is_wrong(tmp_path):
    inside_csv = zip_tree(tmp_path / "fer2013.zip", {"fer2013.csv": "emotion,pixels,Usage\n"})
    with pytest.raises(FerError, match="holds fer2013.csv: unzip it"):
        load_fer2013(inside_csv)
    bad = zip_tree(tmp_path / "bad.zip", {"train/happy/a.png": png(3), "train/happy/b.png": b"not a png"})
    with pytest.raises(FerError) as err:
        load_fer2013(bad)
    assert "bad.zip:train/happy/b.png" in str(err.value) and "cannot be decoded" in str(err.value)
    assert load_fer2013(bad, skip_bad_rows=True).skipped == 1


def test_pack_keeps_every_pixel_and_only_the_splits_asked(tmp_path):
    from fer_engine.train.pack import main as pack_main

    csv_path = write_csv(tmp_path / "faces.csv", n=40)
    out = tmp_path / "packed.zip"
    assert pack_main([str(csv_path), "--out", str(out), "--splits", "Training,PublicTest"]) == 0
    source, packed = load_fer2013(csv_path), load_fer2013(out)
    assert packed.summary() == "32 faces (Training 24, PublicTest 8)"
    keep = source.splits < 2

    def faces(d, mask):
        return sorted((int(s), int(l), im.tobytes()) for im, l, s in zip(d.images[mask], d.labels[mask], d.splits[mask]))

    assert faces(source, keep) == faces(packed, np.ones(len(packed.labels), bool))


def test_pack_refuses_unknown_splits_and_other_names(tmp_path, capsys):
    from fer_engine.train.pack import main as pack_main

    csv_path = write_csv(tmp_path / "faces.csv", n=14)
    assert pack_main([str(csv_path), "--out", str(tmp_path / "p.zip"), "--splits", "Train"]) != 0
    assert "unknown split(s) Train" in capsys.readouterr().err
    assert pack_main([str(csv_path), "--out", str(tmp_path / "p.tar")]) != 0
    assert "name the file .zip" in capsys.readouterr().err
    assert not (tmp_path / "p.zip").exists()
