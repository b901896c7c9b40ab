"""The digits reference model in Keras 3 (TensorFlow): the same architecture as DigitsNet, in NHWC."""

from __future__ import annotations

import keras
from keras import layers


def conv_bn(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return layers.BatchNormalization(name=f"{name}_bn")(x)


def digits_net(width: int = 16, classes: int = 10) -> keras.Model:
    image = keras.Input((8, 8, 1), name="image")
    x = layers.ReLU()(conv_bn(image, width, "stem"))
    residual = conv_bn(layers.ReLU()(conv_bn(x, width, "block_a")), width, "block_b")
    x = layers.ReLU()(layers.Add()([x, residual]))
    x = layers.MaxPooling2D(2)(x)
    x = layers.ReLU()(conv_bn(x, 2 * width, "widen"))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.1)(x)
    logits = layers.Dense(classes, name="logits")(x)
    return keras.Model(image, logits, name="digits_net")
