"""The random streams of a detector, all derived from its one ``config.seed`` here.

Each stream is the seed plus a fixed offset. The offsets are part of what a seed means: the
models saved so far were trained with them, so changing one changes every score for that seed.
Two streams may share an offset when they draw from different generators (numpy vs torch).
"""
from __future__ import annotations

import numpy as np
import torch

OFFSETS = {
    "split": 0,  # numpy: the train/validation split of rows or windows
    "subsample": 3,  # numpy: which training rows (windows) are kept above max_train_rows (_windows)
    "init": 0,  # torch (global, forked): the network's initial weights
    "shuffle": 0,  # torch CPU generator: the order of training rows in each epoch
    "train_noise": 1,  # torch, on the training device: the reparameterisation draws while training
    "validation_noise": 2,  # torch CPU generator: the draws of the per-epoch validation ELBO
    "dropout": 3,  # torch (global, forked): dropout masks while training
    "score_noise": 12345,  # torch CPU generator: the draws shared by every row at scoring time
    "missing_injection": 4,  # torch, on the training device: which time-series windows lose a block, and where
}


def stream_seed(seed: int, stream: str) -> int:
    """The seed of ``stream`` (one of :data:`OFFSETS`) for a detector seeded with ``seed``."""
    return seed + OFFSETS[stream]


def numpy_rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy generator for ``stream``."""
    return np.random.default_rng(stream_seed(seed, stream))


def torch_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` for ``stream``."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))
