#!/usr/bin/env python
"""Exit 0 when torch can use a CUDA device, else 1 with the reason on stderr.

Installed in the image as ``vae-anomaly-check-gpu``: the gpu worker's healthcheck in
infra/docker-compose.yml, and a quick manual check (``docker run --gpus all IMAGE vae-anomaly-check-gpu``).
"""
import sys

import torch

if not torch.version.cuda:
    sys.exit(f"torch {torch.__version__} is a CPU build")
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot see a CUDA device")
x = torch.ones(8, device="cuda")
print(f"ok: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, sum={float(x.sum()):g}")
