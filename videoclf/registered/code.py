from mlflow.models import set_model

from videoclf.inference import VideoClassifier

set_model(VideoClassifier())
