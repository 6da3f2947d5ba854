"""LayerScale: a learned per-channel scale on a residual branch (ConvNeXt, CaiT, ViT)."""

import keras


@keras.saving.register_keras_serializable(package="kerasrecipes")
class LayerScale(keras.layers.Layer):
    """Multiplies the last axis by a learned vector `gamma`, initialized to a small constant.

    Touvron et al. 2021, "Going deeper with Image Transformers" (CaiT,
    arXiv:2103.17239), Sec. 3: scaling each residual branch by a diagonal
    matrix that starts near zero lets deep networks start close to the
    identity. ConvNeXt (Liu et al. 2022) uses it with `init_value=1e-6`.

    Why our own: keras.applications' ConvNeXt has a `LayerScale`, but it lives
    in the private `keras.src.applications.convnext` module and is not part of
    the public API, so a model saved with it depends on Keras internals.
    The variable is named `gamma` and shaped `(channels,)` as there, so
    ported weights land one to one.

    Args:
        init_value: float, the initial value of every entry of `gamma`.

    Example:

    >>> layer = LayerScale(init_value=0.5)
    >>> keras.ops.convert_to_numpy(layer(keras.ops.ones((1, 3)))).tolist()
    [[0.5, 0.5, 0.5]]
    """

    def __init__(self, init_value, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
            trainable=True,
        )
        self.built = True

    def call(self, inputs):
        return inputs * self.gamma

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"init_value": self.init_value})
        return config
