"""gen_safetensors.py: writes tests/data/ref_small.safetensors with Python's safetensors library.

test_safetensors reads that file and checks every value, then writes the same tensors with the C writer
and compares the bytes. One metadata key only: the Python library orders several keys arbitrarily (a
Rust HashMap), so with one key its output is deterministic. BF16 goes through the library's own
serialize() because numpy has no bfloat16 dtype. Run: python3 tests/data/gen_safetensors.py
(needs `pip install safetensors numpy`); the C test holds the same values, so change both together.
"""
import os

import numpy as np
import safetensors

METADATA = {"config": 'model = gkavision_t\nlr = 5e-4\t# "quoted" \\ back, é ü 漢字 😀 \x01 end'}


def tensors():
    return {
        "head.weight": np.array([[0.5, -1.25, 3.0], [1e-3, -0.0, 65504.0]], dtype=np.float32),
        # bf16 bit patterns of 1.0, -2.0, 0.5, 3.140625
        "levels.2.blocks.0.mixer.A_log": ("bfloat16", np.array([0x3F80, 0xC000, 0x3F00, 0x4049], dtype=np.uint16)),
        # 1, -2.5, the largest half, the smallest subnormal half (2^-24), +inf
        "norm.weight": np.array([1.0, -2.5, 65504.0, 2.0**-24, np.inf], dtype=np.float16),
        "norm.num_batches_tracked": np.array(12345, dtype=np.int64),
        "patch_embed.idx": np.array([[-7, 0], [42, 100000]], dtype=np.int32),
        "mask": np.array([0, 128, 255], dtype=np.uint8),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def spec(dtype, arr):
    """One tensor for safetensors.serialize, in the form this version of the library takes."""
    if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.8
        return safetensors.TensorSpec(dtype=dtype, shape=arr.shape, data_ptr=arr.ctypes.data, data_len=arr.nbytes)
    return {"dtype": dtype, "shape": list(arr.shape), "data": arr.tobytes()}


def main():
    keep = []  # arrays whose memory the specs point into
    flat = {}
    for name, value in tensors().items():
        dtype, arr = value if isinstance(value, tuple) else (value.dtype.name, value)
        arr = arr.copy(order="C")  # not ascontiguousarray, which turns a scalar into shape [1]
        keep.append(arr)
        flat[name] = spec(dtype, arr)
    data = bytes(safetensors.serialize(flat, metadata=METADATA))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref_small.safetensors")
    with open(out, "wb") as f:
        f.write(data)
    print(f"wrote {out}: {len(data)} bytes, safetensors {safetensors.__version__}")


if __name__ == "__main__":
    main()
