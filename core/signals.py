"""The stop signals every long-running fer-* command obeys: SIGINT (Ctrl-C), SIGTERM (docker stop, systemd,
Kubernetes) and SIGHUP. Each command decides what a stop means (``_handle``); this installs the handlers for
the duration of a ``with`` block and puts the previous ones back."""

from __future__ import annotations

import signal
import threading


class StopSignalScope:
    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP does not exist on Windows

    def __init__(self):
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # Python sets handlers there only
            for name in self.NAMES:
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame) -> None:
        raise NotImplementedError
