"""Progress bars of the long jobs (the FER2013 parse, fer-eval, fer-export's steps and verification,
fer-bench's rows): tqdm on stderr, on a terminal only. In a log, a CI job or a service (stderr not a
terminal), or with ``-q`` where a command has it, the bar is off and the command's own lines say enough.

tqdm is imported when a bar is made, so importing this module costs nothing (and no torch)."""

from __future__ import annotations

import sys
from typing import TextIO


def wanted(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """A bar is wanted when not ``quiet`` and ``stream`` (default: stderr) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return not quiet and stream is not None and hasattr(stream, "isatty") and stream.isatty()
    except ValueError:  # a closed stream
        return False


def bar(total: float | None = None, desc: str = "", unit: str = "it", *, enabled: bool | None = None,
        stream: TextIO | None = None, **options):
    """A tqdm bar on ``stream`` (default: stderr); ``enabled=None``: only when that is a terminal. A disabled
    bar takes every call (update, set_description, close, ``with``) and prints nothing."""
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    on = wanted(stream=stream) if enabled is None else enabled
    settings = dict(dynamic_ncols=True, mininterval=0.25, leave=False)
    settings.update(options)
    return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=not on, **settings)


def write(message: str, stream: TextIO | None = None) -> None:
    """Print a line (default: to stdout) without breaking a bar drawn on the same terminal."""
    from tqdm import tqdm

    tqdm.write(message, file=stream if stream is not None else sys.stdout)
