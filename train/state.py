"""The resumable state of a training run, without pickle: tensors in safetensors, the rest in JSON.

A state folder is a checkpoint folder (``config.json``, ``model.safetensors``) plus
``training_state.safetensors`` (optimizer buffers, EMA weights, the torch RNG) and ``training_state.json``
(config, epoch, step, schedule, history). Nothing in it executes code when read, so a state a user was
sent is as safe to resume as a checkpoint is to evaluate.

``compact_state`` writes a smaller copy meant to be committed between sessions: weights and EMA in
fp16, no optimizer buffers (SGD momentum rebuilds within a few dozen steps). Resuming from it continues
the same schedule and data order, but is no longer bit-exact; the full state in ``runs/`` is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fer_engine.errors import FerError
from fer_engine.outputs import write_folder_atomically

TENSORS_FILE = "training_state.safetensors"
JSON_FILE = "training_state.json"
STATE_FORMAT = 2


@dataclass
class TrainingState:
    config: dict
    epoch: int  # epochs completed
    step: int  # steps completed within ``epoch`` (0 at an epoch boundary)
    elapsed: float
    history: list
    best: dict | None
    scheduler: dict
    optimizer: dict  # torch's optimizer state_dict
    ema: dict[str, torch.Tensor] | None = None
    rng: torch.Tensor | None = None
    compact: bool = False
    extra: dict = field(default_factory=dict)


def _split_optimizer(state_dict: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """Optimizer state → (JSON-able part, tensors keyed ``optim.<param index>.<name>``)."""
    tensors, plain_state = {}, {}
    for index, values in state_dict["state"].items():
        plain_state[str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                plain_state[str(index)][name] = value
    return {"state": plain_state, "param_groups": state_dict["param_groups"]}, tensors


def _join_optimizer(plain: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[int, dict] = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def write_state(folder: Path, state: TrainingState) -> None:
    """Write the state files into ``folder`` (a checkpoint folder being assembled)."""
    from safetensors.torch import save_file

    optimizer_plain, tensors = _split_optimizer(state.optimizer)
    if state.ema is not None:
        tensors.update({f"ema.{k}": v.detach().contiguous().cpu() for k, v in state.ema.items()})
    if state.rng is not None:
        tensors["rng.torch"] = state.rng.contiguous()
    save_file(tensors, str(folder / TENSORS_FILE))
    meta = {"format": STATE_FORMAT, "config": state.config, "epoch": state.epoch, "step": state.step,
            "elapsed": state.elapsed, "history": state.history, "best": state.best,
            "scheduler": state.scheduler, "optimizer": optimizer_plain,
            "compact": state.compact, **state.extra}
    (folder / JSON_FILE).write_text(json.dumps(meta, indent=1))


def has_state(folder: Path) -> bool:
    return (folder / JSON_FILE).is_file()


def read_state(folder: Path) -> TrainingState:
    """Read a state folder; a missing or damaged file is a FerError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    json_file, tensors_file = folder / JSON_FILE, folder / TENSORS_FILE
    for needed in (json_file, tensors_file, folder / "model.safetensors"):
        if not needed.is_file():
            raise FerError(f"{needed} is missing: {folder} is not a complete fer-train state "
                           f"(copy the whole folder, or start again without --resume)")
    try:
        meta = json.loads(json_file.read_text())
        config, epoch, step = meta["config"], int(meta["epoch"]), int(meta["step"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FerError(f"{json_file} is damaged ({type(exc).__name__}: {exc}); it cannot be resumed") from exc
    if meta.get("format") != STATE_FORMAT:
        raise FerError(f"{json_file} has state format {meta.get('format')}, this fer-train reads {STATE_FORMAT}")
    try:
        tensors = load_file(str(tensors_file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FerError(f"{tensors_file} is damaged ({exc}); it cannot be resumed") from exc
    ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")} or None
    return TrainingState(
        config=config, epoch=epoch, step=step, elapsed=float(meta.get("elapsed", 0.0)),
        history=meta.get("history", []), best=meta.get("best"), scheduler=meta.get("scheduler", {}),
        optimizer=_join_optimizer(meta["optimizer"], tensors), ema=ema, rng=tensors.get("rng.torch"),
        compact=bool(meta.get("compact")))


def compact_state(source: Path, target: Path) -> Path:
    """A committable copy of the state in ``source``: fp16 weights and EMA, no optimizer buffers (and a
    distilled run's teacher targets, so that it resumes where its teachers are not)."""
    from safetensors.torch import load_file, save_file

    from .distill import TARGETS_FILE

    state = read_state(source)
    state.optimizer = {"state": {}, "param_groups": state.optimizer["param_groups"]}
    if state.ema is not None:
        state.ema = {k: (v.half() if v.is_floating_point() else v) for k, v in state.ema.items()}
    state.compact = True

    def fill(tmp: Path) -> None:
        weights = load_file(str(source / "model.safetensors"))
        save_file({k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()}, str(tmp / "model.safetensors"))
        for name in ("config.json", "metrics.json", "training_curve.png"):
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        if (source.parent / TARGETS_FILE).is_file():  # a distilled run resumes without its teachers
            shutil.copy2(source.parent / TARGETS_FILE, tmp / TARGETS_FILE)
        write_state(tmp, state)
        for written in tmp.iterdir():
            written.chmod(0o644)  # safetensors writes 0600; the state is meant to be committed and shared

    return write_folder_atomically(target, fill)
