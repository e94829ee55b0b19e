"""The registered pyfunc, logged as code (MLflow "models from code"): the model holds no pickled object.

MLflow runs (a copy of) this file when the model loads; ``videoclf`` itself travels with the model
(``code_paths``).
"""

from mlflow.models import set_model

from videoclf.registered.pyfunc import VideoClassifier

set_model(VideoClassifier())
