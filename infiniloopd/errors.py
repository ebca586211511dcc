"""The one exception type for errors a user can cause."""


class UserError(Exception):
    """A problem with something the user supplied (config, command, file, generator).

    Its message is one line that names what was wrong and where, e.g.
    ``config.yaml: playback.crossfade: expected seconds between 0 and 60, got "long"``.
    It is reported without a traceback; tracebacks are for bugs only.
    """
