"""A consistency term: the model should give the same answer for a face and for the face a pixel or two off.

The runtime crops a face from a detector's box, and the box moves by a pixel or two from one frame to the next
while the face does not change; a model whose label flips under such a shift makes a video's labels flicker,
and no runtime policy can filter that away (benchmarks/RESULTS.md, issue 16). ``fer-train --consistency W``
adds W times the Jensen-Shannon divergence between the predictions for each training view and for a jittered
copy of it (``augment.jitter``), the term AugMix uses (Hendrycks et al. 2020) for the same purpose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jensen_shannon(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of JS(softmax(a), softmax(b)): 0 when the two agree, at most log 2."""
    p = F.softmax(logits_a.float(), dim=1)
    q = F.softmax(logits_b.float(), dim=1)
    log_mean = ((p + q) / 2).clamp_min(1e-7).log()
    return (F.kl_div(log_mean, p, reduction="batchmean") + F.kl_div(log_mean, q, reduction="batchmean")) / 2
