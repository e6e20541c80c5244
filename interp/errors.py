"""User-facing errors.

Every problem a user can fix (a bad path, an unknown config key, a corrupt checkpoint) is
raised as an :class:`InterpError` whose message is one line saying what was wrong and how to
fix it. The CLI prints that line and exits with status 2 instead of showing a traceback.
"""


class InterpError(Exception):
    """A problem with the user's input or files, explained in one line."""


class ConfigError(InterpError):
    """An unknown key, a bad value or a bad combination in a run config."""


class DataError(InterpError):
    """A corpus, tokenizer or token cache that cannot be used."""


class CheckpointError(InterpError):
    """A run directory or checkpoint that is missing, incomplete or corrupt."""


class TrainingDiverged(InterpError):
    """The training loss (or the held-out loss at a checkpoint) became NaN or infinite."""


class LinkOutside(InterpError):
    """A file or folder of a run folder that is a symbolic link out of it (or a lock file that
    is a link): a run from elsewhere may make interp read or write only its own files."""
