"""The one exception type for user mistakes: CLIs print its message and exit 2, without a traceback."""


class FerError(Exception):
    """A problem the user can fix (bad path, bad data, unknown name). The message says what and how."""
