"""FER2013 as users have it: the Kaggle CSV (plain or gzipped) or an image-folder tree, as a folder or as
the ``.zip`` it is downloaded in.

Both become one ``FerData`` (uint8 faces, labels in the canonical order, a split per face). Parsing the
CSV takes seconds, so the parsed arrays are cached under the user cache folder, keyed by the source's
content; a second run loads them in well under a second.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from fer_engine.cli import excerpt
from fer_engine.errors import FerError
from fer_engine.progress import bar
from fer_engine.spec import LABELS, SPLITS

FACE_SIZE = 48
PIXELS_PER_FACE = FACE_SIZE * FACE_SIZE
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
CACHE_VERSION = "1"

# Folder names users give their splits, mapped onto FER2013's three.
SPLIT_ALIASES = {
    "training": "Training", "train": "Training",
    "publictest": "PublicTest", "public_test": "PublicTest", "val": "PublicTest", "valid": "PublicTest",
    "validation": "PublicTest",
    "privatetest": "PrivateTest", "private_test": "PrivateTest", "test": "PrivateTest",
}
LABEL_ALIASES = {**{name: name for name in LABELS}, **{
    "anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
    "sadness": "sad", "surprised": "surprise",
}}
PREFIX_SPLIT = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)


@dataclass
class FerSplit:
    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N], index into LABELS

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(LABELS))

    def head(self, n: int | None) -> "FerSplit":
        """The first n faces (stratification does not matter for smoke runs)."""
        return self if n is None or n >= len(self) else FerSplit(self.images[:n], self.labels[:n])


@dataclass
class FerData:
    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N]
    splits: np.ndarray  # int8 [N], index into SPLITS
    source: str
    skipped: int = 0
    from_cache: bool = False
    first_skipped: str | None = None  # the first bad row's problem, when rows were skipped

    def split(self, name: str) -> FerSplit:
        if name not in SPLITS:
            raise FerError(f"unknown split '{name}': choose one of {', '.join(SPLITS)}")
        mask = self.splits == SPLITS.index(name)
        if not mask.any():
            raise FerError(f"{self.source} has no faces in split '{name}'")
        return FerSplit(self.images[mask], self.labels[mask])

    def summary(self) -> str:
        counts = {s: int((self.splits == i).sum()) for i, s in enumerate(SPLITS)}
        text = ", ".join(f"{s} {n}" for s, n in counts.items() if n)
        if self.skipped:
            text += f"; skipped {self.skipped} bad row(s)"
        return f"{len(self.labels)} faces ({text})"

    def skipped_note(self) -> str:
        """One line for --skip-bad-rows: how many rows or images were skipped, and the first problem."""
        if not self.skipped:
            return f"skipped no bad rows of {self.source}"
        first = f" (first: {self.first_skipped})" if self.first_skipped else ""
        return f"skipped {self.skipped} bad row(s) of {self.source}{first}"


class _Rejects:
    """Raises on the first bad item, or counts it when the user asked to skip bad rows."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.count = 0
        self.first: str | None = None

    def __call__(self, where: str, problem: str) -> None:
        message = f"{where}: {problem}"
        if not self.skip:
            raise FerError(f"{message}. Fix the file, or pass --skip-bad-rows to skip such rows.")
        self.count += 1
        self.first = self.first or message


def default_cache_dir() -> Path:
    env = os.environ.get("FER_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer_engine"


def check_data_path(path: str | os.PathLike) -> Path:
    """Refuse a missing data path at once, before a command loads a model or writes anything."""
    path = Path(path)
    if not path.exists():
        raise FerError(f"data not found: {path}. Pass the Kaggle fer2013.csv(.gz), an image-folder root or its .zip.")
    return path


def load_fer2013(path: str | os.PathLike, *, skip_bad_rows: bool = False, cache: bool = True,
                 cache_dir: str | os.PathLike | None = None, progress: bool | None = None) -> FerData:
    """Load the Kaggle CSV (``.csv`` or ``.csv.gz``) or an image-folder tree (a folder or a ``.zip`` of
    one), through the cache. A parse
    shows a bar on stderr ("parsing fer2013.csv.gz, cached for next time") when ``progress``, or, with
    ``progress=None``, when stderr is a terminal; a load from the cache shows nothing."""
    path = check_data_path(path)
    key = _content_key(path, skip_bad_rows)
    cache_file = Path(cache_dir or default_cache_dir()) / f"fer2013-{key}.npz"
    if cache and cache_file.exists():
        try:
            with np.load(cache_file) as z:
                first = str(z["first_skipped"]) if "first_skipped" in z.files else ""
                return FerData(z["images"], z["labels"], z["splits"], str(path), int(z["skipped"]), True, first or None)
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache is rebuilt below
    desc = f"parsing {path.name}" + (", cached for next time" if cache else "")
    parse = _parse_folder if path.is_dir() else _parse_zip if zipfile.is_zipfile(path) else _parse_csv
    data = parse(path, skip_bad_rows, lambda **kw: bar(desc=desc, enabled=progress, **kw))
    if cache:
        _write_cache(cache_file, data)
    return data


def _content_key(path: Path, skip_bad_rows: bool) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{skip_bad_rows}|".encode())
    if path.is_dir():
        for file in sorted(_walk_files(path)):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    else:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:20]


def _write_cache(cache_file: Path, data: FerData) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, images=data.images, labels=data.labels, splits=data.splits, skipped=data.skipped,
                 first_skipped=data.first_skipped or "")
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only cache folder only costs the parse next time


def _open_text(raw: BinaryIO) -> io.TextIOBase:
    """The text of an open file, gunzipped if it is gzip (the file's own position is the progress in bytes)."""
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    return io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw, encoding="utf-8", newline="")


def _parse_csv(path: Path, skip_bad_rows: bool, progress) -> FerData:
    reject = _Rejects(skip_bad_rows)
    images, labels, splits = [], [], []
    try:
        with open(path, "rb") as raw, _open_text(raw) as text, \
                progress(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024) as shown:
            reader = csv.reader(text)
            header = next(reader, None)
            if header is None:
                raise FerError(f"{path} is empty: expected the columns emotion,pixels,Usage")
            columns = {name.strip().lower(): i for i, name in enumerate(header)}
            missing = [c for c in ("emotion", "pixels", "usage") if c not in columns]
            if missing and _looks_like_a_face_row(header):
                raise FerError(f"{path} has no header line: its first line is already a face "
                               f"({excerpt(','.join(header), 40)}). Add the line emotion,pixels,Usage at the top")
            if missing:
                found = ", ".join(excerpt(name, 30) for name in header[:6]) + (", …" if len(header) > 6 else "")
                raise FerError(f"{path}: missing column(s) {', '.join(missing)} (found: {found}). "
                               "A FER2013 CSV has the header emotion,pixels,Usage")
            ie, ip, iu = columns["emotion"], columns["pixels"], columns["usage"]
            for line_no, row in enumerate(reader, start=2):
                if line_no % 512 == 0:
                    shown.update(raw.tell() - shown.n)
                if not row:
                    continue
                where = f"{path}, line {line_no}"
                if len(row) <= max(ie, ip, iu):
                    reject(where, f"expected {len(header)} fields, found {len(row)}")
                    continue
                label = _csv_label(row[ie].strip())
                if label is None:
                    reject(where, f"unknown emotion label '{excerpt(row[ie], 30)}' (expected 0..6 or one of {', '.join(LABELS)})")
                    continue
                split = _split_name(row[iu].strip())
                if split is None:
                    reject(where, f"unknown Usage '{excerpt(row[iu], 30)}' (expected one of {', '.join(SPLITS)})")
                    continue
                try:
                    pixels = np.array(row[ip].split(), dtype=np.int64)
                except ValueError:
                    reject(where, "pixels must be space-separated integers")
                    continue
                if pixels.size != PIXELS_PER_FACE:
                    reject(where, f"{pixels.size} pixel values, expected {PIXELS_PER_FACE} (48x48)")
                    continue
                if pixels.min() < 0 or pixels.max() > 255:
                    reject(where, f"pixel value {pixels.min() if pixels.min() < 0 else pixels.max()} outside 0..255")
                    continue
                images.append(pixels.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE))
                labels.append(label)
                splits.append(SPLITS.index(split))
            shown.update(shown.total - shown.n)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise FerError(f"cannot read {path} as a FER2013 CSV: {exc}") from exc
    if not images:
        raise FerError(f"{path} holds no usable faces" + (f" (first problem: {reject.first})" if reject.first else ""))
    return _assemble(images, labels, splits, path, reject)


def _looks_like_a_face_row(row: list[str]) -> bool:
    """A first line of data where the header should be: a long field of space-separated numbers."""
    return any(len(field.split()) > 100 and field.split()[0].isdigit() for field in row)


def _csv_label(value: str) -> int | None:
    if value.isdigit():
        index = int(value)
        return index if 0 <= index < len(LABELS) else None
    name = LABEL_ALIASES.get(value.lower())
    return LABELS.index(name) if name else None


def _split_name(value: str) -> str | None:
    return SPLIT_ALIASES.get(value.lower().replace(" ", ""))


def _walk_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def _parse_folder(root: Path, skip_bad_rows: bool, progress) -> FerData:
    files = sorted(_walk_files(root))
    if not files:
        raise FerError(f"{root} is empty: expected <root>/<split>/<emotion>/*.png|jpg, e.g. train/happy/Training_1.jpg")
    entries = ((file.relative_to(root).parts, str(file), file.read_bytes) for file in files)
    return _parse_image_tree(entries, len(files), root, skip_bad_rows, progress)


def _parse_zip(path: Path, skip_bad_rows: bool, progress) -> FerData:
    """The image-folder layout inside a zip, as the common image download comes (``archive.zip`` holding
    ``train/`` and ``test/``), also with one wrapping folder around it."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = sorted((m for m in archive.infolist() if not m.is_dir() and not _hidden(m.filename)),
                             key=lambda m: m.filename)
            if not members:
                raise FerError(f"{path} holds no files: expected <split>/<emotion>/<image> inside the zip")
            csvs = [m.filename for m in members if m.filename.lower().endswith((".csv", ".csv.gz"))]
            if csvs and len(csvs) == len(members):
                raise FerError(f"{path} holds {csvs[0]}: unzip it and pass that file with --data")
            trees = [tuple(m.filename.split("/")) for m in members]
            while all(len(t) > 3 for t in trees) and len({t[0] for t in trees}) == 1:
                trees = [t[1:] for t in trees]
            entries = ((parts, f"{path}:{m.filename}", lambda m=m: archive.read(m))
                       for parts, m in zip(trees, members))
            return _parse_image_tree(entries, len(members), path, skip_bad_rows, progress)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise FerError(f"cannot read {path} as a zip of FER2013 images: {exc}") from exc


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _parse_image_tree(entries: Iterator[tuple[tuple[str, ...], str, Callable[[], bytes]]], count: int,
                      source: Path, skip_bad_rows: bool, progress) -> FerData:
    """``<split>/<emotion>/*.png|jpg`` (each entry: its path's parts, a name for messages, a reader of its
    bytes); a ``Training_``/``PublicTest_``/``PrivateTest_`` file prefix overrides the split folder (the
    common download keeps both test splits in ``test/``)."""
    import cv2  # the runtime dependency; reads every image format users have

    reject = _Rejects(skip_bad_rows)
    images, labels, splits = [], [], []
    with progress(iterable=entries, total=count, unit="image") as shown:
        for parts, where, read in shown:
            if len(parts) != 3:
                reject(where, "not in the layout <root>/<split>/<emotion>/<image>")
                continue
            split_dir, emotion_dir, name = parts
            label = LABEL_ALIASES.get(emotion_dir.lower())
            if label is None:
                reject(where, f"unknown emotion folder '{emotion_dir}' (expected one of {', '.join(LABELS)})")
                continue
            prefix = PREFIX_SPLIT.match(name)
            split = _split_name(prefix.group(1)) if prefix else _split_name(split_dir)
            if split is None:
                reject(where, f"unknown split folder '{split_dir}' (expected train, val or test, or files named "
                              "Training_*, PublicTest_*, PrivateTest_*)")
                continue
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                reject(where, f"not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
                continue
            image = cv2.imdecode(np.frombuffer(read(), np.uint8), cv2.IMREAD_GRAYSCALE)
            if image is None:
                reject(where, "cannot be decoded as an image (corrupt or not an image)")
                continue
            if image.shape != (FACE_SIZE, FACE_SIZE):
                image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
            images.append(image)
            labels.append(LABELS.index(label))
            splits.append(SPLITS.index(split))
    if not images:
        raise FerError(f"{source} holds no usable images" + (f" (first problem: {reject.first})" if reject.first else ""))
    return _assemble(images, labels, splits, source, reject)


def _assemble(images, labels, splits, source: Path, rejects: _Rejects) -> FerData:
    return FerData(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits, dtype=np.int8),
        source=str(source),
        skipped=rejects.count,
        first_skipped=rejects.first,
    )
