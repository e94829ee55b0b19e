"""What one prediction request holds, and what a served model may read.

Rows carry a video's path or its bytes (written to a private temporary file,
since OpenCV decodes files); served (MLflow's serving flag is set) a path is
read only inside the allowed roots; a request may carry a deadline after which
no new video is started.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from videoclf.tempfiles import private_folder
from videoclf.registered.wire import BYTES_COLUMN, PATH_COLUMN, STRIDE_COLUMN, WINDOW_COLUMN

ALLOWED_ROOTS_ENV = "VIDEOCLF_ALLOWED_ROOTS"  # os.pathsep-separated folders a served model may read paths from

# When the serving app sets it, a request stops taking new videos at this time.monotonic() value; the rows
# left get an error (the work is bounded, not merely abandoned by a 504). Context variables follow the request
# into the worker thread that runs the prediction.
REQUEST_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("videoclf_deadline", default=None)


class RequestError(MlflowException, ValueError):
    """The request itself is malformed (no usable column, bad params): the whole request is refused with this
    message. An MlflowException with a client-error code, so MLflow's own server (``mlflow models serve``) answers
    400 with it rather than a generic error and a stack trace."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class VideoRequest:
    """One row of a request: a file to read (``path``) or the file's bytes (``data``); ``name`` is echoed back."""

    name: str | None
    path: str | None = None
    data: bytes | None = None
    error: str | None = None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):  # base64 text, when no signature made MLflow decode it
        return base64.b64decode(value, validate=True)
    raise TypeError(f"expected bytes (base64 in JSON). Received: {type(value).__name__}")


def video_requests(model_input: Any) -> list[VideoRequest]:
    """Rows from a DataFrame (or dict of columns) with ``video_path`` and/or ``video_bytes``, a list of paths or
    bytes, or one path. A row with bytes is decoded from them (its ``video_path``, if any, is only its name)."""
    if isinstance(model_input, dict):
        model_input = pd.DataFrame({k: np.atleast_1d(v) if not isinstance(v, list) else v
                                    for k, v in model_input.items()})
    if isinstance(model_input, (str, Path, bytes)):
        model_input = [model_input]
    if not isinstance(model_input, pd.DataFrame):
        items = list(model_input)
        return [VideoRequest(None, data=bytes(i)) if isinstance(i, (bytes, bytearray)) else VideoRequest(str(i), str(i))
                for i in items]
    if PATH_COLUMN not in model_input.columns and BYTES_COLUMN not in model_input.columns:
        received = [str(c) for c in model_input.columns]
        raise RequestError(f"Expected a '{PATH_COLUMN}' (string) and/or '{BYTES_COLUMN}' (binary; base64 in JSON) "
                           "column. " + (f"Received columns: {received}" if received else
                                         "The request held neither (a model server drops the columns its model "
                                         "does not know before the model sees them; check the column names)"))
    paths = model_input[PATH_COLUMN] if PATH_COLUMN in model_input.columns else [None] * len(model_input)
    blobs = model_input[BYTES_COLUMN] if BYTES_COLUMN in model_input.columns else [None] * len(model_input)
    rows = []
    for path, blob in zip(paths, blobs):
        name = None if _missing(path) else str(path)
        if not _missing(blob):
            try:
                data = _as_bytes(blob)
            except (TypeError, ValueError) as exc:
                rows.append(VideoRequest(name, error=f"{BYTES_COLUMN} is not readable: {exc}"))
                continue
            # MLflow's server decodes base64 leniently: invalid text comes out as no bytes at all
            rows.append(VideoRequest(name, data=data) if data else VideoRequest(
                name, error=f"{BYTES_COLUMN} holds no bytes after base64 decoding: invalid base64, or an empty file "
                            "(send the video file's bytes, base64-encoded)"))
        elif name is not None:
            rows.append(VideoRequest(name, path=name))
        else:
            rows.append(VideoRequest(None, error=f"empty row: expected {PATH_COLUMN} or {BYTES_COLUMN}"))
    return rows


def serving() -> bool:
    """True inside a model server (MLflow's scoring server sets this; so does ``videoclf serve``)."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    return str(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.get() or "").lower() == "true"


def allowed_roots() -> list[Path] | None:
    """Folders a served model may read paths from (resolved); None when any path may be read (in-process use)."""
    raw = os.environ.get(ALLOWED_ROOTS_ENV)
    if raw is None and not serving():
        return None
    return [Path(p).resolve() for p in (raw or "").split(os.pathsep) if p]


def path_refusal(path: str, roots: list[Path] | None) -> str | None:
    """Why a served model will not read ``path`` (None: it may). Symlinks are followed before the check."""
    if roots is None:
        return None
    if not roots:
        # `videoclf serve` always sets the variable (empty without --allow-root); MLflow's own server never does
        how = ("start it with --allow-root DIR" if ALLOWED_ROOTS_ENV in os.environ else
               f"set {ALLOWED_ROOTS_ENV}=DIR in its environment")
        return (f"this server reads no paths ({how} to allow a folder); send the file's bytes in {BYTES_COLUMN} "
                "instead")
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        return f"path cannot be resolved ({exc})"
    if not any(real.is_relative_to(root) for root in roots):
        return (f"path is outside the folders this server may read ({os.pathsep.join(map(str, roots))}); send "
                f"the file's bytes in {BYTES_COLUMN} instead")
    return None


def past_deadline() -> bool:
    """True once the current request's deadline (if it has one) has passed."""
    deadline = REQUEST_DEADLINE.get()
    return deadline is not None and time.monotonic() > deadline


TIME_LIMIT_ERROR = ("not processed: the request ran past its time limit; send fewer videos per request or "
                    "raise the server's --timeout")


def name_sent_bytes(message: str, row: VideoRequest, file: str | None) -> str:
    """Errors about sent bytes name the row as the client knows it, not our temporary file."""
    if row.data is None or not file:
        return message
    return message.replace(file, f"{BYTES_COLUMN} of {row.name}" if row.name else BYTES_COLUMN)


@contextlib.contextmanager
def video_files(rows: list[VideoRequest]):
    """A file to decode per row (None for rows with an error): the path, or the bytes written to a private
    temporary file that is removed afterwards (OpenCV decodes files, not memory)."""
    files: list[str | None] = []
    with private_folder("request") as folder:
        for index, row in enumerate(rows):
            if row.data is not None:
                file = Path(folder) / f"video-{index}"
                file.write_bytes(row.data)
                files.append(str(file))
            else:
                files.append(row.path)
        yield files


POSITIVE_RULE = "must be a finite number of seconds greater than 0"  # what a window or stride must be
WITHOUT_WINDOW = "was given without"  # a stride needs a window


def window_setting(window: Any, stride: Any, window_name: str = WINDOW_COLUMN,
                   stride_name: str = STRIDE_COLUMN, nan_is_missing: bool = True) -> tuple[float, float] | None:
    """``(window, stride)`` seconds, or None for the whole video (no window). Missing values are None, and NaN where
    it stands for JSON null (a table's empty cell; ``nan_is_missing=False`` where a person typed the number: the
    command line, params); a window must be a finite number of seconds > 0, and so must a stride, which defaults to
    the window and needs one. Raises ValueError naming the setting otherwise: one rule for the CLI, params, columns
    and HTTP."""
    window = _seconds(window, window_name, nan_is_missing)
    stride = _seconds(stride, stride_name, nan_is_missing)
    if window is None:
        if stride is not None:
            raise ValueError(f"{stride_name} {WITHOUT_WINDOW} {window_name}: set a window too, or leave the "
                             "stride out to predict the whole video")
        return None
    return window, window if stride is None else stride


def _seconds(value: Any, name: str, nan_is_missing: bool = True) -> float | None:
    if value is None or (nan_is_missing and _missing(value)):
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds. Received: {value!r}") from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} {POSITIVE_RULE}. Received: {value!r}")
    return seconds


def window_requests(model_input: Any, params: dict | None, count: int) -> list[tuple[float, float] | str | None]:
    """Per row: ``(window, stride)`` seconds, from ``window_seconds`` / ``stride_seconds`` columns or params; None
    where the whole video is wanted; the error message where the row's setting is invalid. An invalid setting in
    ``params`` holds for every row: the request is refused (RequestError)."""
    params = params or {}
    try:
        default = window_setting(params.get(WINDOW_COLUMN), params.get(STRIDE_COLUMN), nan_is_missing=False)
    except ValueError as exc:
        raise RequestError(f"params: {exc}") from None
    columns = model_input.columns if isinstance(model_input, pd.DataFrame) else ()
    if WINDOW_COLUMN not in columns and STRIDE_COLUMN not in columns:
        return [default] * count
    windows = list(model_input[WINDOW_COLUMN]) if WINDOW_COLUMN in columns else [params.get(WINDOW_COLUMN)] * count
    strides = list(model_input[STRIDE_COLUMN]) if STRIDE_COLUMN in columns else [params.get(STRIDE_COLUMN)] * count
    out: list[tuple[float, float] | str | None] = []
    for window, stride in zip(windows, strides):
        try:
            out.append(window_setting(window, stride))
        except ValueError as exc:
            out.append(str(exc))
    return out
