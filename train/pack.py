"""Pack FER2013 into the smallest file that still holds it exactly: the image-folder layout, each face a
lossless WebP, in one zip that ``fer-train --data`` reads as it is.

    python -m fer_engine.train.pack fer2013.csv.gz --out fer2013-train-val.zip --splits Training,PublicTest

The Kaggle CSV spells each pixel in decimal (97 MB gzipped); lossless WebP keeps every pixel in ~1.9 KB a
face (the PNGs of the common image download take ~2 KB). The use: carrying the training data to a remote
GPU machine whose upload is capped (docs/gpu-training.md), with PrivateTest left at home.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np

from fer_engine.cli import comma_separated, run_cli
from fer_engine.errors import FerError
from fer_engine.progress import bar
from fer_engine.spec import LABELS, SPLITS

PROG = "python -m fer_engine.train.pack"
WEBP_LOSSLESS = 101  # cv2.IMWRITE_WEBP_QUALITY above 100 selects the lossless coder


def encode_lossless(image: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, WEBP_LOSSLESS])
    if not ok:
        raise FerError("OpenCV could not encode a face as WebP (an OpenCV build without WebP?)")
    return encoded.tobytes()


def pack(images: np.ndarray, labels: np.ndarray, splits: np.ndarray, out: Path, keep: list[str],
         progress: bool | None = None) -> dict[str, int]:
    """Write the faces of the splits in ``keep`` to ``out`` as ``<split>/<emotion>/<n>.webp`` (n: the row)
    (stored, not deflated: WebP is already compressed). Returns the faces written per split."""
    counts = {name: 0 for name in keep}
    chosen = np.flatnonzero(np.isin(splits, [SPLITS.index(name) for name in keep]))
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive, \
            bar(total=len(chosen), desc=f"packing {out.name}", unit="face", enabled=progress) as shown:
        for index in chosen:
            split, label = SPLITS[splits[index]], LABELS[labels[index]]
            archive.writestr(f"{split}/{label}/{index}.webp", encode_lossless(images[index]))
            counts[split] += 1
            shown.update(1)
    tmp.replace(out)
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="FER2013 as fer-train reads it: the Kaggle csv(.gz), an image-folder root or its zip")
    p.add_argument("--out", required=True, help="the zip to write")
    p.add_argument("--splits", type=comma_separated(str), default=list(SPLITS),
                   help=f"splits to pack, comma-separated (default: {','.join(SPLITS)})")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images, counting them")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args), PROG)


def _run(args: argparse.Namespace) -> int:
    from .data import check_data_path, load_fer2013

    unknown = [name for name in args.splits if name not in SPLITS]
    if unknown:
        raise FerError(f"--splits: unknown split(s) {', '.join(unknown)}; choose from {', '.join(SPLITS)}")
    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise FerError(f"--out {out}: name the file .zip (fer-train recognises the packed layout by its content, "
                       "people by its name)")
    data = load_fer2013(check_data_path(args.data), skip_bad_rows=args.skip_bad_rows)
    counts = pack(data.images, data.labels, data.splits, out, args.splits)
    size = out.stat().st_size
    written = ", ".join(f"{name} {n}" for name, n in counts.items())
    print(f"{out}: {sum(counts.values())} faces ({written}), {size / 1e6:.1f} MB, "
          f"{size / max(1, sum(counts.values())) / 1e3:.2f} KB a face; pixels exact (lossless WebP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
