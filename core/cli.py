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
