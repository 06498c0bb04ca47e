"""The one exception type for user mistakes: CLIs print its message and exit 2, without a traceback."""


class FerError(Exception):
    """A problem the user can fix (bad path, bad data, unknown name). The message says what and how."""


class FieldError(FerError):
    """A bad value of one configuration field, raised by the library in the field's own name
    (``FieldError("detect_every", "must be 1 or more")``). A CLI shows it under its option's name
    (``--detect-every must be 1 or more``): ``fer_engine.cli.run_cli`` maps ``field`` to ``--field``, or through
    the mapping it is given where an option is named otherwise."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field} {problem}")

    def for_option(self, option: str) -> str:
        return f"{option} {self.problem}"
