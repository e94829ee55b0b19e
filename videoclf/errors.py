"""Errors a user can hit and fix: the CLI prints their message, never a traceback."""

import errno


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


class StorageError(VideoclfError):
    """A place the job writes to is full, over quota or read-only (the feature cache has its own, CacheWriteError)."""


# What a full disk, a quota or a read-only file system looks like, from the OS or through a library's message
# (SQLite says "database or disk is full"; MLflow and Keras re-raise OSErrors in their own words).
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_FULL_PHRASES = ("database or disk is full", "No space left on device", "Disk quota exceeded", "File too large",
                 "Read-only file system", "attempt to write a readonly database")


def storage_failure(exc: BaseException) -> tuple[str, str | None] | None:
    """``(reason, file)`` when ``exc`` or an exception it came from is a full, over-quota or read-only store."""
    import os

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return os.strerror(exc.errno), exc.filename
        for phrase in _FULL_PHRASES:
            if phrase in str(exc):
                return phrase, None
        exc = exc.__cause__ or exc.__context__
    return None


def writing_to(place: str, fix: str):
    """A context manager: a full, over-quota or read-only store met inside the block becomes one StorageError naming
    ``place`` (a database full is the tracking store whatever the block), the reason and ``fix``."""
    import contextlib

    @contextlib.contextmanager
    def block():
        try:
            yield
        except VideoclfError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is a storage failure
            found = storage_failure(exc)
            if found is None:
                raise
            reason, file = found
            where = place
            if "database" in reason:
                where, fix_here = "the MLflow tracking store", ("make room where its database lives, or set "
                                                                "MLFLOW_TRACKING_URI to a store with space")
            else:
                fix_here = fix
            raise StorageError(f"Cannot write to {where}: {reason}{f' ({file})' if file else ''}. {fix_here[0].upper()}"
                               f"{fix_here[1:]}. Nothing was registered; re-running the same command resumes where "
                               "this stopped.") from None

    return block()
