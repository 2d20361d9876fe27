"""Mutated model files and checkpoints, for test_checkpoint_fuzz.py and test_model_fuzz.py.

A file is taken apart into its arrays and its schema (a JSON tree, the
checkpoint's run state under "training"), one to three mutations are applied
(to values, dtypes, shapes, keys, schema fields, npy headers or the raw
bytes), and it is written again. Each mutation is drawn from
``np.random.default_rng([seed, i])``, so case ``i`` can be rebuilt alone.

The drivers run in a child process whose address space is capped
(``RLIMIT_AS``): a file that made fastnet allocate what it declares, rather
than what the model needs, would end the child with a MemoryError, and a
read out of bounds with a signal; the parent test sees either.
"""
import copy
import io
import json
import math
import warnings
import zipfile

import numpy as np

JSON_VALUES = [None, True, False, 0, 1, -1, 2, 3, 7, 2**31, 2**63, 2**64 + 1, 10**30, -10**30, 0.5, 784.5, -0.0,
               1e308, math.nan, math.inf, -math.inf, "", "abc", "float32", "float64", "PCG64", "mnist", [], [1, 2],
               [0.5], ["a"], {}, {"a": 1}, {"epoch": 1}]
DTYPES = ["int8", "uint8", "int16", "int32", "int64", "uint64", "float16", "float32", "float64", "bool",
          "complex64", "<U3", "S2", "V4", "object"]


def take_apart(path):
    """``(arrays, schema)`` of an npz written by fastnet."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    schema = json.loads(str(arrays.pop("schema")))
    return arrays, schema


def put_together(arrays, schema, raw_members=()):
    """The bytes of an npz holding ``arrays``, ``schema`` (a JSON-able object, or
    a str taken as the schema's text) and ``raw_members`` ``[(member name, bytes)]``."""
    buffer = io.BytesIO()
    payload = dict(arrays)
    payload["schema"] = np.array(schema if isinstance(schema, str) else json.dumps(schema))
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, value in payload.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=True)
        for member, data in raw_members:
            zf.writestr(member, data)
    return buffer.getvalue()


# --- the mutations ---------------------------------------------------------------------------


def _paths(node, prefix=()):
    """Every path to a node of the JSON tree ``node`` (dict keys and list indices)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:8]):
            yield from _paths(value, (*prefix, i))


def _get(node, path):
    for key in path:
        node = node[key]
    return node


def _random_json(rng, depth=0):
    kind = rng.integers(10)
    if kind < 7 or depth > 2:
        return JSON_VALUES[rng.integers(len(JSON_VALUES))]
    if kind < 9:
        return [_random_json(rng, depth + 1) for _ in range(rng.integers(0, 4))]
    return {str(rng.integers(5)): _random_json(rng, depth + 1) for _ in range(rng.integers(0, 3))}


def _tweak_number(rng, value):
    options = [value + 1, value - 1, -value, value * 1000, value + 0.5, float(value), 10**12, -(10**12), 0, 2**63,
               value * 2, math.nan, math.inf, str(value), bool(value % 2)]
    return options[rng.integers(len(options))]


def mutate_schema(rng, schema):
    """One change to the JSON tree: a value replaced or tweaked, a key deleted or added."""
    paths = [p for p in _paths(schema) if p]
    path = paths[rng.integers(len(paths))]
    parent, key = _get(schema, path[:-1]), path[-1]
    kind = rng.integers(5)
    value = parent[key]
    if kind == 0:
        parent[key] = _random_json(rng)
        return f"schema {path} = {str(parent[key])[:40]}"
    if kind == 1 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = _tweak_number(rng, value)
        return f"schema {path} = {str(parent[key])[:40]}"
    if kind == 2:
        del parent[key]
        return f"schema {path} deleted"
    if kind == 3:
        target = value if isinstance(value, (dict, list)) else parent
        if isinstance(target, dict):
            target[["extra", "epoch", "config", "order", "params", "x"][rng.integers(6)]] = _random_json(rng)
        else:
            target.append(_random_json(rng))
        return f"schema {path}: added an item"
    if isinstance(value, list) and value:  # shuffle or duplicate a list's items
        i = rng.integers(len(value))
        value.insert(int(rng.integers(len(value) + 1)), copy.deepcopy(value[i]))
        return f"schema {path}: duplicated item {i}"
    parent[key] = _random_json(rng)
    return f"schema {path} = {str(parent[key])[:40]}"


def _retype(rng, value):
    dtype = DTYPES[rng.integers(len(DTYPES))]
    if dtype == "object":
        return value.astype(object)
    try:
        return value.astype(dtype)
    except (TypeError, ValueError):
        return np.zeros(value.shape, dtype)


def mutate_array(rng, arrays, n_hint):
    """One change to the arrays: deleted, added, retyped, reshaped, or some values replaced."""
    names = sorted(arrays)
    kind = rng.integers(7) if names else 1
    name = names[rng.integers(len(names))] if names else None
    value = arrays.get(name)
    if kind == 0:
        del arrays[name]
        return f"array {name} deleted"
    if kind == 1:
        extra = ["state_extra", "state_order", "state_best_params", "mean", "std", "x_train", "params2"]
        new = extra[rng.integers(len(extra))]
        arrays[new] = rng.standard_normal(int(rng.integers(0, 2 * n_hint + 2)))
        return f"array {new} added"
    if kind == 2:
        arrays[name] = _retype(rng, value)
        return f"array {name} as {arrays[name].dtype}"
    if kind == 3:
        flat = value.reshape(-1)
        shapes = [flat[:-1], np.concatenate([flat, flat[:1]]), flat.reshape(1, -1), flat[:0],
                  flat[:1].reshape(()) if flat.size else flat.reshape(0, 1), np.concatenate([flat, flat])]
        arrays[name] = shapes[rng.integers(len(shapes))]
        return f"array {name} reshaped to {arrays[name].shape}"
    if value.size == 0 or value.dtype.kind not in "iuf":
        arrays[name] = _retype(rng, value)
        return f"array {name} as {arrays[name].dtype}"
    value = value.copy()
    flat = value.reshape(-1)
    at = rng.integers(flat.size, size=int(rng.integers(1, 4)))
    if value.dtype.kind == "f":
        pick = [math.nan, math.inf, -math.inf, 1e30, -1e30, 0.0, 3.4e38][rng.integers(7)]
    else:
        pick = [-1, n_hint, n_hint + 1, 10**12, np.iinfo(value.dtype).max, np.iinfo(value.dtype).min,
                int(flat[rng.integers(flat.size)])][rng.integers(7)]
    with np.errstate(all="ignore"):
        flat[at] = np.array(pick).astype(value.dtype) if value.dtype.kind in "iu" else pick
    arrays[name] = value
    return f"array {name}[{at.tolist()}] = {pick}"


def lying_header(rng, arrays):
    """An npy member whose header declares a shape (or dtype) its data does not hold:
    a huge one, to see that nothing allocates it."""
    names = sorted(arrays) + ["state_extra"]
    name = names[rng.integers(len(names))]
    shape = [(10**12,), (2**40,), (1 << 31, 1 << 31), (10**6,), (3,), ()][rng.integers(6)]
    descr = ["<f4", "<f8", "<i8", "|u1", "|O", "<U100000000"][rng.integers(6)]
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": bool(rng.integers(2)),
                                                "shape": shape})
    return name, head.getvalue() + rng.bytes(int(rng.integers(0, 64)))


def mutate_bytes(rng, data):
    """Raw damage to the file: bits flipped, or cut short."""
    data = bytearray(data)
    if rng.integers(2):
        for _ in range(int(rng.integers(1, 6))):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        return bytes(data), "bits flipped"
    cut = int(rng.integers(len(data)))
    return bytes(data[:cut]), f"cut at {cut} of {len(data)} bytes"


def mutated(base_arrays, base_schema, seed, i, n_hint):
    """``(file bytes, description)`` of case ``i``: one to three mutations of the base file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casts that overflow, duplicate zip members: meant
        return _mutated(np.random.default_rng([seed, i]), base_arrays, base_schema, n_hint)


def _mutated(rng, base_arrays, base_schema, n_hint):
    arrays = dict(base_arrays)
    schema = copy.deepcopy(base_schema)
    raw = []
    what = []
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.integers(20)
        if kind < 10:
            what.append(mutate_schema(rng, schema))
        elif kind < 17:
            what.append(mutate_array(rng, arrays, n_hint))
        elif kind < 18:
            name, member = lying_header(rng, arrays)
            arrays.pop(name, None)
            raw.append((f"{name}.npy", member))
            what.append(f"array {name}: a lying npy header")
        else:
            texts = ["", "{", "[" * 100000 + "]" * 100000, "null", "1" * 5000, '"text"', json.dumps(schema)[:-1]]
            schema_text = texts[rng.integers(len(texts))]
            return put_together(arrays, schema_text, raw), f"schema text {schema_text[:20]!r}"
    data = put_together(arrays, schema, raw)
    if rng.integers(12) == 0:
        data, damage = mutate_bytes(rng, data)
        what.append(damage)
    return data, "; ".join(what)
