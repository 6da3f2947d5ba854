"""LARS: layer-wise adaptive rate scaling for large-batch SGD."""

import keras
from keras import ops

from kerasrecipes import _compat


@keras.saving.register_keras_serializable(package="kerasrecipes")
class LARS(keras.optimizers.Optimizer):
    """SGD with momentum whose step for each layer is scaled by `||w|| / ||grad||`.

    You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional
    Networks" (arXiv:1708.03888), Algorithm 1: for each variable w with
    gradient g,

        g      <- g + weight_decay * w
        local  =  trust_coefficient * ||w|| / (||g_loss|| + weight_decay * ||w||)
        v      <- momentum * v + learning_rate * local * g
        w      <- w - v

    The trust ratio is 1 when either norm is 0. Variables excluded from
    weight decay (`exclude_from_weight_decay`, or
    `kr.optimizers.exclude_from_decay`: biases and normalization parameters)
    get neither decay nor the trust ratio, as in the reference
    implementations (SimCLR, MLPerf). Here weight decay is the L2 form of the
    paper, added to the gradient before the trust ratio, so it is not
    applied a second time by Keras' decoupled decay.

    Why our own: neither Keras 3 nor keras-cv ships LARS (LAMB and AdamW are
    in Keras).

    Args:
        learning_rate: float or schedule; the paper scales it linearly with
            the batch size (`kr.schedules.scale_learning_rate`) and warms up.
        momentum: float.
        weight_decay: float, the L2 coefficient (paper: 5e-4 for AlexNet-BN,
            1e-4 ... 5e-5 for ResNet-50).
        trust_coefficient: eta in the paper (0.001).
        epsilon: added to the denominator of the trust ratio.
        nesterov: use Nesterov momentum.
        **kwargs: the base optimizer arguments (clipnorm, use_ema, ...).
    """

    weight_decay_in_update_step = True

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=0.001,
        epsilon=0.0,
        nesterov=False,
        name="lars",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate, weight_decay=weight_decay, name=name, **kwargs
        )
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LARS: momentum must be in [0, 1), got {momentum}.")
        self.momentum = float(momentum)
        self.trust_coefficient = float(trust_coefficient)
        self.epsilon = float(epsilon)
        self.nesterov = bool(nesterov)
        # The decay is part of the gradient in `update_step` (L2 form of the paper).
        _compat.replace_weight_decay_step(self, _decay_in_gradient)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        momentum = self._momentums[_compat.optimizer_variable_index(self, variable)]
        if _compat.uses_weight_decay(self, variable):
            decay = ops.cast(self.weight_decay or 0.0, dtype)
            weight_norm = ops.sqrt(ops.sum(ops.square(variable)))
            gradient_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            trust = ops.where(
                ops.logical_and(weight_norm > 0, gradient_norm > 0),
                self.trust_coefficient
                * weight_norm
                / (gradient_norm + decay * weight_norm + self.epsilon),
                ops.ones_like(weight_norm),
            )
            gradient = gradient + decay * variable
            learning_rate = learning_rate * trust
        self.assign(momentum, self.momentum * momentum + learning_rate * gradient)
        if self.nesterov:
            self.assign_sub(variable, self.momentum * momentum + learning_rate * gradient)
        else:
            self.assign_sub(variable, momentum)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "trust_coefficient": self.trust_coefficient,
                "epsilon": self.epsilon,
                "nesterov": self.nesterov,
            }
        )
        return config


def _decay_in_gradient(variables):
    """Stands in for Keras' decoupled weight decay in `LARS`; see `LARS.update_step`."""
