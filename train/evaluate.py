"""Batched inference of a classifier over uint8 faces, shared by fer-train and fer-eval."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fer_engine.spec import ModelSpec

from .preprocess import faces_to_tensor, to_pixel_values


@torch.no_grad()
def predict_probs(module: nn.Module, spec: ModelSpec, faces: np.ndarray, *, device: str = "cpu",
                  batch_size: int = 256, tta: bool = False) -> np.ndarray:
    """Softmax probabilities [N, len(spec.labels)] for uint8 faces [N, H, W]; ``tta`` averages the
    face and its mirror image."""
    was_training = module.training
    module.eval()
    out = []
    for start in range(0, len(faces), batch_size):
        gray = faces_to_tensor(faces[start:start + batch_size], device)
        x = to_pixel_values(gray, spec)
        probs = torch.softmax(module(x).float(), dim=1)
        if tta:
            probs = (probs + torch.softmax(module(torch.flip(x, dims=[3])).float(), dim=1)) / 2
        out.append(probs.cpu())
    module.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, len(spec.labels)), np.float32)
