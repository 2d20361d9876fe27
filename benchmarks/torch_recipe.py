"""fastnet-train's default recipe, written as a PyTorch user would: the comparison for a first run.

Usage: python benchmarks/torch_recipe.py MNIST_DIR [--save FILE] [--threads N]

784-128-10 (ReLU), He-normal weights and zero biases, mini-batches of 128
reshuffled each epoch, Nesterov momentum 0.9, weight decay 1e-4 on the
weights only, learning rate 0.1 with a cosine decay per epoch, 15 epochs on
MNIST's 60,000 training digits; then the test accuracy, and the weights
saved with ``torch.save``. It reads the IDX files with NumPy alone and
imports nothing from fastnet, so timing the whole process
(``/usr/bin/time -v python benchmarks/torch_recipe.py ...``) gives what a
PyTorch user's first run costs, import included, beside ``fastnet-train``'s.
It prints one line per epoch, as ``fastnet-train`` does.
"""
import argparse
import gzip
import math
import time
from pathlib import Path

import numpy as np
import torch


def read_idx(path):
    """An IDX file (gzipped or not) as a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(folder, stem):
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    raise SystemExit(f"{folder}: no {stem}[.gz]")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist_dir", type=Path)
    parser.add_argument("--save", type=Path, default=Path("torch-model.pt"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x_train = torch.from_numpy(read_idx(find(args.mnist_dir, "train-images-idx3-ubyte")).reshape(60000, -1).copy())
    y_train = torch.from_numpy(read_idx(find(args.mnist_dir, "train-labels-idx1-ubyte")).astype(np.int64))
    x_test = torch.from_numpy(read_idx(find(args.mnist_dir, "t10k-images-idx3-ubyte")).reshape(10000, -1).copy())
    y_test = torch.from_numpy(read_idx(find(args.mnist_dir, "t10k-labels-idx1-ubyte")).astype(np.int64))

    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    for layer in (net[0], net[2]):
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        torch.nn.init.zeros_(layer.bias)
    weights = [net[0].weight, net[2].weight]
    biases = [net[0].bias, net[2].bias]
    lr = 0.1
    optimizer = torch.optim.SGD([{"params": weights, "weight_decay": 1e-4}, {"params": biases, "weight_decay": 0.0}],
                                lr=lr, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.functional.cross_entropy
    n, batch = len(x_train), 128
    for epoch in range(args.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
        order = torch.randperm(n)
        loss_sum = 0.0
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            logits = net(x_train[rows].to(torch.float32).mul_(1 / 255))
            loss = loss_fn(logits, y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(rows)
        print(f"epoch {epoch + 1}/{args.epochs}  loss {loss_sum / n:.4f}  ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    with torch.no_grad():
        accuracy = (net(x_test.to(torch.float32).mul_(1 / 255)).argmax(1) == y_test).float().mean().item()
    torch.save(net.state_dict(), args.save)
    print(f"test accuracy {100 * accuracy:.2f}%, saved {args.save} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
