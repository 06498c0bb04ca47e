"""Teachers, then a distilled ``cnn``, inside a fixed number of minutes: one command for a GPU machine
lent by the minute (docs/gpu-training.md).

    python -m fer_engine.train.campaign --data fer2013-train-val.zip --out campaign --minutes 8
    python -m fer_engine.train.campaign --data ... --out ... --minutes 8 --teacher DIR --teacher DIR ...

With ``--teacher`` (trained checkpoints, e.g. the three members of ``cnn-ensemble``) no teacher is trained:
the whole time goes to the student.

1. Probe: each teacher trains two epochs side by side, as they will run, then the student two epochs with
   those probe teachers online; the second epochs' times (cuDNN's tuning is in the first) say what an epoch
   costs on this machine.
2. Budget: the minutes left after the probes, less a reserve for each run's start and finish, are split
   between the teachers (side by side) and the student (``--teacher-share``), and each schedule gets the
   whole number of epochs that fits. A schedule is fixed in advance (warm-up, then one cosine to zero), so
   a run sized to its time ends its schedule; one stopped by the clock would not.
3. The teachers train (SGD, the published recipe of train/RESULTS.md's run 10), then the student learns
   from all of them on its own augmented, mixed-up batches (``--distill-target online``, run 16's recipe).

Selection is on PublicTest only and PrivateTest is never read (``--no-test``): the packed data can leave it
out, and the student's PrivateTest is read once, at home, if PublicTest chooses it. ``OUT/campaign.json``
holds the probes, the budget and each run's best epoch; ``OUT/student/`` is the student's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fer_engine.cli import non_negative_float, non_negative_int, positive_float, positive_int, run_cli
from fer_engine.errors import FerError

PROG = "python -m fer_engine.train.campaign"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEACHER = REPO / "configs" / "cnn-teacher.json"
DEFAULT_STUDENT = REPO / "configs" / "cnn-sgd.json"
# Run 10's recipe (train/RESULTS.md): the published FER2013 optimiser, with EMA and label smoothing.
RECIPE = ("--model", "cnn", "--optimizer", "sgd", "--weight-decay", "5e-4", "--label-smoothing", "0.1", "--ema", "0.999",
          "--augment", "strong", "--no-test")
STUDENT_EXTRA = ("--distill-target", "online", "--tune-bias")


@dataclass
class CampaignConfig:
    data: str
    out: str
    minutes: float = 8.0
    teachers: int = 2
    teacher: list[str] = field(default_factory=list)  # trained teachers: then none is trained here
    teacher_config: str = str(DEFAULT_TEACHER)
    student_config: str = str(DEFAULT_STUDENT)
    teacher_share: float = 0.5  # of the minutes left after the probes
    probe_epochs: int = 2
    min_epochs: int = 10
    device: str = "auto"
    amp: str = "auto"
    threads: int = 4  # torch CPU threads per run (the batches are prepared on the CPU)
    workers: int = 2
    limit: int | None = None  # faces per split, for a smoke run
    batch_size: int = 128
    lr: float = 0.01
    mixup: float = 0.2  # the student's (run 16's); train/RESULTS.md weighs it against run 19, without

    def check(self) -> "CampaignConfig":
        if not 0 < self.teacher_share < 1:
            raise FerError(f"--teacher-share must be between 0 and 1, got {self.teacher_share}")
        for folder in self.teacher:
            if not (Path(folder) / "config.json").is_file():
                raise FerError(f"--teacher {folder}: not a checkpoint folder (no config.json)")
        for name in ("teacher_config", "student_config"):
            if not Path(getattr(self, name)).is_file():
                raise FerError(f"--{name.replace('_', '-')} {getattr(self, name)}: no such file (a JSON of CNNConfig values, "
                               "e.g. configs/cnn-teacher.json)")
        if self.probe_epochs < 2:
            raise FerError("--probe-epochs must be 2 or more: the first epoch's time holds cuDNN's tuning")
        return self


@dataclass
class RunResult:
    name: str
    epochs: int
    wall_s: float
    epoch_s: float  # the last epoch's whole period: steps, PublicTest, saving
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    best_val_macro_f1: float | None = None
    images_per_s: float | None = None  # the last epoch's, training steps alone
    folder: str = ""


@dataclass
class Campaign:
    config: dict
    machine: dict = field(default_factory=dict)
    probes: list = field(default_factory=list)
    budget: dict = field(default_factory=dict)
    teachers: list = field(default_factory=list)
    student: dict = field(default_factory=dict)
    wall_s: float = 0.0


def warmup_epochs(epochs: int) -> int:
    """Run 10 warmed up for 5 of 250 epochs; a short schedule keeps that share, at least one epoch."""
    return max(1, min(5, round(epochs / 50)))


def fer_train_command(cfg: CampaignConfig, *, config: str, out: Path, epochs: int, seed: int,
                      teachers: list[Path] = ()) -> list[str]:
    command = [sys.executable, "-m", "fer_engine.train.cli_train", *RECIPE, "--from-config", config,
               "--data", cfg.data, "--out", str(out), "--epochs", str(epochs), "--seed", str(seed),
               "--warmup-epochs", str(warmup_epochs(epochs)), "--device", cfg.device, "--amp", cfg.amp,
               "--threads", str(cfg.threads), "--workers", str(cfg.workers), "--batch-size", str(cfg.batch_size),
               "--lr", f"{cfg.lr:g}"]
    if cfg.limit:
        command += ["--limit", str(cfg.limit)]
    if teachers:
        command += [arg for t in teachers for arg in ("--teacher", str(t))] + list(STUDENT_EXTRA)
        if cfg.mixup:
            command += ["--mixup", f"{cfg.mixup:g}"]
    return command


def run_side_by_side(commands: dict[str, list[str]], logs: Path) -> dict[str, float]:
    """Start every command at once, wait for all; each one's output goes to ``logs/<name>.log``. A failed
    run stops the campaign with the end of its log."""
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    running = {}
    for name, command in commands.items():
        log = open(logs / f"{name}.log", "w")
        log.write(" ".join(command) + "\n")
        log.flush()
        running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    walls = {}
    for name, (process, log) in running.items():
        code = process.wait()
        log.close()
        walls[name] = time.perf_counter() - started
        if code != 0:
            for other, _ in running.values():
                other.kill()
            tail = (logs / f"{name}.log").read_text(errors="replace")[-1500:]
            raise FerError(f"{name} failed (exit {code}); the end of {logs / (name + '.log')}:\n{tail}")
    return walls


def read_result(name: str, out: Path, wall_s: float) -> RunResult:
    metrics = json.loads((out / "last" / "metrics.json").read_text())
    history = metrics.get("history") or [{}]
    best = metrics.get("best") or {}
    last = history[-1]
    period = (last["session_s"] - history[-2]["session_s"] if len(history) > 1 and "session_s" in last
              else last.get("epoch_time_s", math.nan))
    return RunResult(name=name, epochs=len(history), wall_s=round(wall_s, 1), epoch_s=round(period, 3),
                     best_epoch=best.get("epoch"), best_val_accuracy=best.get("val_accuracy"),
                     best_val_macro_f1=best.get("val_macro_f1"), images_per_s=history[-1].get("images_per_s"),
                     folder=str(out))


def plan_epochs(seconds: float, probe: RunResult, probe_epochs: int, minimum: int, what: str) -> int:
    """Whole epochs that fit ``seconds`` at the probe's pace; the probe's time beyond its epochs is the
    run's fixed cost (start, data, finish)."""
    fixed = max(0.0, probe.wall_s - probe.epoch_s * probe_epochs)
    epochs = int((seconds - fixed) // max(probe.epoch_s, 1e-6))
    if epochs < minimum:
        raise FerError(f"{what}: {seconds:.0f} s leave {max(epochs, 0)} epochs at {probe.epoch_s:.1f} s an epoch "
                       f"(+{fixed:.0f} s to start and finish), under --min-epochs {minimum}: give more --minutes, "
                       "fewer --teachers or a smaller --teacher-config")
    return epochs


def run_campaign(cfg: CampaignConfig, say=print) -> Campaign:
    cfg.check()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from .trainer import machine_info, resolve_device

    report = Campaign(config=asdict(cfg), machine=machine_info(resolve_device(cfg.device)))
    teachers_text = (f"{len(cfg.teacher)} given teacher(s)" if cfg.teacher
                     else f"{cfg.teachers} teacher(s) ({Path(cfg.teacher_config).name}) trained")
    say(f"campaign: {cfg.minutes:g} min on {report.machine.get('gpu', 'the CPU')}: {teachers_text}, then the "
        f"student ({Path(cfg.student_config).name})")

    def save() -> None:
        report.wall_s = round(time.perf_counter() - started, 1)
        (out / "campaign.json").write_text(json.dumps(asdict(report), indent=2))

    from .data import check_data_path, load_fer2013

    data = load_fer2013(check_data_path(cfg.data))  # parsed once here, so that each run loads the cache
    say(f"data: {data.summary()}" + (" [cache]" if data.from_cache else ""))
    del data
    probe_dir = out / "probe"
    given = [Path(t) for t in cfg.teacher]
    teacher_names = [] if given else [f"teacher-{k}" for k in range(cfg.teachers)]

    def teacher_commands(root: Path, epochs: int) -> dict[str, list[str]]:
        return {name: fer_train_command(cfg, config=cfg.teacher_config, out=root / name, epochs=epochs, seed=k)
                for k, name in enumerate(teacher_names)}

    if teacher_names:
        walls = run_side_by_side(teacher_commands(probe_dir, cfg.probe_epochs), out / "logs" / "probe")
        teacher_probe = max((read_result(n, probe_dir / n, walls[n]) for n in teacher_names), key=lambda r: r.wall_s)
        report.probes.append(asdict(teacher_probe))
    probe_teachers = given or [probe_dir / n / "best" for n in teacher_names]
    walls = run_side_by_side({"student": fer_train_command(cfg, config=cfg.student_config, out=probe_dir / "student",
                                                           epochs=cfg.probe_epochs, seed=0, teachers=probe_teachers)},
                             out / "logs" / "probe")
    student_probe = read_result("student", probe_dir / "student", walls["student"])
    report.probes.append(asdict(student_probe))
    say("probes: " + (f"teachers {teacher_probe.epoch_s:.1f} s an epoch side by side, " if teacher_names else "")
        + f"student {student_probe.epoch_s:.1f} s an epoch with {len(probe_teachers)} teacher(s) online")

    left = cfg.minutes * 60 - (time.perf_counter() - started)
    share = cfg.teacher_share if teacher_names else 0.0
    teacher_epochs = (plan_epochs(left * share, teacher_probe, cfg.probe_epochs, cfg.min_epochs, "teachers")
                      if teacher_names else 0)
    student_epochs = plan_epochs(left * (1 - share), student_probe, cfg.probe_epochs, cfg.min_epochs, "student")
    report.budget = {"seconds_left_after_probes": round(left, 1), "teacher_epochs": teacher_epochs,
                     "student_epochs": student_epochs}
    shutil.rmtree(probe_dir, ignore_errors=True)
    save()
    say(f"budget: {left:.0f} s left: " + (f"teachers {teacher_epochs} epochs, " if teacher_names else "")
        + f"student {student_epochs} epochs")

    if teacher_names:
        walls = run_side_by_side(teacher_commands(out, teacher_epochs), out / "logs")
        report.teachers = [asdict(read_result(n, out / n, walls[n])) for n in teacher_names]
        save()
        for t in report.teachers:
            say(f"{t['name']}: PublicTest {t['best_val_accuracy'] * 100:.2f} % (epoch {t['best_epoch']}), "
                f"{t['wall_s']:.0f} s")
    else:
        report.teachers = [{"name": str(t), "given": True} for t in given]
    teachers = given or [out / n / "best" for n in teacher_names]

    walls = run_side_by_side({"student": fer_train_command(cfg, config=cfg.student_config, out=out / "student-run",
                                                           epochs=student_epochs, seed=0, teachers=teachers)},
                             out / "logs")
    student = read_result("student", out / "student-run", walls["student"])
    report.student = asdict(student)
    shutil.copytree(out / "student-run" / "best", out / "student", dirs_exist_ok=True)
    save()
    say(f"student: PublicTest {student.best_val_accuracy * 100:.2f} % (epoch {student.best_epoch}) in "
        f"{student.wall_s:.0f} s; checkpoint {out / 'student'}; campaign {report.wall_s:.0f} s in all")
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    d = CampaignConfig("", "")
    p.add_argument("--data", required=True, help="FER2013 as fer-train reads it (Training and PublicTest are enough)")
    p.add_argument("--out", required=True, help="folder for the runs, campaign.json and student/")
    p.add_argument("--minutes", type=positive_float, default=d.minutes, help="the whole campaign's time (default %(default)s)")
    p.add_argument("--teachers", type=positive_int, default=d.teachers, help="teachers trained side by side (default %(default)s)")
    p.add_argument("--teacher", action="append", default=[], metavar="DIR",
                   help="a trained teacher checkpoint (repeat): no teacher is trained, the student gets all the time")
    p.add_argument("--teacher-config", default=d.teacher_config, help="CNNConfig JSON of the teachers (default: configs/cnn-teacher.json)")
    p.add_argument("--student-config", default=d.student_config, help="CNNConfig JSON of the student (default: configs/cnn-sgd.json, the default model's)")
    p.add_argument("--teacher-share", type=positive_float, default=d.teacher_share, help="share of the time for the teachers (default %(default)s)")
    p.add_argument("--probe-epochs", type=positive_int, default=d.probe_epochs, help="epochs of each probe (default %(default)s)")
    p.add_argument("--min-epochs", type=positive_int, default=d.min_epochs, help="refuse schedules shorter than this (default %(default)s)")
    p.add_argument("--device", default=d.device, choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--amp", default=d.amp, choices=("auto", "bf16", "fp16", "off"), help="default: auto")
    p.add_argument("--threads", type=positive_int, default=d.threads, help="torch CPU threads per run (default %(default)s)")
    p.add_argument("--workers", type=non_negative_int, default=d.workers, help="batch-preparing threads per run (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="every run's batch (default %(default)s)")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="every run's peak SGD rate (default %(default)s)")
    p.add_argument("--mixup", type=non_negative_float, default=d.mixup, help="the student's mixup ALPHA, 0 for none (default %(default)s)")
    p.add_argument("--limit", type=positive_int, help="faces per split (smoke runs)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = CampaignConfig(**vars(args))
    return run_cli(lambda: (run_campaign(cfg), 0)[1], PROG)


if __name__ == "__main__":
    sys.exit(main())
