"""What every fer-* command shares: user errors become one clear line and exit code 2, no traceback."""

from __future__ import annotations

import sys
from typing import Callable

from .errors import FerError

# Optional dependencies by the extra that installs them: the base install is the runtime only (a Jetson, a
# GPU server image), where training, exporting and most benchmarks cannot run.
EXTRAS = {"torch": "train", "transformers": "train", "safetensors": "train", "PIL": "train", "tqdm": "train",
          "matplotlib": "train", "optimum": "export", "tritonclient": "triton"}


def run_cli(body: Callable[[], int], prog: str) -> int:
    try:
        return body()
    except FerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        module = (exc.name or "").split(".")[0]
        if module not in EXTRAS:
            raise
        print(f"{prog}: error: this needs {module}, which is not installed in this Python: "
              f"pip install \"fer-engine[{EXTRAS[module]}]\" (from a clone: pip install -e \".[{EXTRAS[module]}]\")",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


# argparse types: a bad number is refused at parse time with the option's name (argparse adds it),
# before any data is read or any output is opened.
def _number(kind, text: str, accept, what: str):
    import argparse

    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number; it must be {what}") from None
    if value != value or not accept(value):  # value != value: NaN
        raise argparse.ArgumentTypeError(f"{text} is out of range; it must be {what}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v > 0, "a whole number of 1 or more")


def non_negative_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 0, "a whole number of 0 or more")


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: 0 < v < float("inf"), "a number above 0")


def non_negative_float(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < float("inf"), "a number of 0 or more")


def unit_interval(text: str) -> float:
    return _number(float, text, lambda v: 0 <= v < 1, "at least 0 and below 1")
