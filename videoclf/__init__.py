"""videoclf: cached video features, tracked KerasTuner searches, registered models."""

__version__ = "0.1.0"
