"""Distillation from teachers of our own, their probabilities computed once on fixed views of each face.

Running the teachers inside every training step would add a third of a step per teacher. Instead every
Training face gets ``views`` fixed augmented views (warp and tone rows drawn from the run's seed,
``augment.sample_warps``); before the first epoch the teachers' probabilities, softened by the temperature
and averaged over the teachers, are computed on each view and kept in ``OUT/teacher-targets.safetensors``.
Each step then shows the student one of its face's views, drawn at random, plus random erasing of its own,
and the loss mixes the label's cross entropy with the KL divergence to the teachers' probabilities on that
same view (Hinton et al. 2015; one view for teacher and student, Beyer et al. 2022). With ``target="mean"``
every view of a face is asked for the teachers' average over all its views instead: the student is taught
to give one answer however the face is framed, which is what keeps a label steady under a detector's
jitter from frame to frame (a 1-pixel shift moves a seventh of our labels, benchmarks/stability.py).

With ``target="online"`` the teachers run inside each step on the very batch the student sees, fresh
augmentation, erasing and mixup blend included: Beyer et al.'s "consistent" teaching, where fixed views
run out over a long schedule (a few views per face, seen tens of times each). It costs a teacher's forward
pass per step (a third of a step for a teacher the student's size) and needs the teachers' folders present
for as long as the run goes on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fer_engine.errors import FerError
from fer_engine.spec import ModelSpec

from .augment import AugmentConfig, apply_warps, sample_warps
from .preprocess import faces_to_tensor, to_pixel_values

TARGETS_FILE = "teacher-targets.safetensors"


@dataclass(frozen=True)
class DistillConfig:
    teachers: tuple[str, ...]  # checkpoint folders (fer-train's best/ or a shipped checkpoint)
    views: int = 24  # fixed augmented views per Training face
    weight: float = 0.5  # share of the distillation term in the loss; the label's cross entropy has the rest
    temperature: float = 2.0
    target: str = "view"  # "view": the teachers on the view the student sees; "mean": on all the face's views;
    # "online": on the student's own batch, computed in each step (OnlineTeachers)


TARGETS = ("view", "mean", "online")


@dataclass
class TeacherTargets:
    warps: torch.Tensor  # float [views, N, 7]: the rows of augment.sample_warps that make each view
    probs: torch.Tensor  # float16 [views, N, classes]: the teachers' softened probabilities, student's label order
    target: str = "view"

    def __post_init__(self):
        self._mean = self.probs.float().mean(0) if self.target == "mean" else None

    @property
    def views(self) -> int:
        return self.warps.shape[0]

    def batch(self, images: torch.Tensor, index: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random view of each face ``images`` [B, 1, H, W] (Training rows ``index``) and its target."""
        view = torch.randint(self.views, (len(index),), generator=gen)
        target = self._mean[index] if self._mean is not None else self.probs[view, index].float()
        return apply_warps(images, self.warps[view, index]), target


def view_warps(count: int, views: int, cfg: AugmentConfig, seed: int) -> torch.Tensor:
    """The fixed views' warp rows, [views, count, 7]: the same seed gives the same views on any machine."""
    return torch.stack([sample_warps(count, cfg, torch.Generator().manual_seed(hash((seed, 7919, k)) & 0x7FFF_FFFF))
                        for k in range(views)])


def distill_loss(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(target || softmax(logits / T)) · T², averaged over the batch (T² keeps its gradients' scale)."""
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean") * temperature ** 2


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in (".safetensors", ".bin") or path.name == "config.json"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _key(cfg: DistillConfig, augment_cfg: AugmentConfig, seed: int, count: int, labels) -> dict:
    """What the cached probabilities depend on, besides the teachers' files; as JSON reads it back."""
    return json.loads(json.dumps({"views": cfg.views, "temperature": cfg.temperature, "augment": asdict(augment_cfg),
                                  "seed": seed, "faces": count, "labels": list(labels)}))


def _read_cached(candidates, key_without_teachers: dict, fingerprints: list[str] | None) -> torch.Tensor | None:
    from safetensors import safe_open

    for path in candidates:
        if not path.is_file():
            continue
        try:
            with safe_open(str(path), "pt") as f:
                cached = json.loads((f.metadata() or {}).get("key", "{}"))
                teachers = cached.pop("teachers", None)
                if cached != key_without_teachers or (fingerprints is not None and teachers != fingerprints):
                    continue
                return f.get_tensor("probs")
        except Exception:  # a damaged cache is computed again, not trusted
            continue
    return None


def _student_columns(teacher, spec: ModelSpec) -> list[int]:
    """The teacher's output columns in the student's label order; a teacher lacking one of them is refused."""
    missing = [name for name in spec.labels if name not in teacher.spec.labels]
    if missing:
        raise FerError(f"teacher {teacher.folder} does not classify {', '.join(missing)}: a teacher needs the student's labels")
    return teacher.spec.label_index(spec.labels)


def _softened(module, spec: ModelSpec, columns: list[int], gray: torch.Tensor, temperature: float, autocast) -> torch.Tensor:
    """One teacher's probabilities at ``temperature`` on gray views (0..1), in the student's label order."""
    with autocast:
        logits = module(to_pixel_values(gray, spec).contiguous(memory_format=torch.channels_last))
    return torch.softmax(logits.float() / temperature, 1)[:, columns]


def _autocast(device, amp):
    from contextlib import nullcontext

    return torch.autocast(torch.device(device).type, dtype=amp) if amp else nullcontext()


@torch.no_grad()
def teacher_probs(teacher, spec: ModelSpec, faces: np.ndarray, warps: torch.Tensor, temperature: float, device,
                  amp, batch_size: int, bar=None) -> torch.Tensor:
    """A teacher's (a loaded checkpoint) softened probabilities [views, N, classes] on each view of ``faces``, in
    ``spec``'s label order; ``bar`` (a progress bar) is advanced by the faces done."""
    columns = _student_columns(teacher, spec)
    module = teacher.module.to(device).eval()
    out = torch.empty(warps.shape[0], len(faces), len(spec.labels))
    autocast = _autocast(device, amp)
    for start in range(0, len(faces), batch_size):
        gray = faces_to_tensor(faces[start:start + batch_size], device)
        for view in range(warps.shape[0]):
            view_gray = apply_warps(gray, warps[view, start:start + len(gray)])
            out[view, start:start + len(gray)] = _softened(module, teacher.spec, columns, view_gray, temperature,
                                                           autocast).cpu()
            if bar is not None:
                bar.update(len(gray))
    return out


class OnlineTeachers:
    """The teachers' softened probabilities, averaged, on a batch of training views (gray, 0..1), in the
    student's label order: the target of ``target="online"``."""

    def __init__(self, cfg: DistillConfig, spec: ModelSpec, device, amp):
        from .checkpoint import load_checkpoint

        self.temperature, self.device, self.autocast = cfg.temperature, device, _autocast(device, amp)
        self.teachers = []
        for folder in map(Path, cfg.teachers):
            if not (folder / "config.json").is_file():
                raise FerError(f"teacher {folder} is not a checkpoint folder (no config.json): online distillation "
                               f"runs its teachers in every step, so they must be present for the whole run")
            teacher = load_checkpoint(folder)
            columns = _student_columns(teacher, spec)
            module = teacher.module.to(device).eval().to(memory_format=torch.channels_last)
            for param in module.parameters():
                param.requires_grad_(False)
            self.teachers.append((module, teacher.spec, columns))

    @torch.no_grad()
    def __call__(self, gray: torch.Tensor) -> torch.Tensor:
        gray = gray.to(self.device)
        total = sum(_softened(module, spec, columns, gray, self.temperature, self.autocast)
                    for module, spec, columns in self.teachers)
        return total / len(self.teachers)


def prepare_targets(cfg: DistillConfig, spec: ModelSpec, faces: np.ndarray, augment_cfg: AugmentConfig, seed: int,
                    out: Path, search: list[Path], device, amp, batch_size: int, progress, log) -> TeacherTargets:
    """The run's teacher targets: read from a matching cache in ``out`` or ``search`` (a resumed run's
    folders, where the teachers themselves may be absent), else computed and cached in ``out``.

    A resumed run (``search`` given) keeps the targets it started with even where a teacher's folder has
    changed since (a retrained or newly shipped model under the same path): resumption stays exact.
    """
    from safetensors.torch import save_file

    from .checkpoint import load_checkpoint

    warps = view_warps(len(faces), cfg.views, augment_cfg, seed)
    key = _key(cfg, augment_cfg, seed, len(faces), spec.labels)
    folders = [Path(t) for t in cfg.teachers]
    present = all((f / "config.json").is_file() for f in folders)
    fingerprints = [_fingerprint(f) for f in folders] if present else None
    candidates = [out / TARGETS_FILE] + [folder / TARGETS_FILE for folder in search]
    probs = _read_cached(candidates, key, fingerprints)
    if probs is None and search:
        probs = _read_cached(candidates, key, None)
        if probs is not None:
            log(f"teacher targets: a teacher's files changed since this run started; it keeps the targets it "
                f"started with ({TARGETS_FILE})")
    if probs is not None:
        log(f"teacher targets: {cfg.views} views x {len(faces)} faces read from the cache")
        return TeacherTargets(warps, probs, cfg.target)
    if not present:
        absent = next(f for f in folders if not (f / "config.json").is_file())
        raise FerError(f"teacher {absent} is not a checkpoint folder (no config.json), and no cached {TARGETS_FILE} "
                       f"of this run was found: give the teachers' checkpoint folders")
    total = torch.zeros(cfg.views, len(faces), len(spec.labels))
    bar = progress(len(folders) * cfg.views * len(faces), "teacher targets")
    for folder in folders:
        total += teacher_probs(load_checkpoint(folder), spec, faces, warps, cfg.temperature, device, amp, batch_size,
                               bar)
    bar.close()
    probs = (total / len(folders)).half()
    out.mkdir(parents=True, exist_ok=True)
    metadata = {"key": json.dumps({**key, "teachers": fingerprints}),
                "teachers": json.dumps([str(f) for f in folders])}
    tmp = out / (TARGETS_FILE + ".tmp")
    save_file({"probs": probs.contiguous()}, str(tmp), metadata=metadata)
    tmp.replace(out / TARGETS_FILE)
    log(f"teacher targets: {len(folders)} teacher(s) x {cfg.views} views x {len(faces)} faces, T={cfg.temperature:g}, "
        f"cached in {out / TARGETS_FILE}")
    return TeacherTargets(warps, probs, cfg.target)
