"""The files and folders a fer-* command writes: checked before the work starts, written at the end so that
one write that fails loses neither the other outputs nor the file it was to replace.

    check_outputs(files={"--json": args.json, "--csv": args.csv}, folders={"--work-dir": args.work_dir})
    ...  # the work
    write_outputs([("--json", args.json, write_json), ("--csv", args.csv, write_csv)])

Checking creates nothing: a command that stops early leaves no empty folder behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import FerError

PathLike = Union[str, "os.PathLike[str]"]
Writer = Callable[[Path], None]  # writes the whole output to the path it is given


def check_outputs(files: Mapping[str, Optional[PathLike]] = {}, folders: Mapping[str, Optional[PathLike]] = {}) -> None:
    """Raise FerError, naming the option, for the first output that cannot be written: a file path that is a
    folder, a folder path that is a file, a folder that cannot be created or written in, or two outputs on one
    path. ``files`` and ``folders`` map the option (or a description, e.g. "--png (beside --json)") to its
    path; None means not asked for."""
    seen: Dict[Path, str] = {}
    for option, text, is_folder in _named(files, folders):
        _check_one(option, text, is_folder)
        key = Path(os.path.abspath(text))
        if not is_folder and key in seen:
            raise FerError(f"{seen[key]} and {option} both name the file {text}: give each its own path")
        seen[key] = option


def write_outputs(jobs: Sequence[Tuple[str, Optional[PathLike], Writer]],
                  announce: Optional[Callable[[str, Path], None]] = None) -> None:
    """Write every output (None paths skipped), each through a temporary file renamed into place. A write
    that fails does not stop the others; afterwards one FerError names each that failed."""
    failures: List[str] = []
    for option, path, write in jobs:
        if path is None:
            continue
        path = Path(path)
        try:
            write_atomically(path, write)
        except Exception as exc:  # noqa: BLE001 - whatever stopped this output, the others are still written
            failures.append(f"{option} {path} ({_reason(exc)})")
            continue
        if announce:
            announce(option, path)
    if failures:
        written = len([j for j in jobs if j[1] is not None]) - len(failures)
        others = f"; the other {written} output(s) were written" if written else ""
        raise FerError(f"could not write {' and '.join(failures)}{others}")


def write_atomically(path: PathLike, write: Writer) -> Path:
    """``write(tmp)`` beside ``path``, then rename: an interrupted or failed write leaves the old file as it
    was. Creates missing parent folders. A path that is not a regular file (/dev/null) is written directly."""
    path = Path(path)
    if path.exists() and not path.is_file():
        write(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # The suffix stays last: writers such as matplotlib choose the format by it.
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _named(files, folders) -> Iterable[Tuple[str, str, bool]]:
    for mapping, is_folder in ((files, False), (folders, True)):
        for option, path in mapping.items():
            if path is not None:
                yield option, os.fspath(path), is_folder


def _check_one(option: str, text: str, is_folder: bool) -> None:
    path, where = Path(text), f"{option} {text}"
    if not text:
        raise FerError(f"{option} is empty: name a {'folder' if is_folder else 'file'}")
    if is_folder:
        if path.exists() and not path.is_dir():
            raise FerError(f"{where} is a file, not a folder: name a folder (it is created if missing)")
        _check_can_create_in(where, path if path.is_dir() else _nearest_existing(path))
        return
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise FerError(f"{where} is a folder: name a file inside it, e.g. {path / ('out' + _suffix(option))}")
    if path.exists():
        if path.is_file() and not os.access(path, os.W_OK):
            raise FerError(f"{where}: the file exists and is read-only: choose another path or make it writable")
        if not path.is_file():
            return  # /dev/null and the like: written directly
    _check_can_create_in(where, _nearest_existing(path.parent))


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def _check_can_create_in(where: str, folder: Path) -> None:
    if not folder.is_dir():
        raise FerError(f"{where}: {folder} is a file, so no folder can be made there: choose another path")
    try:
        handle, probe = tempfile.mkstemp(prefix=".fer-write-test-", dir=folder)
    except OSError as exc:
        raise FerError(f"{where}: cannot write in {folder} ({exc.strerror or exc}): choose another path") from exc
    os.close(handle)
    os.unlink(probe)


def _suffix(option: str) -> str:
    return {"--json": ".json", "--csv": ".csv", "--png": ".png", "--stats": ".json"}.get(option.split()[0], "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def write_folder_atomically(folder: PathLike, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp_folder)`` beside ``folder``, then swap it in: a save that is interrupted never leaves a
    half-written folder that looks valid (checkpoints, training states)."""
    import shutil

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder
