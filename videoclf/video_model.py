"""Where the registered model's pyfunc lived before ``videoclf.registered``: kept for models already registered.

Their ``served_model.py`` (MLflow's models-from-code file, copied into each model) imports
``videoclf.video_model.VideoClassifier``; in a process that already imported this package (``videoclf
predict``, ``videoclf serve``), MLflow resolves it against the installed code, so the name must keep working.
"""

from videoclf.registered.format import ModelSettings, load_settings  # noqa: F401
from videoclf.registered.pyfunc import VideoClassifier, sampled_frames  # noqa: F401
