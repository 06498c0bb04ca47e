"""Weight averaging of the last epochs (stochastic weight averaging on the tail of the cosine schedule).

The average of several nearby solutions usually generalises a little better than any one of them. Batch
norm statistics do not average linearly, so they are measured again on the training faces (no
augmentation) with the averaged weights.
"""

from __future__ import annotations

import copy

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


class EMA:
    """An exponential moving average of a module's weights and buffers, updated after each step.

    The decay ramps up as ``(1 + n) / (10 + n)`` over the first updates so the average is not dominated
    by the random initial weights; batch-norm statistics are averaged like the weights.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().float().clone() if v.is_floating_point() else v.detach().clone()
                      for k, v in module.state_dict().items()}
        self._module: nn.Module | None = None

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averages, values = [], []
        for key, value in module.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                averages.append(average)
                values.append(value.detach().float())
            else:
                average.copy_(value)
        # the same two operations on every tensor, in a few kernel launches instead of two per tensor (a GPU
        # step of a small model is otherwise spent launching them)
        torch._foreach_mul_(averages, decay)
        torch._foreach_add_(averages, values, alpha=1 - decay)

    def load(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.state) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        for key, value in state.items():
            if key == "__updates__":
                continue
            self.state[key].copy_(value)
        self.updates = int(state["__updates__"].item()) if "__updates__" in state else self.updates

    def state_for_saving(self) -> dict[str, torch.Tensor]:
        return {**self.state, "__updates__": torch.tensor(self.updates, dtype=torch.int64)}

    def module_like(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` (kept between calls) holding the averaged weights, in eval mode."""
        if self._module is None:
            self._module = copy.deepcopy(module)
        self._module.load_state_dict(self.state)
        return self._module.eval()
