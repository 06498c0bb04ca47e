"""The main of a measuring script: refuse an unwritable ``--json`` and a bad ``--data`` before the work, write
the rows after it, every user mistake a one-line error (``run_cli``)."""

from __future__ import annotations

import json
from typing import Callable

from fer_engine.cli import run_cli


def run_measure(prog: str, args, measure: Callable[[], object]) -> int:
    """Runs ``measure()`` for a script whose ``args`` have ``data`` and ``json``; its rows go to ``--json``."""

    def _main() -> int:
        from fer_engine.outputs import check_outputs, write_outputs

        check_outputs(files={"--json": args.json})
        if args.data:
            from fer_engine.train.data import check_data_path

            check_data_path(args.data)
        rows = measure()
        write_outputs([("--json", args.json, lambda path: path.write_text(json.dumps(rows, indent=1)))])
        return 0

    return run_cli(_main, prog)
