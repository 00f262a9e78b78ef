"""Where the network runs and how encoded rows reach it: device choice, autocast, batches."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Iterator

import numpy as np
import torch

from .model import Batch
from .preprocess import Encoded


def select_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_for(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (fp16 where bf16 is missing); a no-op on the CPU."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


class DeviceData:
    """Encoded arrays as tensors: on the GPU whole when they fit, else pinned for async copies."""

    def __init__(self, enc: Encoded, device: torch.device, resident_bytes: int = 1 << 30):
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in enc.arrays()]
        self.device = device
        size = sum(t.numel() * t.element_size() for t in tensors)
        if device.type == "cuda" and size <= resident_bytes:
            tensors = [t.to(device) for t in tensors]
        elif device.type == "cuda":
            tensors = [t.pin_memory() for t in tensors]
        self.tensors = tensors
        self.n = enc.num.shape[0]

    def batch(self, index: torch.Tensor) -> Batch:
        """Rows at ``index`` on the device (``non_blocking`` from pinned memory)."""
        idx = index.to(self.tensors[0].device)
        return Batch(*(t[idx].to(self.device, non_blocking=True) for t in self.tensors))

    def slices(self, batch_size: int) -> Iterator[Batch]:
        """Consecutive batches in row order."""
        for start in range(0, self.n, batch_size):
            yield Batch(*(t[start : start + batch_size].to(self.device, non_blocking=True) for t in self.tensors))
