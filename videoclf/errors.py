"""Errors a user can hit and fix: the CLI prints their message, never a traceback."""


class VideoclfError(Exception):
    """Base class: a problem with the user's inputs, with the fix in the message."""


class ConfigError(VideoclfError):
    """An experiment config file is missing, malformed or has a wrong key/type."""


class DataError(VideoclfError):
    """A CSV, a data folder or a label is not what the pipeline expects."""


class VideoError(VideoclfError):
    """One video cannot be decoded; extraction reports it and skips it."""


class CacheError(VideoclfError):
    """The feature cache is unreadable or does not match the config."""


class WeightsError(VideoclfError):
    """Extractor weights are missing or unreadable; never substituted silently."""


class TrackingStoreError(VideoclfError):
    """The MLflow tracking store cannot be opened (corrupt or truncated file, unreachable server)."""
