"""The input contract of docs/architecture.md in torch: gray faces in 0..1 → ``pixel_values`` for a model's spec."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_engine.spec import ModelSpec


def to_pixel_values(gray: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """``gray``: float [N, 1, h, w] in 0..1 → float [N, C, H, W], resized, replicated, normalised."""
    if tuple(gray.shape[-2:]) != tuple(spec.image_size):
        gray = F.interpolate(gray, size=tuple(spec.image_size), mode="bilinear", align_corners=False,
                             antialias=gray.shape[-1] > spec.image_size[1])
    mean = torch.tensor(spec.mean, dtype=gray.dtype, device=gray.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=gray.dtype, device=gray.device).view(1, -1, 1, 1)
    return (gray.expand(-1, spec.channels, -1, -1) - mean) / std


def faces_to_tensor(faces_uint8, device="cpu") -> torch.Tensor:
    """uint8 [N, H, W] (numpy or torch) → float [N, 1, H, W] in 0..1."""
    faces = torch.as_tensor(faces_uint8, device=device)
    return faces.unsqueeze(1).float().div_(255)
