"""The registered pyfunc, logged as code (MLflow "models from code"): the model holds no pickled object.

MLflow runs this file when the model loads; ``videoclf`` itself travels with the model (``code_paths``).
"""

from mlflow.models import set_model

from videoclf.video_model import VideoClassifier

set_model(VideoClassifier())
