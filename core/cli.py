"""What every fer-* command shares: user errors become one clear line and exit code 2, no traceback."""

from __future__ import annotations

import sys
from typing import Callable

from .errors import FerError


def run_cli(body: Callable[[], int], prog: str) -> int:
    try:
        return body()
    except FerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
