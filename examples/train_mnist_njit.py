"""Train a 784-128-10 MLP on MNIST in your own @njit loop, calling only fastnet kernels.

Everything is allocated here, in Python; then one compiled function,
:func:`train_and_test`, runs every epoch of mini-batch SGD with momentum and
scores the test set. It calls nothing but :mod:`fastnet.kernels`. See
docs/kernels.md for each kernel's arguments and shapes.

    python examples/train_mnist_njit.py                 # MNIST from $FASTNET_DATA/mnist or the cache
    python examples/train_mnist_njit.py --data DIR --epochs 5
"""
import argparse

import numpy as np
from numba import njit

from fastnet import kernels as K
from fastnet.data import load_dataset


@njit(cache=True)
def train_and_test(train_images, train_labels, test_images, test_labels,
                   W1, b1, W2, b2, params, grads, velocity,
                   x, y, z1, a1, z2, probs, losses, dz2, da1, dz1, index1, index2,
                   dW1, db1, dW2, db2, epochs, lr, momentum, seed):
    """Train for ``epochs`` epochs, then return the accuracy on the test set.

    ``W1, b1, W2, b2`` are views of the flat buffer ``params``, and
    ``dW1, db1, dW2, db2`` views of ``grads``, so one update call covers
    every parameter. The batch size is ``x.shape[0]``.
    """
    # x (B, 784), z1/a1/da1/dz1 (B, 128), z2/probs/dz2 (B, 10), W1 (784, 128), W2 (128, 10)
    np.random.seed(seed)
    B = x.shape[0]
    N = train_images.shape[0]
    order = np.arange(N)
    for epoch in range(epochs):
        np.random.shuffle(order)
        total = 0.0
        for start in range(0, N - B + 1, B):        # whole batches only
            K.gather_batch(x, y, train_images, train_labels, order, start, 1.0 / 255.0)
            # forward: x -> z1 -> a1 = relu(z1) -> z2 -> probs, losses
            K.sparse_linear_forward(z1, index1, x, W1, b1, 1.0)
            K.relu_forward(a1, z1)
            K.sparse_linear_forward(z2, index2, a1, W2, b2, 1.0)
            K.softmax_cross_entropy_forward(probs, losses, z2, y)
            total += losses.sum()
            # backward: each kernel overwrites its gradients, each into a buffer of its
            # own (in place, the ReLU loop does not vectorise: see docs/kernels.md)
            K.softmax_cross_entropy_backward(dz2, probs, y)
            K.linear_backward(da1, dW2, db2, dz2, a1, W2)
            K.relu_backward(dz1, da1, a1)
            K.linear_backward_params(dW1, db1, dz1, x)
            # update all parameters at once
            K.momentum_update(params, velocity, grads, lr, momentum, 0.0, False)
        print("epoch", epoch + 1, "mean loss", total / ((N // B) * B))

    # test: whole batches, then the remainder through the same kernels on row slices
    correct = 0
    test_order = np.arange(test_images.shape[0])
    for start in range(0, test_images.shape[0], B):
        n = min(B, test_images.shape[0] - start)
        K.gather_batch(x[:n], y[:n], test_images, test_labels, test_order, start, 1.0 / 255.0)
        K.sparse_linear_forward(z1[:n], index1[:n], x[:n], W1, b1, 1.0)
        K.relu_forward(a1[:n], z1[:n])
        K.sparse_linear_forward(z2[:n], index2[:n], a1[:n], W2, b2, 1.0)
        for i in range(n):
            correct += np.argmax(z2[i]) == y[i]
    return correct / test_images.shape[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding the four MNIST files (default: $FASTNET_DATA/mnist, the cache)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--limit", type=int, default=None, help="train on the first LIMIT images only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = load_dataset("mnist", data_dir=args.data)
    train_images = data.train_images.reshape(len(data.train_images), -1)[:args.limit]   # (N, 784) uint8
    train_labels = data.train_labels[:args.limit]
    test_images = data.test_images.reshape(len(data.test_images), -1)
    test_labels = data.test_labels

    D, H, C, B = 784, 128, 10, args.batch_size
    dtype = np.float32
    rng = np.random.default_rng(args.seed)
    # Parameters in one flat buffer, and named views of it; the gradients likewise.
    sizes = [D * H, H, H * C, C]
    params = np.zeros(sum(sizes), dtype)
    grads = np.zeros_like(params)
    velocity = np.zeros_like(params)
    W1, b1, W2, b2 = (p.reshape(s) for p, s in zip(np.split(params, np.cumsum(sizes)[:-1]),
                                                    [(D, H), (H,), (H, C), (C,)]))
    dW1, db1, dW2, db2 = (g.reshape(s) for g, s in zip(np.split(grads, np.cumsum(sizes)[:-1]),
                                                        [(D, H), (H,), (H, C), (C,)]))
    W1[:] = rng.normal(0.0, np.sqrt(2.0 / D), (D, H))    # He initialisation; biases stay 0
    W2[:] = rng.normal(0.0, np.sqrt(2.0 / H), (H, C))

    # Activations, their gradients, and the sparse kernels' scratch, for one batch.
    x, y = np.empty((B, D), dtype), np.empty(B, np.int64)
    z1, a1 = np.empty((B, H), dtype), np.empty((B, H), dtype)
    da1, dz1 = np.empty((B, H), dtype), np.empty((B, H), dtype)
    z2, probs, dz2 = np.empty((B, C), dtype), np.empty((B, C), dtype), np.empty((B, C), dtype)
    losses = np.empty(B, dtype)
    index1, index2 = np.empty((B, D), np.int32), np.empty((B, H), np.int32)

    accuracy = train_and_test(train_images, train_labels, test_images, test_labels,
                              W1, b1, W2, b2, params, grads, velocity,
                              x, y, z1, a1, z2, probs, losses, dz2, da1, dz1, index1, index2,
                              dW1, db1, dW2, db2, args.epochs, args.lr, args.momentum, args.seed)
    print(f"test accuracy: {100 * accuracy:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
