"""``cnn-ensemble``: several trained ``cnn`` networks as one model, their probabilities averaged inside the graph.

One input view, one checkpoint, one ONNX file (int8 like the rest): the accurate choice beside the default
``cnn`` (docs/architecture.md, "Registries"). Its output is the log of the averaged probabilities, so every consumer
that takes a softmax of a model's logits (fer-eval, the runtime) gets the average back unchanged. Each member
keeps its own tuned class bias, folded into its head when it was trained.

An ensemble is assembled from finished checkpoints, not trained:

    python -m fer_engine.train.ensemble --member runs/a/best --member runs/b/best --out checkpoints/cnn-ensemble

Each member's weights are a file of their own (``member-0.safetensors``, ...), each tensor in fp16 where that
loses nothing, as for members that are fp16 copies (those of the shipped one, measured equal to their fp32
originals within 0.03 point: their files come out byte for byte the same), else as it is.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from fer_engine.errors import FerError

from .cnn import CNNConfig

NAME = "cnn-ensemble"
PROG = "python -m fer_engine.train.ensemble"
# A full-size ensemble for speed figures without a checkpoint: the shipped one's shapes, two `cnn` and one
# with a full-resolution first stage (configs/cnn-large.json).
FULL_MEMBERS = (CNNConfig(), CNNConfig(),
                CNNConfig(widths=(32, 64, 128, 256, 256), blocks=(1, 2, 2, 2, 2), stem=((32, 1),)))


class EnsembleModule(nn.Module):
    """``forward(pixel_values) -> log(mean of the members' softmax)``."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise FerError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([member(pixel_values).float().softmax(-1) for member in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


def member_file(index: int) -> str:
    """A member's weights in an ensemble checkpoint folder."""
    return f"member-{index}.safetensors"


def compact_weight(tensor: torch.Tensor) -> torch.Tensor:
    """fp16 where that loses nothing (members that were fp16 copies), else the tensor as it is."""
    if tensor.is_floating_point() and tensor.dtype != torch.float16:
        half = tensor.half()
        if torch.equal(half.to(tensor.dtype), tensor):
            return half
    return tensor


def assemble(members: list[str | Path]):
    """The ensemble of trained ``cnn`` checkpoints; they must read the same faces the same way."""
    from .checkpoint import load_checkpoint
    from .models import get_family

    checkpoints = [load_checkpoint(folder, expect_model="cnn") for folder in members]
    first = checkpoints[0].spec
    for ckpt in checkpoints[1:]:
        if replace(ckpt.spec, model=first.model) != first:
            raise FerError(f"{ckpt.folder} reads faces differently from {checkpoints[0].folder} (labels, size or "
                           "normalisation): the members of an ensemble must share them")
    modules, archs = [ckpt.module.float() for ckpt in checkpoints], [dict(ckpt.arch) for ckpt in checkpoints]
    return get_family(NAME).built(modules, archs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", action="append", required=True, metavar="DIR",
                        help="a trained cnn checkpoint folder (repeat: two or more)")
    parser.add_argument("--out", required=True, help="the checkpoint folder to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    from fer_engine.cli import run_cli

    args = build_parser().parse_args(argv)

    def body() -> int:
        from .checkpoint import save_checkpoint
        from .models import count_macs, count_parameters

        if len(args.member) < 2:
            raise FerError("--member: name two or more checkpoints (one alone is not an ensemble)")
        built = assemble(args.member)
        macs = count_macs(built.module, built.spec)
        params = count_parameters(built.module)
        metrics = {"members": [str(m) for m in args.member], "params": params, "macs_per_face": macs}
        folder = save_checkpoint(args.out, built, metrics)
        print(f"{NAME}: {len(args.member)} members, {params / 1e6:.2f} M parameters, {macs / 1e9:.3f} GMACs/face "
              f"→ {folder}\nevaluate: fer-eval {folder} --data fer2013.csv.gz --split PublicTest")
        return 0

    return run_cli(body, PROG)


if __name__ == "__main__":
    raise SystemExit(main())
