"""Batched augmentation for 48x48 gray faces, in torch, on whole batches.

One affine warp per face (flip, rotation, scale, shift) through ``affine_grid``/``grid_sample``, then
brightness/contrast jitter and random erasing, all vectorised: on a 2-core CPU this costs a few percent
of a training step, where per-image PIL transforms in worker processes would compete with the model.
Every random number comes from the caller's ``torch.Generator``, so a seed fixes the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    shift: float = 0.1  # fraction of the image size
    brightness: float = 0.25
    contrast: float = 0.25
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.2)
    erase_aspect: tuple[float, float] = (0.3, 3.3)


AUGMENT_PRESETS = {
    "strong": AugmentConfig(),
    "light": AugmentConfig(rotate_deg=10.0, scale=(0.9, 1.1), shift=0.08, brightness=0.2, contrast=0.2,
                           erase_prob=0.25),
    "flip": AugmentConfig(rotate_deg=0.0, scale=(1.0, 1.0), shift=0.0, brightness=0.0, contrast=0.0, erase_prob=0.0),
}


def augment_preset(name: str) -> AugmentConfig:
    from fer_engine.errors import FerError

    if name not in AUGMENT_PRESETS:
        raise FerError(f"unknown augmentation '{name}': choose one of {', '.join(AUGMENT_PRESETS)}")
    return AUGMENT_PRESETS[name]


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


WARP_FIELDS = ("angle", "scale", "flip", "tx", "ty", "contrast", "brightness")


def sample_warps(n: int, cfg: AugmentConfig, gen: torch.Generator, device="cpu") -> torch.Tensor:
    """Random warp and tone parameters for ``n`` faces: float [n, len(WARP_FIELDS)].

    Kept apart from their application so that a face's view can be made again later from its row
    (distillation precomputes a teacher's probabilities on fixed views, train/distill.py).
    """
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, gen, device) * (math.pi / 180)
    scale = _uniform(n, *cfg.scale, gen, device)
    flip = torch.where(torch.rand(n, generator=gen, device=device) < cfg.flip, -1.0, 1.0)
    tx, ty = (_uniform(n, -cfg.shift, cfg.shift, gen, device) * 2 for _ in range(2))
    contrast = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, gen, device)
    brightness = _uniform(n, -cfg.brightness, cfg.brightness, gen, device) * 0.5
    return torch.stack([angle, scale, flip, tx, ty, contrast, brightness], 1)


def apply_warps(images: torch.Tensor, warps: torch.Tensor) -> torch.Tensor:
    """``images``: float [N, 1, H, W] in 0..1, ``warps``: [N, 7] from ``sample_warps`` → warped copy."""
    n = images.shape[0]
    angle, scale, flip, tx, ty, contrast, brightness = warps.to(images.device).unbind(1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = out.mean(dim=(2, 3), keepdim=True)
    return ((out - mean) * contrast.view(n, 1, 1, 1) + mean + brightness.view(n, 1, 1, 1)).clamp_(0, 1)


def erase(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random erasing: a box of noise in a share ``cfg.erase_prob`` of the faces."""
    if cfg.erase_prob <= 0:
        return images
    n, _, h, w = images.shape
    dev = images.device
    area = _uniform(n, *cfg.erase_area, gen, dev) * h * w
    log_aspect = _uniform(n, math.log(cfg.erase_aspect[0]), math.log(cfg.erase_aspect[1]), gen, dev)
    aspect = torch.exp(log_aspect)
    eh = torch.sqrt(area * aspect).clamp(1, h)
    ew = torch.sqrt(area / aspect).clamp(1, w)
    y0 = torch.rand(n, generator=gen, device=dev) * (h - eh)
    x0 = torch.rand(n, generator=gen, device=dev) * (w - ew)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    box = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1))
           & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + ew).view(n, 1, 1)))
    chosen = torch.rand(n, generator=gen, device=dev) < cfg.erase_prob
    noise = torch.rand(n, 1, h, w, generator=gen, device=dev)
    return torch.where((box & chosen.view(n, 1, 1)).unsqueeze(1), noise, images)


# A second view of a face as a detector would give it on the next frame: its box a pixel or two off, a few
# percent larger or smaller, a few degrees turned (fer-train --consistency).
JITTER = AugmentConfig(flip=0.0, rotate_deg=3.0, scale=(0.96, 1.04), shift=2 / 48, brightness=0.0, contrast=0.0,
                       erase_prob=0.0)


def jitter(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``images`` moved by a small random warp each (``JITTER``): the view a consistency term compares."""
    return apply_warps(images, sample_warps(images.shape[0], JITTER, gen, images.device))


def augment(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """``images``: float [N, 1, H, W] in 0..1 → augmented copy, same shape and range."""
    warps = sample_warps(images.shape[0], cfg, gen, images.device)
    return erase(apply_warps(images, warps), cfg, gen)
