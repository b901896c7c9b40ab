"""Subclassed Keras 3 models (no functional graph, no ``model.inputs``), registered by name so
``qx export --custom-objects tests/zoo/keras_subclassed.py`` can rebuild them from a .keras file."""

import keras


@keras.saving.register_keras_serializable(package="qx_zoo")
class SubclassedCnn(keras.Model):
    def __init__(self, classes: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = keras.layers.Conv2D(8, 3, padding="same")
        self.norm = keras.layers.BatchNormalization()
        self.depthwise = keras.layers.DepthwiseConv2D(3, padding="same")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(classes)

    def call(self, x, training=False):
        x = keras.activations.relu(self.norm(self.conv(x), training=training))
        x = keras.activations.relu6(self.depthwise(x))
        return self.head(self.pool(x))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


@keras.saving.register_keras_serializable(package="qx_zoo")
class StrictInit(keras.Model):
    """Its __init__ refuses the arguments Keras passes back on load (name, trainable, ...)."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.classes = classes
        self.head = keras.layers.Dense(classes)

    def call(self, x):
        return self.head(x)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}
