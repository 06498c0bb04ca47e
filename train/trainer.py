"""The training loop behind ``fer-train``.

Batches are drawn from the in-memory uint8 faces by a per-epoch permutation (nothing is copied per
epoch) and augmented on the fly; every epoch ends with a PublicTest evaluation, and the best epoch by
PublicTest accuracy (of the weights or of their EMA) is kept as ``OUT/best``. ``OUT/last`` is the
resumable state (train/state.py), written every epoch and when a stop is asked for (Ctrl-C, SIGTERM,
``--max-minutes``): a stop lands between two steps, so a resumed run continues exactly where it left.
The schedule (warm-up, then one cosine to zero over ``epochs``) is fixed at the start for the same reason.
PrivateTest is evaluated once, on the best checkpoint, after training.
"""

from __future__ import annotations

import json
import math
import os
import platform
import queue
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fer_engine.errors import FerError, FieldError
from fer_engine.spec import LABELS

from .augment import AugmentConfig, augment, augment_preset, erase, jitter
from .consistency import jensen_shannon
from .checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from .data import FerSplit, load_fer2013
from .distill import TARGETS, DistillConfig, OnlineTeachers, TeacherTargets, distill_loss, prepare_targets
from .evaluate import predict_probs
from .metrics import Report
from .mixup import Mix, draw_mix, mixed_cross_entropy
from .averaging import EMA
from .models import BuiltModel, count_macs, count_parameters, cpu_state_dict, create_model, get_family
from .plots import plot_training_curve
from .preprocess import faces_to_tensor, to_pixel_values
from .state import TrainingState, has_state, read_state, write_state



@dataclass
class TrainConfig:
    model: str
    data: str
    out: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    optimizer: str | None = None
    warmup_epochs: float | None = None
    seed: int = 0
    workers: int = 0
    amp: str = "auto"
    device: str = "auto"
    threads: int | None = None
    limit: int | None = None
    pretrained: str | None = None
    from_config: str | None = None
    skip_bad_rows: bool = False
    final_test: bool = True
    eval_batch_size: int = 256
    average_last: int = 0  # average the weights of the last N epochs; kept when PublicTest says it is better
    tune_bias: bool = False  # per-class logit bias for macro-F1, chosen on PublicTest
    augment: str = "strong"  # a preset of augment.AUGMENT_PRESETS
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = none
    new_head: bool = False  # replace a pretrained emotion model's head instead of importing it
    teachers: list[str] = field(default_factory=list)  # checkpoint folders to distil from (train/distill.py)
    teacher_views: int = 24
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    distill_target: str = "view"  # or "mean" (train/distill.py)
    consistency: float = 0.0  # weight of the jitter-consistency term (train/consistency.py); 0 = none
    mixup: float = 0.0  # alpha of the Beta(alpha, alpha) blend weight (train/mixup.py); 0 = no mixup

    def fill_defaults(self) -> "TrainConfig":
        defaults = get_family(self.model).defaults
        for f in fields(defaults):
            if getattr(self, f.name) is None:
                setattr(self, f.name, getattr(defaults, f.name))
        self.out = self.out or f"runs/{self.model}"
        if self.optimizer not in ("sgd", "adamw"):
            raise FieldError("optimizer", f"'{self.optimizer}' is unknown: choose sgd or adamw")
        for name in ("epochs", "batch_size", "lr"):
            if getattr(self, name) <= 0:
                raise FieldError(name, f"must be positive (got {getattr(self, name)})")
        if not 0 <= self.ema < 1:
            raise FieldError("ema", f"must be a decay in [0, 1), e.g. 0.999 (got {self.ema})")
        augment_preset(self.augment)  # fails early on an unknown name
        if self.teachers:
            if self.teacher_views < 1:
                raise FieldError("teacher_views", f"must be 1 or more (got {self.teacher_views})")
            if not 0 < self.distill_weight <= 1:
                raise FieldError("distill_weight", f"must be in (0, 1] (got {self.distill_weight})")
            if self.distill_target not in TARGETS:
                raise FieldError("distill_target", f"'{self.distill_target}' is unknown: choose one of {', '.join(TARGETS)}")
            if self.distill_temperature <= 0:
                raise FieldError("distill_temperature", f"must be positive (got {self.distill_temperature})")
        if self.consistency < 0:
            raise FieldError("consistency", f"cannot be negative (got {self.consistency})")
        if self.mixup < 0:
            raise FieldError("mixup", f"cannot be negative (got {self.mixup}); 0 turns mixup off, 0.2-0.4 is usual")
        if not 0 <= self.average_last <= self.epochs:
            raise FieldError("average_last", f"must be between 0 and the number of epochs ({self.epochs})")
        return self


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FieldError("device", "cuda was asked for, but torch sees no CUDA GPU (is this a CPU build of torch?)")
    if name not in ("cpu", "cuda"):
        raise FieldError("device", f"'{name}' is unknown: choose auto, cpu or cuda")
    return torch.device(name)


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    if name == "off":
        return None
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    if name in ("bf16", "fp16"):
        return torch.bfloat16 if name == "bf16" else torch.float16
    raise FieldError("amp", f"'{name}' is unknown: choose auto, bf16, fp16 or off")


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class Batch:
    x: torch.Tensor  # float [B, 1, H, W] in 0..1: the views (blended where mix is set)
    labels: torch.Tensor
    soft: torch.Tensor | None  # precomputed teacher targets of the views (blended alike), or None
    step: int
    jittered: torch.Tensor | None  # jittered copies of the views for the consistency term, or None
    mix: Mix | None  # the mixup blend of this batch, or None


class BatchStream:
    """Augmented training batches for one epoch. The permutation depends on (seed, epoch) and each
    batch's augmentation on (seed, epoch, step), so a run resumed mid-epoch continues identically."""

    def __init__(self, split: FerSplit, batch_size: int, seed: int, augment_cfg: AugmentConfig, workers: int,
                 targets: TeacherTargets | None = None, jittered: bool = False, mixup: float = 0.0):
        self.images = torch.from_numpy(split.images)
        self.labels = torch.from_numpy(split.labels)
        self.batch_size, self.seed, self.augment_cfg, self.workers = batch_size, seed, augment_cfg, workers
        self.targets, self.jittered, self.mixup = targets, jittered, mixup

    def steps_per_epoch(self) -> int:
        return max(len(self.labels) // self.batch_size, 1)

    def _batch(self, perm: torch.Tensor, epoch: int, step: int):
        idx = perm[step * self.batch_size:(step + 1) * self.batch_size]
        gen = torch.Generator().manual_seed(hash((self.seed, epoch, step)) & 0x7FFF_FFFF)
        faces = faces_to_tensor(self.images[idx])
        if self.targets is None:
            x, soft = augment(faces, self.augment_cfg, gen), None
        else:
            x, soft = self.targets.batch(faces, idx, gen)
            x = erase(x, self.augment_cfg, gen)
        # Drawn after the view's own numbers, so a run without mixup or the term keeps its exact batches.
        mix = draw_mix(len(idx), self.mixup, gen) if self.mixup > 0 else None
        if mix is not None:
            x = mix.images(x)
            soft = mix.targets(soft) if soft is not None else None
        return Batch(x, self.labels[idx], soft, step, jitter(x, gen) if self.jittered else None, mix)

    def epoch(self, epoch: int, start_step: int = 0):
        perm = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        steps = range(start_step, self.steps_per_epoch())
        if self.workers <= 0:
            for step in steps:
                yield self._batch(perm, epoch, step)
            return
        ready: queue.Queue = queue.Queue(maxsize=2 * self.workers)
        stop = threading.Event()

        def produce():
            for step in steps:
                if stop.is_set():
                    return
                ready.put(self._batch(perm, epoch, step))
            ready.put(None)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not None:
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(0.05)


def _lr_lambda(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def _make_optimizer(cfg: TrainConfig, module: torch.nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)  # no decay on norms and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None if interactive else False,
                mininterval=0.5 if interactive else 60, file=sys.stderr)


def split_probs(module, spec, split: FerSplit, device, batch_size: int) -> np.ndarray:
    """Probabilities for a split's faces, columns in the canonical label order."""
    probs = predict_probs(module, spec, split.images, device=str(device), batch_size=batch_size)
    return probs[:, spec.label_index(LABELS)]


def evaluate_split(module, spec, split: FerSplit, device, batch_size: int) -> tuple[Report, float]:
    probs = split_probs(module, spec, split, device, batch_size)
    loss = float(-np.log(np.clip(probs[np.arange(len(split)), split.labels], 1e-12, None)).mean())
    return Report.from_predictions(split.labels, probs.argmax(1), LABELS), loss


def _check_writable_folder(folder: Path) -> None:
    """Fail before the data is read and an epoch is spent, not when the first checkpoint is written."""
    if folder.exists() and not folder.is_dir():
        raise FieldError("out", f"{folder} is a file, not a folder: give a folder for the run")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".fer-train-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FieldError("out", f"{folder} cannot be written into ({exc.strerror or exc}): choose a folder you can "
                         "write to") from exc


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | None = None, log=print):
        self.log = log
        self.resume_dir = Path(resume) if resume else None
        state: TrainingState | None = None
        if self.resume_dir:
            self.resume_dir = self._find_resume_dir(self.resume_dir)
            state = read_state(self.resume_dir)
            known = {f.name for f in fields(TrainConfig)}
            saved = TrainConfig(**{k: v for k, v in state.config.items() if k in known})
            saved.workers, saved.device, saved.threads = cfg.workers, cfg.device, cfg.threads
            saved.out = cfg.out or saved.out  # a state copied elsewhere (e.g. a committed compact one) goes on in --out
            saved.average_last = cfg.average_last or saved.average_last
            saved.tune_bias = cfg.tune_bias or saved.tune_bias
            cfg = saved
        self.cfg = cfg.fill_defaults()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # every batch has one shape: let cuDNN time its kernels once
        self.amp = resolve_amp(cfg.amp, self.device)
        self.out = Path(cfg.out)
        _check_writable_folder(self.out)

        if state:
            spec, arch = read_checkpoint_config(self.resume_dir)
            try:
                module = get_family(spec.model).load(self.resume_dir, spec, arch)
            except Exception as exc:  # safetensors and torch raise several types for a damaged file
                raise FerError(f"{self.resume_dir / 'model.safetensors'} is damaged ({exc}); it cannot be resumed") from exc
            self.built = BuiltModel(module.float(), spec, arch)
        else:
            self.built = create_model(cfg.model, pretrained=cfg.pretrained, from_config=cfg.from_config,
                                      new_head=cfg.new_head)
        data = load_fer2013(cfg.data, skip_bad_rows=cfg.skip_bad_rows)
        self.log(f"data: {data.source}: {data.summary()}" + (" [cache]" if data.from_cache else ""))
        self.train_split = data.split("Training").head(cfg.limit)
        self.val_split = data.split("PublicTest").head(cfg.limit)
        # PrivateTest is read once, after training, and only when asked: data packed without it trains too
        self.test_split = None
        if cfg.final_test:
            try:
                self.test_split = data.split("PrivateTest").head(cfg.limit)
            except FerError as exc:
                raise FerError(f"{data.source} has no PrivateTest faces to report at the end: pass --no-test to "
                               "train without that report (PublicTest still chooses the best epoch)") from exc

        self.module = self.built.module.to(self.device).to(memory_format=torch.channels_last)
        self.teachers_report: dict | None = None
        online = bool(cfg.teachers) and cfg.distill_target == "online"
        targets = self._teacher_targets() if cfg.teachers and not online else None
        self.online_teachers = self._online_teachers() if online else None
        self.stream = BatchStream(self.train_split, cfg.batch_size, cfg.seed, augment_preset(cfg.augment), cfg.workers,
                                  targets, jittered=cfg.consistency > 0, mixup=cfg.mixup)
        steps = self.stream.steps_per_epoch()
        self.optimizer = _make_optimizer(cfg, self.module)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(cfg.epochs * steps, int(cfg.warmup_epochs * steps)))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16 and self.device.type == "cuda")
        self.history: list[dict] = []
        self.best: dict | None = None
        self.start_epoch, self.start_step, self.elapsed = 0, 0, 0.0
        self.ema = EMA(self.module, cfg.ema) if cfg.ema else None
        self.stop_reason: str | None = None
        if state:
            try:
                self.optimizer.load_state_dict(state.optimizer)
                self.scheduler.load_state_dict(state.scheduler)
                if self.ema is not None and state.ema is not None:
                    self.ema.load(state.ema)
            except (KeyError, ValueError, RuntimeError) as exc:
                raise FerError(f"the state in {self.resume_dir} does not fit this model ({exc}); it cannot be resumed") from exc
            self.history, self.best = state.history, state.best
            if self.best is not None and not (self.out / "best").is_dir():
                self.log(f"{self.out / 'best'} is not here: the best epoch is chosen again among the epochs to come")
                self.best = None
            self.start_epoch, self.start_step, self.elapsed = state.epoch, state.step, state.elapsed
            if state.rng is not None:
                torch.set_rng_state(state.rng)  # dropout continues as in an uninterrupted run
            self.log(f"resuming {self.resume_dir} at epoch {self.start_epoch + 1}, step {self.start_step}"
                     + (" (compact state: fp16 weights, optimizer momentum rebuilt)" if state.compact else ""))
        invoked = "fer-train " + " ".join(sys.argv[1:]) if sys.argv and "fer-train" in sys.argv[0] else None
        self.command, self.resumed_with = invoked, []
        if state:
            earlier = json.loads((self.resume_dir / "metrics.json").read_text()) if (self.resume_dir / "metrics.json").is_file() else {}
            self.command = earlier.get("command")
            self.resumed_with = earlier.get("resumed_with", []) + [invoked]
        self.params = count_parameters(self.module)
        self.macs = count_macs(self.module, self.built.spec)

    def _distill_config(self) -> DistillConfig:
        cfg = self.cfg
        return DistillConfig(tuple(cfg.teachers), cfg.teacher_views, cfg.distill_weight, cfg.distill_temperature,
                             cfg.distill_target)

    def _teacher_targets(self) -> TeacherTargets:
        cfg = self.cfg
        distill = self._distill_config()
        search = [self.resume_dir, self.resume_dir.parent] if self.resume_dir else []
        targets = prepare_targets(distill, self.built.spec, self.train_split.images, augment_preset(cfg.augment),
                                  cfg.seed, self.out, search, self.device, self.amp, cfg.eval_batch_size, _progress,
                                  self.log)
        if all((Path(t) / "config.json").is_file() for t in cfg.teachers):
            self.teachers_report = self._judge_teachers()
        return targets

    def _online_teachers(self) -> OnlineTeachers:
        cfg = self.cfg
        teachers = OnlineTeachers(self._distill_config(), self.built.spec, self.device, self.amp)
        self.teachers_report = self._judge_teachers()
        self.log(f"teachers run online on each training batch ({len(cfg.teachers)} teacher(s), T={cfg.distill_temperature:g})")
        return teachers

    def _judge_teachers(self) -> dict:
        """The teachers' PublicTest accuracy, alone and together: what the student can hope to inherit."""
        total, each = 0, []
        for folder in self.cfg.teachers:
            ckpt = load_checkpoint(folder)
            probs = split_probs(ckpt.module.to(self.device), ckpt.spec, self.val_split, self.device, self.cfg.eval_batch_size)
            each.append(float((probs.argmax(1) == self.val_split.labels).mean()))
            total = total + probs
        together = float((total.argmax(1) == self.val_split.labels).mean())
        self.log(f"teachers on PublicTest (single view): {', '.join(f'{a * 100:.2f}%' for a in each)}"
                 + (f"; together {together * 100:.2f}%" if len(each) > 1 else ""))
        return {"val_accuracy": each, "together_val_accuracy": together}

    @staticmethod
    def _find_resume_dir(path: Path) -> Path:
        if not path.is_dir():
            raise FerError(f"nothing to resume: {path} is not a folder (give the --out of an earlier fer-train run)")
        for candidate in (path, path / "last"):
            if has_state(candidate):
                return candidate
        if (path / "last").is_dir() or (path / "model.safetensors").is_file():
            return path / "last" if (path / "last").is_dir() else path  # read_state names the missing file
        raise FerError(f"nothing to resume in {path}: expected {path}/last/ from an earlier fer-train run")

    def request_stop(self, reason: str) -> None:
        """Stop at the end of the current step, saving a resumable state (from a signal handler)."""
        self.stop_reason = reason

    def _metrics(self) -> dict:
        return {
            "model": self.built.spec.model,
            "config": asdict(self.cfg),
            "command": self.command,
            "resumed_with": self.resumed_with,
            "params": self.params,
            "macs_per_face": self.macs,
            "amp": str(self.amp).replace("torch.", "") if self.amp else "off",
            "machine": machine_info(self.device),
            "history": self.history,
            **({"teachers": self.teachers_report} if self.teachers_report else {}),
            "best_epoch": self.best["epoch"] if self.best else None,
            "best": self.best,
            "train_time_s": round(self.elapsed, 1),
        }

    def _save_last(self, epoch: int, step: int) -> None:
        state = TrainingState(
            config=asdict(self.cfg), epoch=epoch, step=step, elapsed=self.elapsed, history=self.history,
            best=self.best, scheduler=self.scheduler.state_dict(), optimizer=self.optimizer.state_dict(),
            ema=self.ema.state_for_saving() if self.ema else None, rng=torch.get_rng_state())
        save_checkpoint(self.out / "last", self.built, self._metrics(), lambda folder: write_state(folder, state))

    def _train_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns the batch's summed loss and its hits as tensors on the device, so
        that a GPU is not made to wait for the host after every step (read them only now and then)."""
        x, y, soft, jittered, mix = batch.x, batch.labels, batch.soft, batch.jittered, batch.mix
        if self.online_teachers is not None:
            soft = self.online_teachers(x)
        if jittered is not None:  # one forward pass for both views: BatchNorm sees them as one batch
            x = torch.cat([x, jittered])
        x = to_pixel_values(x.to(self.device, non_blocking=True), self.built.spec).contiguous(
            memory_format=torch.channels_last)
        y = y.to(self.device, non_blocking=True)
        autocast = torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()
        with autocast:
            logits = self.module(x)
            if jittered is not None:
                logits, logits_jittered = logits.chunk(2)
            loss = mixed_cross_entropy(logits, y, mix, self.cfg.label_smoothing)
            if soft is not None:
                weight = self.cfg.distill_weight
                loss = (1 - weight) * loss + weight * distill_loss(logits, soft.to(self.device), self.cfg.distill_temperature)
            if jittered is not None:
                loss = loss + self.cfg.consistency * jensen_shannon(logits, logits_jittered)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.module)
        counted = mix.majority_labels(y) if mix is not None else y
        return loss.detach().double() * len(y), (logits.argmax(1) == counted).sum()

    def run(self, max_minutes: float | None = None) -> dict:
        """Train to the end of the schedule and finish (averaging, bias, PrivateTest), or stop early when
        asked (``request_stop``) or when the next epoch would pass ``max_minutes``; an early stop saves
        ``last/`` and returns ``{"stopped": reason, ...}`` without finishing."""
        cfg = self.cfg
        steps = self.stream.steps_per_epoch()
        self.log(f"model {cfg.model}: {self.params / 1e6:.2f} M parameters, {self.macs / 1e9:.3f} GMACs/face, "
                 f"input {self.built.spec.channels}x{self.built.spec.image_size[0]}x{self.built.spec.image_size[1]}; "
                 f"device {self.device}, amp {self.amp or 'off'}, {torch.get_num_threads()} threads; "
                 f"{cfg.epochs} epochs x {steps} steps of {cfg.batch_size}"
                 + (f"; EMA {cfg.ema:g}" if self.ema else ""))
        self.module.train()
        self.session_start = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.epochs):
            first = self.start_step if epoch == self.start_epoch else 0
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            correct = torch.zeros((), dtype=torch.int64, device=self.device)
            seen = 0
            started = time.perf_counter()
            bar = _progress(steps, f"epoch {epoch + 1}/{cfg.epochs}")
            bar.update(first)
            for batch in self.stream.epoch(epoch, first):
                step = batch.step
                loss, hits = self._train_step(batch)
                loss_sum += loss
                correct += hits
                seen += len(batch.labels)
                if not bar.disable and step % 16 == 0:
                    rate = seen / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen * 100:.1f}%",
                                    img_s=f"{rate:.0f}", refresh=False)
                bar.update(1)
                if self.stop_reason:
                    bar.close()
                    self.elapsed += time.perf_counter() - started
                    return self._stop(epoch, step + 1)
            bar.close()
            loss_total, hits = loss_sum.item(), int(correct.item())  # waits for the device's last steps
            train_time = time.perf_counter() - started
            record = self._end_epoch(epoch, loss_total, hits, seen, train_time, started)
            self._save_last(epoch + 1, 0)
            if epoch + 1 > cfg.epochs - cfg.average_last:
                self._save_tail(epoch + 1)
            if self.stop_reason:
                return self._stop(epoch + 1, 0)
            if max_minutes is not None and epoch + 1 < cfg.epochs:
                spent = time.perf_counter() - self.session_start
                if spent + record["epoch_time_s"] > max_minutes * 60:
                    self.stop_reason = f"--max-minutes {max_minutes:g}: the next epoch would end after it"
                    return self._stop(epoch + 1, 0)
        return self.finish()

    def _end_epoch(self, epoch: int, loss_sum: float, correct: int, seen: int, train_time: float, started: float) -> dict:
        cfg = self.cfg
        report, val_loss = evaluate_split(self.module, self.built.spec, self.val_split, self.device, cfg.eval_batch_size)
        ema_report = ema_module = None
        if self.ema is not None:
            ema_module = self.ema.module_like(self.module)
            ema_report, _ = evaluate_split(ema_module, self.built.spec, self.val_split, self.device, cfg.eval_batch_size)
        self.module.train()
        self.elapsed += time.perf_counter() - started
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                  "val_loss": val_loss, "val_accuracy": report.accuracy, "val_macro_f1": report.macro_f1,
                  "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": seen / max(train_time, 1e-9),
                  "epoch_time_s": time.perf_counter() - started,
                  # since this process started training: successive epochs' difference is their whole period,
                  # saving included (what a run sized in advance must count on)
                  "session_s": time.perf_counter() - self.session_start}
        candidate, weights = report, "raw"
        if ema_report is not None:
            record.update(ema_val_accuracy=ema_report.accuracy, ema_val_macro_f1=ema_report.macro_f1)
            if ema_report.accuracy > report.accuracy:
                candidate, weights = ema_report, "ema"
        self.history.append(record)
        improved = self.best is None or candidate.accuracy > self.best["val_accuracy"]
        if improved:
            self.best = dict(record, val_accuracy=candidate.accuracy, val_macro_f1=candidate.macro_f1, weights=weights)
        ema_text = f" (EMA {ema_report.accuracy * 100:.2f}%)" if ema_report is not None else ""
        self.log(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.3f}, train acc "
                 f"{record['train_accuracy'] * 100:.1f}%, PublicTest acc {report.accuracy * 100:.2f}%{ema_text} "
                 f"macro-F1 {report.macro_f1 * 100:.2f}%, {record['images_per_s']:.0f} img/s, "
                 f"{record['epoch_time_s']:.0f} s" + (f"  * best ({weights})" if improved else ""))
        if improved:
            module = self.module if weights == "raw" else ema_module  # already holds this epoch's average
            save_checkpoint(self.out / "best", BuiltModel(module, self.built.spec, self.built.arch), self._metrics())
        return record

    def _stop(self, epoch: int, step: int) -> dict:
        self._save_last(epoch, step)
        where = f"epoch {epoch + 1}, step {step}" if step else f"the start of epoch {epoch + 1}"
        self.log(f"stopped ({self.stop_reason}): state saved in {self.out / 'last'}; it continues at {where} with "
                 f"`fer-train --resume {self.out}`")
        return {"stopped": self.stop_reason, "epoch": epoch, "step": step, "state": str(self.out / "last")}

    def _tail_file(self, epoch: int) -> Path:
        return self.out / "tail" / f"epoch_{epoch}.safetensors"

    def _save_tail(self, epoch: int) -> None:
        from safetensors.torch import save_file

        self._tail_file(epoch).parent.mkdir(parents=True, exist_ok=True)
        save_file(cpu_state_dict(self.module), str(self._tail_file(epoch)))

    def _average_tail(self) -> dict | None:
        """Average the last epochs' weights; the average replaces ``best`` if PublicTest prefers it."""
        import copy

        from safetensors.torch import load_file

        from .averaging import average_state_dicts, recompute_batchnorm

        epochs = [e for e in range(self.cfg.epochs - self.cfg.average_last + 1, self.cfg.epochs + 1)
                  if self._tail_file(e).is_file()]
        if len(epochs) < 2:
            return None
        module = copy.deepcopy(self.module)
        module.load_state_dict(average_state_dicts([load_file(str(self._tail_file(e))) for e in epochs]))
        recompute_batchnorm(module, self.train_split.images, self.built.spec, self.device, self.cfg.eval_batch_size)
        report, val_loss = evaluate_split(module, self.built.spec, self.val_split, self.device, self.cfg.eval_batch_size)
        chosen = report.accuracy > self.best["val_accuracy"]
        result = {"epochs": epochs, "val_accuracy": report.accuracy, "val_macro_f1": report.macro_f1,
                  "val_loss": val_loss, "chosen": chosen}
        self.log(f"average of epochs {epochs[0]}-{epochs[-1]}: PublicTest acc {report.accuracy * 100:.2f}% "
                 f"macro-F1 {report.macro_f1 * 100:.2f}% ({'kept' if chosen else 'not better than'} best single epoch "
                 f"{self.best['epoch']} at {self.best['val_accuracy'] * 100:.2f}%)")
        if chosen:
            self.best = {"epoch": f"average of {epochs[0]}-{epochs[-1]}", "val_accuracy": report.accuracy,
                         "val_macro_f1": report.macro_f1, "val_loss": val_loss}
            save_checkpoint(self.out / "best", BuiltModel(module, self.built.spec, self.built.arch), self._metrics())
        return result

    def _tune_bias(self) -> dict | None:
        """Fit the class bias on PublicTest; keep it when macro-F1 gains at least half a point."""
        from .class_bias import fit_class_bias, fold_into_classifier

        ckpt = load_checkpoint(self.out / "best")
        module = ckpt.module.to(self.device)
        probs = split_probs(module, ckpt.spec, self.val_split, self.device, self.cfg.eval_batch_size)
        log_probs = np.log(np.clip(probs, 1e-12, None))
        before = Report.from_predictions(self.val_split.labels, log_probs.argmax(1), LABELS)
        bias = fit_class_bias(log_probs, self.val_split.labels)
        after = Report.from_predictions(self.val_split.labels, (log_probs + bias).argmax(1), LABELS)
        chosen = after.macro_f1 >= before.macro_f1 + 0.005
        result = {"bias": dict(zip(LABELS, bias.round(3).tolist())), "chosen": chosen,
                  "before": {"val_accuracy": before.accuracy, "val_macro_f1": before.macro_f1},
                  "after": {"val_accuracy": after.accuracy, "val_macro_f1": after.macro_f1}}
        self.log(f"class bias on PublicTest: macro-F1 {before.macro_f1 * 100:.2f}% -> {after.macro_f1 * 100:.2f}%, "
                 f"accuracy {before.accuracy * 100:.2f}% -> {after.accuracy * 100:.2f}% "
                 f"({'kept' if chosen else 'not kept'})")
        if chosen:
            fold_into_classifier(module, bias[[LABELS.index(n) for n in ckpt.spec.labels]])
            self.best = dict(self.best, val_accuracy=after.accuracy, val_macro_f1=after.macro_f1, class_bias=True)
            save_checkpoint(self.out / "best", BuiltModel(module, ckpt.spec, ckpt.arch), self._metrics())
        return result

    def finish(self) -> dict:
        best_dir = self.out / "best"
        averaging = self._average_tail() if self.cfg.average_last else None
        class_bias = self._tune_bias() if self.cfg.tune_bias else None
        ckpt = load_checkpoint(best_dir)
        metrics = self._metrics()
        if averaging:
            metrics["averaging"] = averaging
        if class_bias:
            metrics["class_bias"] = class_bias
        if self.cfg.final_test:
            module = ckpt.module.to(self.device)
            report, _ = evaluate_split(module, ckpt.spec, self.test_split, self.device, self.cfg.eval_batch_size)
            metrics["test"] = {"split": "PrivateTest", "accuracy": report.accuracy, "macro_f1": report.macro_f1,
                               "per_class": report.per_class(), "confusion": report.confusion.tolist()}
            self.log(f"best epoch {self.best['epoch']}: PublicTest {self.best['val_accuracy'] * 100:.2f}%; "
                     f"PrivateTest (reported once) accuracy {report.accuracy * 100:.2f}%, "
                     f"macro-F1 {report.macro_f1 * 100:.2f}%")
        (best_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        title = f"{self.cfg.model}: best PublicTest {self.best['val_accuracy'] * 100:.2f}% (epoch {self.best['epoch']})"
        for folder in (best_dir, self.out / "last"):
            if folder.is_dir():
                plot_training_curve(self.history, folder / "training_curve.png", title)
        return metrics
