"""Bringing a Hugging Face image classifier into fer-engine: keep an emotion head, or give it a new one.

A model that already classifies emotions (e.g. a published FER2013 fine-tune) is imported as it is: its
``id2label`` names are mapped onto our canonical labels (``fer_engine.spec.canonical_label``) and the
classifier's output rows are permuted into canonical order, so every checkpoint and export carries
canonical order and names. Loading such a model with our ``id2label`` and ``ignore_mismatched_sizes`` would
keep its rows in their old order under our names: neutral read as sad, and so on.

A generic backbone (ImageNet's 1,000 classes, or any head without emotion names) gets a fresh 7-label head.
An emotion head that cannot be mapped (another number of emotions, unknown names) is an error, unless the
user asks for a new head.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from fer_engine.errors import FerError
from fer_engine.spec import LABELS, canonical_label


@dataclass(frozen=True)
class HeadPlan:
    keep_head: bool
    order: tuple[int, ...] = ()  # for each canonical label, the source model's output row
    reason: str = ""


def _short(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def plan_head(id2label: dict, source: str, new_head: bool = False) -> HeadPlan:
    """Decide from the source's labels whether its head is kept (and how its rows map) or replaced."""
    if new_head:
        return HeadPlan(keep_head=False, reason="--new-head asked for a new 7-label head")
    names = [str(id2label[key]) for key in sorted(id2label, key=lambda k: int(k))]
    mapped = [canonical_label(n) for n in names]
    emotions = [m for m in mapped if m]
    if len(names) == len(LABELS) and sorted(emotions) == sorted(LABELS):
        return HeadPlan(keep_head=True, order=tuple(mapped.index(label) for label in LABELS),
                        reason=f"its head classifies the seven emotions ({', '.join(names)})")
    if len(emotions) >= 2:
        unmapped = [n for n, m in zip(names, mapped) if not m]
        duplicated = sorted({m for m in emotions if emotions.count(m) > 1})
        missing = [label for label in LABELS if label not in emotions]
        problems = ([f"labels that are not one of the seven FER2013 emotions: {_short(unmapped)}"] if unmapped else []) \
            + ([f"emotions named twice: {', '.join(duplicated)}"] if duplicated else []) \
            + ([f"emotions it lacks: {', '.join(missing)}"] if missing else [])
        raise FerError(f"{source} is an emotion model whose {len(names)}-label head cannot be mapped onto ours "
                       f"({'; '.join(problems)}): pass --new-head to replace its head with a new 7-label one "
                       f"(which then needs training)")
    if len(names) == len(LABELS) and all(re.fullmatch(r"label_\d+", n.lower()) for n in names):
        raise FerError(f"{source} has a 7-label head without label names (LABEL_0..LABEL_6), so its order is "
                       f"unknown: set id2label in its config.json to the emotion names, or pass --new-head")
    return HeadPlan(keep_head=False, reason=f"its {len(names)} labels ({_short(names, 3)}) are not emotions")


def classifier_layer(hf_model: nn.Module) -> nn.Linear:
    """The linear layer that produces the logits (``classifier`` in ViT and ConvNeXt)."""
    head = getattr(hf_model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    num_labels = hf_model.config.num_labels
    linears = [m for m in hf_model.modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not linears:
        raise FerError(f"cannot find the classification layer of this {type(hf_model).__name__} to reorder its labels")
    return linears[-1]


@torch.no_grad()
def reorder_head(hf_model: nn.Module, order: tuple[int, ...]) -> None:
    """Permute the logits into canonical order and give the config canonical names."""
    layer = classifier_layer(hf_model)
    index = torch.tensor(order, device=layer.weight.device)
    layer.weight.copy_(layer.weight[index].clone())
    if layer.bias is not None:
        layer.bias.copy_(layer.bias[index].clone())
    hf_model.config.id2label = dict(enumerate(LABELS))
    hf_model.config.label2id = {name: i for i, name in enumerate(LABELS)}
