"""fastnet's hand-written Numba kernels.

Every kernel is a plain ``@njit`` function: explicit loops over preallocated,
C-contiguous arrays, no allocation, no BLAS call, no Python object, ``None``
returned. Arguments come outputs first, then inputs, then scalars; a gradient
carries a ``d`` prefix. Each docstring says whether a kernel *overwrites* its
outputs or *accumulates* into them. They can be called from Python or from
your own ``@njit`` code (see ``docs/kernels.md``).

Shape legend used in every kernel's shape comment:

    B  batch: samples, one per row
    D  inputs of a layer (784 for an MNIST image)
    H  outputs of a layer (hidden units)
    K  classes (10)
    N  samples in a whole data set
    P  parameters in a flat buffer; or the length of a blocked kernel's scratch
    S  parts a sparse kernel splits its work into (rows of its int32 scratch, >= 1)

Weights are stored ``(D, H)`` -- inputs by outputs, the transpose of the
``W`` in ``Z = W X + b`` -- so that every inner loop runs along a row of the
weights in memory order and a zero input (81% of MNIST's pixels, about half
of the ReLU outputs) skips a whole row of work.

The heavy kernels (the linear layers, the update rules, the batch gather,
augmentation and standardization, and the dropout mask's hash) split their work across
Numba's threads with ``prange``; every output element is computed by one
thread in one fixed order, so results are the same bits whatever the thread
count. The light ones (ReLU, dropout's backward pass, softmax +
cross-entropy) run on the calling thread: they are too small to gain from
threads.

``dropout_key(seed, step, layer)`` is exported beside the kernels but is not
in ``__all__``, which lists the array kernels (each with a checked wrapper in
``fastnet.checked``): it is a helper that returns a value, the int64 key that
``dropout_forward`` takes. It has a twin in ``fastnet.reference`` too.
So is ``pack_size(M, K, N)``, the length of the scratch ``pack`` that the
register-blocked ``blocked_linear_*`` kernels take for a product
``(M, K) @ (K, N)``: ``pack_size(B, D, H)`` for the forward pass,
``pack_size(B, H, D)`` for the input gradient, ``pack_size(D, B, H)`` for
the weight gradient.

float32 and float64 arrays both work; within one call all floating-point
arrays must share one dtype. Labels may be any integer dtype and must lie in
``0..K-1``: kernels do not check bounds (``fastnet.data`` validates labels
when it loads them).
"""
from .activation import dropout_backward, dropout_forward, relu_backward, relu_forward
from .activation import (
    dropout_key as dropout_key,  # a helper: exported, kept out of __all__ (see above)
)
from .batch import augment_batch, gather_batch, standardize_batch
from .blocked import (
    blocked_linear_backward_input,
    blocked_linear_backward_input_relu,
    blocked_linear_backward_params,
    blocked_linear_forward,
    blocked_linear_relu_forward,
)
from .blocked import pack_size as pack_size  # a helper: exported, kept out of __all__ (see above)
from .classifier import classifier_backward, classifier_forward
from .linear import (
    linear_backward,
    linear_backward_input,
    linear_backward_params,
    linear_forward,
    sparse_linear_backward_params,
    sparse_linear_forward,
)
from .loss import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .optim import adam_update, momentum_update, sgd_update

__all__ = [
    "linear_forward",
    "linear_backward",
    "linear_backward_params",
    "linear_backward_input",
    "sparse_linear_forward",
    "sparse_linear_backward_params",
    "blocked_linear_forward",
    "blocked_linear_relu_forward",
    "blocked_linear_backward_input",
    "blocked_linear_backward_input_relu",
    "blocked_linear_backward_params",
    "relu_forward",
    "relu_backward",
    "dropout_forward",
    "dropout_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "classifier_forward",
    "classifier_backward",
    "sgd_update",
    "momentum_update",
    "adam_update",
    "gather_batch",
    "standardize_batch",
    "augment_batch",
]
