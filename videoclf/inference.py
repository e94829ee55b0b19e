"""Where the registered model's pyfunc lived before ``video_model.py``: kept for models registered then.

Their ``served_model.py`` (or pickle) names ``videoclf.inference.VideoClassifier``; see ``video_model.py``.
"""

from videoclf.registered.format import load_settings  # noqa: F401
from videoclf.registered.pyfunc import VideoClassifier, sampled_frames  # noqa: F401
