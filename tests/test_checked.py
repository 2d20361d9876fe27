"""fastnet.checked: errors that name the argument, the expected and the actual;
valid calls that do exactly what the raw kernel does."""
import inspect
import re

import numpy as np
import pytest

from fastnet import checked as K
from fastnet import kernels
from fastnet.kernels.blocked import pack_size
from test_embedding import SIZES, copies, make_args, written

f32, f64 = np.float32, np.float64


def layer(B=32, D=784, H=128, dtype=f32):
    """out, inp, weight, bias of a linear layer."""
    return np.zeros((B, H), dtype), np.ones((B, D), dtype), np.zeros((D, H), dtype), np.zeros(H, dtype)


def test_every_public_kernel_is_wrapped_with_its_signature():
    assert set(kernels.__all__) <= set(K.__all__)
    for name in kernels.__all__:
        wrapper = getattr(K, name)
        assert wrapper.__name__ == name
        assert inspect.signature(wrapper) == inspect.signature(getattr(kernels, name).py_func)
        assert wrapper.raw is getattr(kernels, name)


@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("name", kernels.__all__)
def test_valid_call_gives_the_raw_kernels_result(rng, name, dtype):
    args = make_args(name, dtype, rng)
    raw = copies(args)
    assert getattr(K, name)(*args.values()) is None
    getattr(kernels, name)(*raw.values())
    for arg in written(name):
        np.testing.assert_array_equal(args[arg], raw[arg], err_msg=f"{name}: {arg}, checked vs raw")


# --- shapes -----------------------------------------------------------------------


def test_shape_mismatch_names_argument_letters_and_sources():
    out, inp, _, bias = layer()
    with pytest.raises(ValueError) as e:
        K.linear_forward(out, inp, np.zeros((784, 100), f32), bias)
    assert str(e.value) == ("linear_forward: weight has shape (784, 100), expected (D, H) = (784, 128) "
                            "from inp (B, D) = (32, 784) and out (B, H) = (32, 128)")


@pytest.mark.parametrize("call, message", [
    (lambda: K.linear_backward_input(np.zeros((32, 784), f32), np.zeros((32, 128), f32), np.zeros((128, 784), f32)),
     "linear_backward_input: weight has shape (128, 784), expected (D, H) = (784, 128)"),
    (lambda: K.relu_backward(np.zeros((4, 5)), np.zeros((4, 5)), np.zeros((5, 4))),
     "relu_backward: out has shape (5, 4), expected (B, H) = (4, 5)"),
    (lambda: K.softmax_cross_entropy_forward(np.zeros((4, 10)), np.zeros(3), np.zeros((4, 10)), np.zeros(4, int)),
     "softmax_cross_entropy_forward: losses has shape (3,), expected (B,) = (4,) from logits (B, K) = (4, 10)"),
    (lambda: K.sgd_update(np.zeros(10), np.zeros(9), 0.1, 0.0),
     "sgd_update: grad has shape (9,), expected (P,) = (10,) from param (P,) = (10,)"),
    (lambda: K.sparse_linear_backward_params(np.zeros((784, 128)), np.zeros(128), np.zeros((4, 16), np.int32),
                                             np.zeros((32, 128)), np.zeros((32, 784)), 1.0),
     "sparse_linear_backward_params: index has shape (4, 16), expected (S, >=B) = (>=1, >=32)"),
    (lambda: K.gather_batch(np.zeros((32, 784)), np.zeros(32, int), np.zeros((100, 784), np.uint8),
                            np.zeros(100, np.uint8), np.arange(100), 80, 1.0),
     "gather_batch: order has shape (100,), expected (>=start+B,) = (>=112,) from x (B, D) = (32, 784) and start = 80"),
    (lambda: K.blocked_linear_forward(np.zeros((32, 100), f32), np.zeros(100, f32), np.zeros((32, 300), np.uint8),
                                      np.zeros((300, 100), f32), np.zeros(100, f32), 1 / 255),
     "blocked_linear_forward: pack has shape (100,), expected (>=pack_size(B, D, H),) = "
     f"(>={pack_size(32, 300, 100)},) from inp (B, D) = (32, 300) and weight (D, H) = (300, 100)"),
    # A pack of pack_size(B, D, H), shorter than the weight gradient's product (D, B) @ (B, H) needs.
    (lambda: K.blocked_linear_backward_params(np.zeros((7, 30)), np.zeros(30), np.zeros(pack_size(30, 7, 30)),
                                              np.zeros((30, 30)), np.zeros((30, 7)), 1.0),
     f"blocked_linear_backward_params: pack has shape ({pack_size(30, 7, 30)},), expected (>=pack_size(D, B, H),) = "
     f"(>={pack_size(7, 30, 30)},) from dout (B, H) = (30, 30) and inp (B, D) = (30, 7)"),
])
def test_shape_errors(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()


@pytest.mark.parametrize("name, letters", [("blocked_linear_forward", "BDH"), ("blocked_linear_backward_input", "BHD"),
                                           ("blocked_linear_backward_params", "DBH"),
                                           ("blocked_linear_relu_forward", "BDH"),
                                           ("blocked_linear_backward_input_relu", "BHD")])
def test_blocked_pack_holds_at_least_pack_size_of_its_product(rng, name, letters):
    """A pack of exactly ``pack_size`` of the kernel's product runs; one element less is refused."""
    args = make_args(name, f32, rng)
    need = kernels.pack_size(*(SIZES[t] for t in letters))
    args["pack"] = np.zeros(need, f32)
    getattr(K, name)(*args.values())
    args["pack"] = np.zeros(need - 1, f32)
    with pytest.raises(ValueError, match="^" + re.escape(
            f"{name}: pack has shape ({need - 1},), expected (>=pack_size({', '.join(letters)}),) = (>={need},) from ")):
        getattr(K, name)(*args.values())


def test_wrong_number_of_dimensions():
    out, inp, weight, _ = layer()
    with pytest.raises(ValueError, match=r"linear_forward: bias has 2 dimensions \(shape \(1, 128\)\), expected 1: \(H,\)"):
        K.linear_forward(out, inp, weight, np.zeros((1, 128), f32))


# --- dtypes -----------------------------------------------------------------------


def test_mixed_float_dtypes_name_the_odd_one_out():
    with pytest.raises(TypeError, match="^relu_forward: out has dtype float64, expected float32 like inp$"):
        K.relu_forward(np.zeros((3, 4), f64), np.zeros((3, 4), f32))
    out, inp, weight, bias = layer()
    with pytest.raises(TypeError, match="^linear_forward: bias has dtype float64, expected float32 like inp$"):
        K.linear_forward(out, inp, weight, bias.astype(f64))


@pytest.mark.parametrize("call, message", [
    (lambda: K.relu_forward(np.zeros((3, 4), np.int64), np.zeros((3, 4), np.int64)),
     "relu_forward: inp has dtype int64, expected float32 or float64"),
    (lambda: K.sgd_update(np.zeros(4, np.float16), np.zeros(4, np.float16), 0.1, 0.0),
     "sgd_update: param has dtype float16, expected float32 or float64"),
    (lambda: K.softmax_cross_entropy_backward(np.zeros((4, 10)), np.zeros((4, 10)), np.zeros(4)),
     "softmax_cross_entropy_backward: labels has dtype float64, expected an integer dtype"),
    (lambda: K.sparse_linear_forward(np.zeros((2, 3)), np.zeros((2, 5)), np.zeros((2, 5)), np.zeros((5, 3)), np.zeros(3), 1.0),
     "sparse_linear_forward: index has dtype float64, expected an integer dtype"),
    (lambda: K.sparse_linear_forward(np.zeros((2, 3)), np.zeros((2, 784), np.int8), np.zeros((2, 784)),
                                     np.zeros((784, 3)), np.zeros(3), 1.0),
     "sparse_linear_forward: index has dtype int8, which cannot hold 783; use np.int32"),
    (lambda: K.blocked_linear_backward_input(np.zeros((2, 5), f32), np.zeros(500), np.zeros((2, 3), f32),
                                             np.zeros((5, 3), f32)),
     "blocked_linear_backward_input: pack has dtype float64, expected float32 like dout"),
    (lambda: K.blocked_linear_forward(np.zeros((2, 3)), np.zeros(500, np.int32), np.zeros((2, 5), np.uint8),
                                      np.zeros((5, 3)), np.zeros(3), 1 / 255),
     "blocked_linear_forward: pack has dtype int32, expected float32 or float64 like weight"),
    (lambda: K.blocked_linear_backward_input(np.zeros((2, 5), f32), np.zeros(500, f32), np.zeros((2, 3), np.uint8),
                                             np.zeros((5, 3), f32)),
     "blocked_linear_backward_input: dout has dtype uint8, expected float32 or float64 like weight"),
    (lambda: K.blocked_linear_forward(np.zeros((2, 3)), [0.0] * 500, np.zeros((2, 5)), np.zeros((5, 3)), np.zeros(3), 1.0),
     r"blocked_linear_forward: pack is a list, expected a NumPy array \(>=pack_size\(B, D, H\),\)"),
    (lambda: K.linear_forward(np.zeros((2, 3)), [[1.0] * 5] * 2, np.zeros((5, 3)), np.zeros(3)),
     r"linear_forward: inp is a list, expected a NumPy array \(B, D\)"),
    (lambda: K.momentum_update(np.zeros(3), np.zeros(3), np.zeros(3), 0.1, 0.9, 0.0, 1),
     r"momentum_update: nesterov is 1 \(int\), expected a bool"),
    (lambda: K.adam_update(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), 0.1, 0.9, 0.999, 1e-8, 0.0, 1.5),
     r"adam_update: step is 1.5 \(float\), expected an int"),
])
def test_type_errors(call, message):
    with pytest.raises(TypeError, match="^" + message):
        call()


# --- layout ------------------------------------------------------------------------


def test_non_contiguous_array_is_named():
    out, inp, weight, bias = layer(D=16, H=8)
    with pytest.raises(ValueError, match=r"^linear_forward: weight is not C-contiguous \(use np.ascontiguousarray\)$"):
        K.linear_forward(out, inp, np.zeros((8, 16), f32).T, bias)
    with pytest.raises(ValueError, match="^relu_forward: inp is not C-contiguous"):
        K.relu_forward(np.zeros((4, 3)), np.zeros((4, 6))[:, ::2])
    with pytest.raises(ValueError, match="^sgd_update: grad is not C-contiguous"):
        K.sgd_update(np.zeros(4), np.zeros(8)[::2], 0.1, 0.0)


def test_read_only_output_is_named():
    out = np.zeros((3, 4))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="^relu_forward: out is read-only"):
        K.relu_forward(out, np.zeros((3, 4)))


# --- values used as indices, and overlap ---------------------------------------------


def test_out_of_range_labels_and_order():
    probs, logits = np.zeros((4, 10)), np.zeros((4, 10))
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy_forward: labels\[2\] is 10, expected 0..K-1 = 0..9$"):
        K.softmax_cross_entropy_forward(probs, np.zeros(4), logits, np.array([1, 2, 10, 3]))
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy_backward: labels\[0\] is -1"):
        K.softmax_cross_entropy_backward(probs, logits, np.array([-1, 2, 1, 3]))
    order = np.arange(10)
    order[6] = 10
    with pytest.raises(ValueError, match=r"^gather_batch: order\[6\] is 10, expected a sample 0..N-1 = 0..9$"):
        K.gather_batch(np.zeros((4, 3)), np.zeros(4, int), np.zeros((10, 3), np.uint8), np.zeros(10, np.uint8),
                       order, 4, 1.0)


def test_overlap_allowed_only_where_documented():
    a = np.ones((3, 4))
    K.relu_forward(a, a)                                   # out may be inp itself
    with pytest.raises(ValueError, match=r"^relu_forward: out and inp overlap in memory \(only out is inp itself"):
        K.relu_forward(a[1:], a[:2])
    p = np.zeros(5)
    with pytest.raises(ValueError, match="^sgd_update: param and grad overlap in memory"):
        K.sgd_update(p, p, 0.1, 0.0)
    buffer = np.zeros(kernels.pack_size(4, 3, 2) + 8)     # the output cut from the scratch
    with pytest.raises(ValueError, match="^blocked_linear_forward: out and pack overlap in memory; pass separate"):
        K.blocked_linear_forward(buffer[:8].reshape(4, 2), buffer, np.zeros((4, 3)), np.zeros((3, 2)), np.zeros(2), 1.0)


def test_scalars_are_converted_once():
    # An int lr and a float lr reach the kernel as the same type: one compiled version.
    p, g = np.ones(4), np.ones(4)
    K.sgd_update(p, g, 1, 0)
    np.testing.assert_array_equal(p, np.zeros(4))
