"""``fer-report``: a fer-run JSON Lines file as a per-track emotion report.

    fer-run --video in.mp4 --json out.jsonl --no-render
    fer-report out.jsonl                      # out-report/out.png, .csv, .md, .html
    fer-report out.jsonl --out report --format csv,md --max-tracks 6

The PNG and the HTML page need matplotlib (pip install "fer-engine[report]"); CSV and Markdown need nothing
beyond the runtime. Exit code 0 when the report was written (also for a run without faces: the report says
so), 2 for an error (one line, `fer-report: error: ...`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from fer_engine.cli import add_verbose, one_of, positive_int, run_cli
from fer_engine.errors import FerError
from fer_engine.outputs import check_outputs, write_outputs

PROG = "fer-report"
FORMATS = ("png", "csv", "md", "html")


def formats(text: str) -> List[str]:
    """argparse type for --format: names from FORMATS, comma-separated, in the order given, once each."""
    names = [name.strip().lower().lstrip(".") for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"'{text}' is empty; give some of {','.join(FORMATS)}")
    return list(dict.fromkeys(one_of(FORMATS)(name) for name in names))


formats.__name__ = "format list"


def dpi(text: str) -> int:
    value = positive_int(text)
    if not 30 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{text} is out of range; it must be from 30 to 600")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Turn fer-run's JSON Lines (--json) into a per-track emotion "
                                "report: a PNG of the emotions over time, a table as CSV and Markdown, and an HTML "
                                "page with both that opens offline.")
    p.add_argument("run", metavar="RUN.jsonl", help="the file fer-run --json wrote")
    p.add_argument("--out", metavar="DIR", help="folder for the report (default: RUN-report beside the input; "
                   "created if missing); the files are named after the input: RUN.png, RUN.csv, RUN.md, RUN.html")
    p.add_argument("--format", type=formats, default=list(FORMATS), metavar="LIST",
                   help=f"what to write, comma-separated (default: all of {','.join(FORMATS)})")
    p.add_argument("--max-tracks", type=positive_int, default=12, metavar="N",
                   help="panels in the picture: the N longest tracks (default 12); every track is in the table")
    p.add_argument("--dpi", type=dpi, default=100, help="resolution of the PNG, 30 to 600 (default 100)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    add_verbose(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), PROG, verbose=args.verbose)


def output_folder(run_path: Path, out: Optional[str]) -> Path:
    if out is not None:
        return Path(out).expanduser()
    return run_path.with_name(f"{run_path.stem}-report")


def check_folder(folder: Path, files: List[Path], run_path: Path) -> None:
    """Before any work: the folder can be created or written in, no report file is a folder or the input."""
    check_outputs(folders={"--out": folder})
    for file in files:
        if file.is_dir():
            raise FerError(f"{file} is a folder, in the way of the report's file: remove it or choose another --out")
        if file.exists() and run_path.exists() and os.path.samefile(file, run_path):
            raise FerError(f"{file} is the input: the report would overwrite it; choose another --out")
        if file.is_file() and not os.access(file, os.W_OK):
            raise FerError(f"{file} exists and is read-only: make it writable or choose another --out")


def need_matplotlib(wanted: List[str]) -> None:
    pictures = [name for name in wanted if name in ("png", "html")]
    if not pictures:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise FerError(f"--format {','.join(pictures)} needs matplotlib, which is not installed in this Python: "
                       'pip install "fer-engine[report]" (from a clone: pip install -e ".[report]"), '
                       "or ask for --format csv,md") from None


def run(args) -> int:
    from . import report

    def say(message: str) -> None:
        if not args.quiet:
            print(f"{PROG}: {message}", file=sys.stderr)

    run_path = Path(args.run).expanduser()
    folder = output_folder(run_path, args.out)
    files = {name: folder / f"{run_path.stem}.{name}" for name in args.format}
    check_folder(folder, list(files.values()), run_path)
    need_matplotlib(args.format)

    data = report.read_run(run_path)
    for warning in data.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    tracks = report.summarize(data)
    png = report.render_png(data, tracks, args.max_tracks, args.dpi) if {"png", "html"} & set(args.format) else None

    jobs: List[Tuple[str, Optional[Path], Callable[[Path], None]]] = []
    if "png" in files:
        jobs.append(("the PNG", files["png"], lambda p: p.write_bytes(png)))
    if "csv" in files:
        jobs.append(("the CSV", files["csv"], lambda p: report.write_csv(data, tracks, p)))
    if "md" in files:
        png_name = files["png"].name if "png" in files else None
        jobs.append(("the Markdown", files["md"],
                     lambda p: p.write_text(report.markdown(data, tracks, png_name), encoding="utf-8")))
    if "html" in files:
        jobs.append(("the HTML page", files["html"],
                     lambda p: p.write_text(report.html_page(data, tracks, png), encoding="utf-8")))
    say(report.describe(data, tracks))
    write_outputs(jobs, announce=lambda what, path: say(f"wrote {path}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
