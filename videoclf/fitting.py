"""``model.fit`` on in-memory arrays without Keras' per-epoch pipeline cost, with the same batches.

Given NumPy arrays, Keras builds a shuffling ``tf.data`` pipeline (parallel
map, prefetch) and creates a new iterator of it twice an epoch for training
and twice for validation. Each creation costs milliseconds, as much as a
whole epoch of our small models (README "Measured", the trials' row).

Under a global seed (``keras.utils.set_random_seed``, which every caller here
sets before building) Keras' seeded shuffle is re-created with each iterator,
so every epoch of one ``fit`` sees the *same* order: one permutation per fit.
Here that permutation is drawn once, exactly as Keras draws it, and the
epochs iterate a plain batched dataset of the reordered arrays (cheap to
iterate), so the updates, and so every curve and score, are those of
``model.fit(x, y)`` (tests/test_fitting.py).
"""

from __future__ import annotations

import numpy as np


def keras_order(n: int) -> np.ndarray:
    """The permutation of ``range(n)`` Keras' array feeding draws for a fit under the current global seed.

    The op is built as Keras' ``ArrayDataAdapter`` builds it (a ``tf.random.shuffle`` of ``tf.range`` inside a
    ``Dataset.map`` function), so its seed, derived from the global seed and the op's place in that function,
    is the same.
    """
    import tensorflow as tf

    def permutation(_):
        indices = tf.range(n, dtype=tf.int64)
        return tf.random.shuffle(indices)

    return next(iter(tf.data.Dataset.range(1).map(permutation))).numpy()


def _as_fed(values: np.ndarray) -> np.ndarray:
    """Floats in Keras' float type, as its array feeding casts them; everything else as it is."""
    import keras

    values = np.asarray(values)
    return values.astype(keras.config.floatx(), copy=False) if np.issubdtype(values.dtype, np.floating) \
        else values


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((_as_fed(x), _as_fed(y))).batch(batch_size)


def fit_arrays(model, x: np.ndarray, y: np.ndarray, *, batch_size: int,
               validation_data: tuple[np.ndarray, np.ndarray] | None = None,
               validation_batch_size: int | None = None, **kwargs):
    """``model.fit(x, y, batch_size=, validation_data=, validation_batch_size=, **kwargs)``, faster.

    Returns Keras' History. The validation split is read in order, ``validation_batch_size`` (default
    ``batch_size``) videos at a time, as Keras reads it.
    """
    order = keras_order(len(x))
    validation = None
    if validation_data is not None:
        validation = _batches(*validation_data, validation_batch_size or batch_size)
    return model.fit(_batches(x[order], y[order], batch_size), shuffle=False, validation_data=validation, **kwargs)
