"""fit_arrays must train exactly as Keras' own ``model.fit`` on the same arrays (the same search scores)."""

import numpy as np
import pytest


@pytest.mark.parametrize("family", ["pooled", "gru"])
@pytest.mark.parametrize("validation_batch_size", [None, 13])
def test_fit_arrays_gives_exactly_the_curves_of_keras_fit(family, validation_batch_size):
    import keras

    from videoclf.fitting import fit_arrays
    from videoclf.model import build_sequence_model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(37, 6, 12)).astype(np.float32)
    x[::3, 4:] = 0  # some clips shorter than the window
    y = rng.integers(0, 3, 37)
    validation = (x[:13] * 0.5, y[:13])

    def trained(fit):
        keras.utils.set_random_seed(5)
        model = build_sequence_model(num_features=12, num_classes=3, family=family, frame_units=8, gru_units=(8,),
                                     dropout=0.3, input_dropout=0.3)
        history = fit(model, x, y, batch_size=8, validation_data=validation,
                      validation_batch_size=validation_batch_size, epochs=5, verbose=0).history
        return history, [w.copy() for w in model.get_weights()]

    keras_history, keras_weights = trained(lambda model, *args, **kwargs: model.fit(*args, **kwargs))
    history, weights = trained(fit_arrays)
    assert history == keras_history  # every epoch: Keras repeats one seeded order per fit, so must we
    assert all(np.array_equal(a, b) for a, b in zip(weights, keras_weights, strict=True))


def test_keras_order_is_a_seeded_permutation():
    import keras

    from videoclf.fitting import keras_order

    keras.utils.set_random_seed(3)
    first = keras_order(50)
    keras.utils.set_random_seed(3)
    assert np.array_equal(keras_order(50), first)
    assert sorted(first) == list(range(50)) and not np.array_equal(first, np.arange(50))
    keras.utils.set_random_seed(4)
    assert not np.array_equal(keras_order(50), first)
