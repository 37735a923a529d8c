# Minimal safetensors reader/writer for the reference scripts (no `safetensors` package needed).
# Format: 8-byte little-endian header length, a JSON header padded with spaces to a multiple of 8,
# then the raw little-endian tensor bytes; data_offsets are relative to the end of the header.
# Not a general library: only the dtypes the fixtures use, and output is byte-for-byte deterministic
# (keys sorted, data laid out in key order) so regenerated fixtures diff clean.
import json
import struct

import numpy as np
import torch

_TO_NUMPY = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
_FROM_NUMPY = {np.dtype(v).str: k for k, v in _TO_NUMPY.items()}


def _as_numpy(value, dtype=None):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if dtype is not None:
        arr = arr.astype(_TO_NUMPY[dtype])
    # little-endian and C order, whatever the source was (ascontiguousarray would turn shape [] into [1])
    return arr.astype(arr.dtype.newbyteorder("<")).copy(order="C")


def save_file(tensors, path, metadata=None):
    """tensors: name -> (array-like, dtype) or an np.ndarray/torch.Tensor already of the stored dtype."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        value = tensors[name]
        arr = _as_numpy(*value) if isinstance(value, tuple) else _as_numpy(value)
        code = _FROM_NUMPY.get(arr.dtype.str)
        if code is None:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {arr.dtype}")
        data = arr.tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError(f"{path}: __metadata__ must map strings to strings")
        header = {"__metadata__": dict(sorted(metadata.items())), **header}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def load_file(path):
    """Returns (tensors: name -> np.ndarray, metadata: dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start : base + end], dtype=np.dtype(_TO_NUMPY[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).copy()
    return out, metadata
