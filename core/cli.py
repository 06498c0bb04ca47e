"""What every fer-* command shares: user errors become one clear line and exit code 2, no traceback."""

from __future__ import annotations

import sys
from typing import Callable

from .errors import FerError, FieldError

# Optional dependencies by the extra that installs them: the base install is the runtime only (a Jetson, a
# GPU server image), where training, exporting and most benchmarks cannot run.
EXTRAS = {"torch": "train", "transformers": "train", "safetensors": "train", "PIL": "train", "tqdm": "train",
          "matplotlib": "train", "optimum": "export", "tritonclient": "triton"}


def add_verbose(parser) -> None:
    """``-v``: also the warnings of the libraries underneath (hidden by default: core/quiet.py)."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the warnings of the libraries underneath (torch, transformers, optimum, "
                             "onnxruntime)")


def run_cli(body: Callable[[], int], prog: str, options: "dict[str, str] | None" = None,
            verbose: bool = False) -> int:
    from .quiet import quiet_libraries

    quiet_libraries(verbose)
    try:
        return body()
    except FieldError as exc:  # the library names its field; the user typed an option
        option = (options or {}).get(exc.field, "--" + exc.field.replace("_", "-"))
        print(f"{prog}: error: {exc.for_option(option)}", file=sys.stderr)
        return 2
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


def share(text: str) -> float:
    """A fraction above 0 and at most 1 (a weight in a mix)."""
    return _number(float, text, lambda v: 0 < v <= 1, "above 0 and at most 1")


def int_between(low: int, high: int):
    """An argparse type for a whole number in ``low..high`` (e.g. the ONNX opsets an exporter supports)."""
    def parse(text: str) -> int:
        return _number(int, text, lambda v: low <= v <= high, f"a whole number from {low} to {high}")

    parse.__name__ = f"int {low}..{high}"  # argparse names the type in some messages
    return parse


def comma_separated(item_type: Callable[[str], object]):
    """An argparse type for ``1,8,32``: a list, each item checked by ``item_type`` (an empty list is refused)."""
    def parse(text: str) -> list:
        import argparse

        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"'{text}' is empty; give comma-separated values, e.g. 1,8,32")
        return [item_type(item) for item in items]

    parse.__name__ = "comma-separated list"
    parse.item_type = item_type  # type: ignore[attr-defined]
    return parse


def excerpt(text: object, limit: int = 60) -> str:
    """User content quoted in a message, cut short: a header-less CSV's first line is 8 KB of pixels."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


from contextlib import contextmanager  # noqa: E402 (these helpers were appended)
from typing import Iterator  # noqa: E402


@contextmanager
def naming(path: object) -> Iterator[None]:
    """FerErrors raised inside say which file they are about, when their message does not already."""
    try:
        yield
    except FerError as exc:
        if str(path) in str(exc):
            raise
        raise FerError(f"{path}: {exc}") from exc


def one_of(choices):
    """An argparse type for a name from ``choices`` (with comma_separated: a list of them), suggesting the
    closest name for a typo."""
    choices = tuple(choices)

    def parse(text: str) -> str:
        import argparse

        from .spec import did_you_mean

        if text not in choices:
            raise argparse.ArgumentTypeError(f"'{text}' is not one of {', '.join(choices)}.{did_you_mean(text, choices)}")
        return text

    parse.__name__ = "name"
    return parse
