"""``with_threads``: call a function with Numba's thread count set for the call alone,
for the tests that compare a kernel's bits at 1 and 2 threads."""
import numba


def with_threads(n, fn, *args):
    """``fn(*args)`` with ``n`` Numba threads; the count as it was afterwards."""
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(n)
        return fn(*args)
    finally:
        numba.set_num_threads(before)
