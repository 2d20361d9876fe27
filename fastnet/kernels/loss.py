"""Softmax fused with the cross-entropy loss."""
import math

from .._jit import jit


@jit(reassoc=False)
def softmax_cross_entropy_forward(probs, losses, logits, labels):
    """Overwrite ``probs`` with ``softmax(logits)`` row by row, and ``losses``
    with each row's cross-entropy ``-log probs[b, labels[b]]``.

    The row maximum (starting from the row's first logit) is subtracted
    before ``exp``, and the loss is taken as ``log(sum) - (logit - max)``
    rather than as the log of a probability, so it stays finite when that
    probability underflows. A NaN logit makes its row's loss NaN.
    """
    # logits (B, K), labels (B,), probs (B, K), losses (B,)
    softmax_cross_entropy_rows(probs, losses, logits, labels, 0, logits.shape[0])


@jit(reassoc=False)
def softmax_cross_entropy_rows(probs, losses, logits, labels, b0, b1):
    """Rows ``b0..b1-1`` of :func:`softmax_cross_entropy_forward`, for kernels
    that make their logits themselves (:func:`~fastnet.kernels.classifier_forward`):
    ``logits`` may be ``probs`` itself. Compiled without 'reassoc', so its
    term order holds wherever it is inlined."""
    K = logits.shape[1]
    for b in range(b0, b1):
        top = logits[b, 0]
        for k in range(1, K):
            if logits[b, k] > top:
                top = logits[b, k]
        picked = logits[b, labels[b]]
        total = probs.dtype.type(0)
        for k in range(K):
            e = math.exp(logits[b, k] - top)
            probs[b, k] = e
            total += e
        scale = probs.dtype.type(1) / total
        for k in range(K):
            probs[b, k] *= scale
        losses[b] = math.log(total) - (picked - top)


@jit
def softmax_cross_entropy_backward(dlogits, probs, labels):
    """Overwrite ``dlogits`` with the gradient of the batch's *mean* loss:
    ``(probs - onehot(labels)) / B``. ``dlogits`` may be ``probs`` itself.
    """
    # probs (B, K), labels (B,), dlogits (B, K)
    B, K = probs.shape
    scale = probs.dtype.type(1.0 / B)
    for b in range(B):
        for k in range(K):
            dlogits[b, k] = probs[b, k] * scale
        dlogits[b, labels[b]] -= scale
