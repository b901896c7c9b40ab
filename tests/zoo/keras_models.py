"""Keras models for the zoo: keras.applications (weights=None, nothing downloaded) and small
functional nets in the shapes tf2onnx finds hard (BatchNorm after a depthwise conv, swish)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _randomize_batchnorm(model) -> None:
    """Trained-looking statistics: default ones would make every BatchNorm an identity."""
    import keras

    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))


def depthwise_swish(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same")(inputs))
    x = keras.layers.BatchNormalization()(keras.layers.DepthwiseConv2D(3, padding="same")(x))
    x = keras.layers.Activation("swish")(x)
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    _randomize_batchnorm(model)
    model.save(path)
    return path


def mobilenet_v2(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    _randomize_batchnorm(model)
    model.save(path)
    return path


def subclassed(path: Path) -> Path:
    import keras

    from keras_subclassed import SubclassedCnn

    keras.utils.set_random_seed(0)
    model = SubclassedCnn()
    model(np.zeros((1, 16, 16, 3), np.float32))
    _randomize_batchnorm(model)
    model.save(path)
    return path


KERAS_ZOO = {"keras_depthwise_swish": depthwise_swish, "keras_mobilenet_v2": mobilenet_v2,
             "keras_subclassed": subclassed}
