"""Mixup (Zhang et al. 2018): each training view blended with another face of its batch.

``fer-train --mixup ALPHA`` draws one weight ``lam ~ Beta(ALPHA, ALPHA)`` and one pairing per batch, shows the
model ``lam * x + (1 - lam) * x[pair]`` and asks for the same blend of the two answers. It is a regulariser
against the gap our models show (Training ~78 % against PublicTest ~68 %, train/RESULTS.md), and the input
Beyer et al. (2022) give a student together with a teacher that sees the very same blend
(``--distill-target online``): the teacher's answer on a blended face is a target no label can give.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Mix:
    lam: float  # weight of each face itself; 1 - lam goes to its partner
    pair: torch.Tensor  # long [B]: the partner of each face in the batch

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + (1 - self.lam) * x[self.pair]

    def targets(self, probs: torch.Tensor) -> torch.Tensor:
        """The blend of per-face probability targets (precomputed teacher targets)."""
        return self.lam * probs + (1 - self.lam) * probs[self.pair]

    def majority_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The label of the face with the larger share: what training accuracy counts against."""
        return labels if self.lam >= 0.5 else labels[self.pair]


def draw_mix(count: int, alpha: float, gen: torch.Generator) -> Mix:
    """One batch's blend, from ``gen`` only, so a resumed run draws the same ones."""
    # torch.distributions cannot take a Generator: Beta(a, a) as the ratio of two Gamma draws from ``gen``.
    gammas = torch._standard_gamma(torch.full((2,), float(alpha)), generator=gen)
    total = float(gammas.sum())
    lam = float(gammas[0]) / total if total > 0 else 1.0  # both draws can underflow at a tiny alpha
    return Mix(lam, torch.randperm(count, generator=gen))


def mixed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mix: Mix | None, label_smoothing: float) -> torch.Tensor:
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if mix is None:
        return loss
    partner = F.cross_entropy(logits.float(), labels[mix.pair], label_smoothing=label_smoothing)
    return mix.lam * loss + (1 - mix.lam) * partner
