"""Resident memory of a command over its run, sampled from /proc (Linux):

    python -m fer_engine.benchmarks.rss -- fer-run --video long.mp4 --json out.jsonl --no-render

Prints the RSS at 10 % of the run, the peak and the last sample (MB), so growth over a long run shows.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 0 if argv else 2
    try:
        process = subprocess.Popen(argv)
    except OSError as exc:
        print(f"rss: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 2
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    while process.poll() is None:
        value = rss_mb(process.pid)
        if value is not None:
            samples.append((time.perf_counter() - started, value))
        time.sleep(0.25)
    if samples:
        values = [v for _, v in samples]
        early = values[len(values) // 10]
        print(f"rss MB: at 10% {early:.0f}, peak {max(values):.0f}, last {values[-1]:.0f} "
              f"({len(samples)} samples over {samples[-1][0]:.0f} s)", file=sys.stderr)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
