"""Update rules, applied in place to a flat parameter buffer (or any 1-D slice of one).

Each rule follows PyTorch's conventions, with L2 weight decay added to the
gradient (``g = grad + weight_decay * param``) before the rule proper.
Scalars arrive as Python floats and are cast to the parameters' dtype once,
so float32 buffers stay in float32 arithmetic.
"""
import math

from numba import prange

from .._jit import jit


@jit(parallel=True)
def sgd_update(param, grad, lr, weight_decay):
    """Plain gradient descent: ``param -= lr * (grad + weight_decay * param)``. Overwrites ``param``."""
    # param (P,), grad (P,)
    t = param.dtype.type
    lr_, wd = t(lr), t(weight_decay)
    for i in prange(param.shape[0]):
        param[i] -= lr_ * (grad[i] + wd * param[i])


@jit(parallel=True)
def momentum_update(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    """Heavy-ball or Nesterov momentum. Overwrites ``param`` and ``velocity``.

    ``velocity = momentum * velocity + g``, then ``param -= lr * velocity``,
    or with ``nesterov`` ``param -= lr * (g + momentum * velocity)``.
    Start ``velocity`` at zero.
    """
    # param (P,), velocity (P,), grad (P,)
    t = param.dtype.type
    lr_, mu, wd = t(lr), t(momentum), t(weight_decay)
    for i in prange(param.shape[0]):
        g = grad[i] + wd * param[i]
        v = mu * velocity[i] + g
        velocity[i] = v
        if nesterov:
            param[i] -= lr_ * (g + mu * v)
        else:
            param[i] -= lr_ * v


@jit(parallel=True)
def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, step):
    """Adam (Kingma & Ba), with L2 weight decay. Overwrites ``param``, ``m`` and ``v``.

    ``step`` counts updates from 1; start ``m`` and ``v`` at zero. The bias
    corrections ``1 - beta**step`` are folded into the step size, computed
    once in float64. So are the moments' weights ``1 - beta``, rounded to
    the parameters' dtype only then: in float32, ``1 - float32(0.999)`` is
    1.3e-5 away from ``float32(1 - 0.999)``, which would make every step
    about 7e-6 (relatively) too long.
    """
    # param (P,), m (P,), v (P,), grad (P,)
    t = param.dtype.type
    b1, b2, wd = t(beta1), t(beta2), t(weight_decay)
    a1, a2 = t(1.0 - beta1), t(1.0 - beta2)
    c1 = 1.0 - beta1**step
    c2 = 1.0 - beta2**step
    step_size = t(lr * math.sqrt(c2) / c1)
    eps_ = t(eps * math.sqrt(c2))
    for i in prange(param.shape[0]):
        g = grad[i] + wd * param[i]
        mi = b1 * m[i] + a1 * g
        vi = b2 * v[i] + a2 * g * g
        m[i] = mi
        v[i] = vi
        param[i] -= step_size * mi / (math.sqrt(vi) + eps_)
