"""Where the registered model's pyfunc lived before ``video_model.py`` / ``video_requests.py``.

Models registered by earlier versions name ``videoclf.inference.VideoClassifier`` (their
``served_model.py``, or their pickle); in a process that already imported this package,
MLflow loads them against the installed code, so the old name must keep working.
"""

from videoclf.video_model import VideoClassifier, load_settings, sampled_frames  # noqa: F401
