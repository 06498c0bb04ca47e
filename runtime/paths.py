"""fer-run's file paths, checked before any work starts: no output may be an input or another output
(compared by resolved path and, where both files exist, by device and inode, so links count too), and
every output must be writable (not a folder; its folder exists or can be created)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fer_engine.errors import FerError


@dataclass(frozen=True)
class NamedPath:
    option: str  # the option that names it, e.g. "--json"
    path: Path

    def __str__(self) -> str:
        return f"{self.option} {self.path}"


def same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_distinct(inputs: list[NamedPath], outputs: list[NamedPath]) -> None:
    for i, output in enumerate(outputs):
        for source in inputs:
            if same_file(output.path, source.path):
                raise FerError(f"{output} is the same file as {source}: the run would overwrite its input; "
                               f"choose another path for {output.option}")
        for other in outputs[:i]:
            if same_file(output.path, other.path):
                raise FerError(f"{other} and {output} are the same file: give each output its own path")


def check_writable(output: NamedPath) -> None:
    path = output.path
    if path.is_dir():
        raise FerError(f"{output} is a folder: {output.option} takes a file path (a file inside it, for one)")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise FerError(f"cannot write {path} ({output.option}): {folder} is not a folder (choose a writable output path)")
    try:
        if path.exists():
            open(path, "ab").close()  # opened as the writer will, without emptying it yet
        elif folder == path.parent:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            path.unlink()
        else:  # the writer will create the missing folders here
            tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise FerError(f"cannot write {path} ({output.option}): {exc.strerror or exc} "
                       "(choose a writable output path)") from None
