"""Weight averaging of the last epochs (stochastic weight averaging on the tail of the cosine schedule).

The average of several nearby solutions usually generalises a little better than any one of them. Batch
norm statistics do not average linearly, so they are measured again on the training faces (no
augmentation) with the averaged weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .preprocess import faces_to_tensor, to_pixel_values


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            averaged[key] = torch.stack([s[key].float() for s in states]).mean(0).to(last.dtype)
        else:
            averaged[key] = last.clone()  # counters such as num_batches_tracked
    return averaged


@torch.no_grad()
def recompute_batchnorm(module: nn.Module, faces, spec, device="cpu", batch_size: int = 256) -> None:
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over all batches
    was_training = module.training
    module.train()
    for start in range(0, len(faces), batch_size):
        module(to_pixel_values(faces_to_tensor(faces[start:start + batch_size], device), spec))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    module.train(was_training)
