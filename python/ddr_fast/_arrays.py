"""Turning the caller's tensors into float32 / int64 numpy arrays for the engine, in memory.

Accepted: numpy arrays; torch tensors (CPU or any device: a device tensor is copied to the host,
bfloat16 widened to float32); any object with ``__dlpack__`` on the CPU; anything numpy can read
through the buffer protocol. torch is never imported. Every error names the argument.
"""

import numpy as np


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def to_numpy(x, arg: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if _is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()  # the engine reads host memory
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()  # numpy has no bfloat16
        return t.numpy()  # shares the tensor's memory
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, RuntimeError, BufferError) as e:
            raise TypeError(f"{arg}: cannot read this {type(x).__name__} through DLPack ({e})") from e
    try:
        return np.asarray(x)
    except Exception as e:  # numpy raises many types for unreadable objects
        raise TypeError(f"{arg}: expected an array or tensor, got {type(x).__name__} ({e})") from e


def _first_bad(a: np.ndarray):
    bad = np.argwhere(~np.isfinite(a))
    return tuple(int(i) for i in bad[0]) if len(bad) else None


def images_nchw(x, arg: str = "image_tensor") -> np.ndarray:
    """(N, C, H, W) float32, C-contiguous, every value finite."""
    a = to_numpy(x, arg)
    if a.dtype.kind != "f":
        raise TypeError(f"{arg}: expected a floating-point tensor (float16, bfloat16, float32, float64), got dtype {a.dtype}")
    if a.ndim != 4:
        raise ValueError(f"{arg}: expected a 4-D tensor (N, C, H, W), got shape {tuple(a.shape)}")
    if a.shape[0] == 0:
        raise ValueError(f"{arg}: holds no images (N = 0)")
    a = np.ascontiguousarray(a, dtype=np.float32)  # a copy only when the dtype or layout differs
    bad = _first_bad(a)
    if bad is not None:
        raise ValueError(f"{arg}: non-finite value {a[bad]} at index {bad} (NaN or inf; as float32 when given wider)")
    return a


def hard_labels(x, n: int, arg: str = "hard_labels") -> np.ndarray:
    """(N,) int64 class indices for N images."""
    a = to_numpy(x, arg)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{arg}: expected integer class indices, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{arg}: expected a 1-D tensor of N class indices, got shape {tuple(a.shape)}")
    if a.shape[0] != n:
        raise ValueError(f"{arg}: {a.shape[0]} labels for {n} images in image_tensor")
    return np.ascontiguousarray(a, dtype=np.int64)


def soft_labels(x, n: int, arg: str = "soft_labels") -> np.ndarray:
    """(N, K) float32 soft labels (logits or probabilities) for N images."""
    a = to_numpy(x, arg)
    if a.dtype.kind != "f":
        raise TypeError(f"{arg}: expected a floating-point tensor, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{arg}: expected a 2-D tensor (N, K), got shape {tuple(a.shape)}")
    if a.shape[0] != n:
        raise ValueError(f"{arg}: {a.shape[0]} rows for {n} images in image_tensor")
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = _first_bad(a)
    if bad is not None:
        raise ValueError(f"{arg}: non-finite value {a[bad]} at index {bad}")
    return a


def scalar(x, arg: str):
    """A float from a Python number, a numpy scalar or a one-element tensor (None stays None)."""
    if x is None:
        return None
    try:
        return float(x.item() if hasattr(x, "item") else x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{arg}: expected a number, got {type(x).__name__}") from e
