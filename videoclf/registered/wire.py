"""The registered model's wire format: the columns a request may hold and an answer holds, named once.

Requests (a DataFrame in-process, JSON or CSV over HTTP) hold ``video_path`` and/or
``video_bytes``, optionally ``window_seconds`` / ``stride_seconds`` (also as params for
every row). Answers hold the path, a probability per class, the predicted label, the row's
error and warning, and with windows the window's kind and span.
"""

PATH_COLUMN = "video_path"
BYTES_COLUMN = "video_bytes"
WINDOW_COLUMN = "window_seconds"
STRIDE_COLUMN = "stride_seconds"
INPUT_COLUMNS = (PATH_COLUMN, BYTES_COLUMN, WINDOW_COLUMN, STRIDE_COLUMN)

LABEL_COLUMN = "predicted_label"
ERROR_COLUMN = "error"
WARNING_COLUMN = "warning"
KIND_COLUMN = "kind"  # "window", or "video" for a whole video (or the mean over its windows)
WINDOW_START_COLUMN = "window_start"  # seconds
WINDOW_END_COLUMN = "window_end"
