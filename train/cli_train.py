"""``fer-train``: train an emotion classifier on FER2013 (Training), selecting on PublicTest."""

from __future__ import annotations

import argparse
import signal
import sys

from fer_engine.cli import (add_verbose, non_negative_float, non_negative_int, positive_float, positive_int, run_cli,
                            share, unit_interval)
from fer_engine.signals import StopSignalScope



DEFAULTS_NOTE = "(default: the model's own; see --list-models)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-train", description=__doc__,
        epilog="Example: fer-train --model cnn --data fer2013.csv.gz --out runs/cnn")
    p.add_argument("--model", default="cnn", help="model name: cnn, vit, convnext, convnextv2 (default: cnn)")
    p.add_argument("--data", help="Kaggle fer2013.csv(.gz) or an image-folder root <root>/<split>/<emotion>/*.png")
    p.add_argument("--out", help="output folder (default: runs/MODEL); best/ and last/ go inside")
    p.add_argument("--epochs", type=positive_int, help=f"epochs {DEFAULTS_NOTE}")
    p.add_argument("--batch-size", type=positive_int, help=f"batch size {DEFAULTS_NOTE}")
    p.add_argument("--lr", type=positive_float, help=f"peak learning rate {DEFAULTS_NOTE}")
    p.add_argument("--weight-decay", type=non_negative_float, help=f"weight decay {DEFAULTS_NOTE}")
    p.add_argument("--label-smoothing", type=unit_interval, help=f"label smoothing {DEFAULTS_NOTE}")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], help=f"optimizer {DEFAULTS_NOTE}")
    p.add_argument("--warmup-epochs", type=non_negative_float, help=f"linear warm-up before the cosine decay {DEFAULTS_NOTE}")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same run (default: 0)")
    p.add_argument("--workers", type=non_negative_int, default=0, help="background threads preparing batches (default: 0)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="mixed precision: auto = bf16 on CPUs that have it, fp16 on CUDA (default: auto)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR (its last/ folder)")
    p.add_argument("--limit", type=positive_int, help="use only the first N faces of each split (smoke runs)")
    p.add_argument("--pretrained", metavar="ID_OR_DIR",
                   help="start from these weights: a Hugging Face hub id or a local folder (default for vit/convnext/"
                        "convnextv2: the model's hub id); for cnn, a fer-engine checkpoint folder")
    p.add_argument("--new-head", action="store_true",
                   help="with --pretrained: give the model a new 7-label head even if it already classifies emotions "
                        "(by default an emotion model's head is kept and its labels mapped onto ours)")
    p.add_argument("--from-config", nargs="?", const="full", metavar="full|tiny|JSON",
                   help="build an untrained model from its config: full size (default), tiny (tests) or a JSON file")
    p.add_argument("--average-last", type=non_negative_int, default=0, metavar="N",
                   help="also try the average of the last N epochs' weights; kept if PublicTest prefers it")
    p.add_argument("--tune-bias", action="store_true",
                   help="after training, fit a per-class logit bias on PublicTest for macro-F1 (kept if it gains)")
    p.add_argument("--augment", default="strong", choices=["strong", "light", "flip"],
                   help="augmentation preset: strong (flip, rotation 15, scale, shift, jitter, erasing 0.5), light "
                        "(milder warps, erasing 0.25) or flip only (default: strong)")
    p.add_argument("--ema", type=unit_interval, default=0.0, metavar="DECAY",
                   help="also keep an exponential moving average of the weights (e.g. 0.999); each epoch PublicTest "
                        "judges both and the better is kept as best (default: 0, none)")
    p.add_argument("--teacher", action="append", default=[], metavar="DIR",
                   help="distil from this checkpoint folder (repeat for an ensemble): the teachers' probabilities on "
                        "fixed augmented views of each Training face are computed once, then each step mixes the "
                        "label's loss with theirs")
    p.add_argument("--teacher-views", type=positive_int, default=24, metavar="K",
                   help="fixed augmented views per Training face for the teachers (default: 24)")
    p.add_argument("--distill-weight", type=share, default=0.5, metavar="W",
                   help="share of the distillation term in the loss (default: 0.5)")
    p.add_argument("--distill-temperature", type=positive_float, default=2.0, metavar="T",
                   help="softening temperature of teacher and student (default: 2)")
    p.add_argument("--distill-target", choices=["view", "mean", "online"], default="view",
                   help="view: the teachers' probabilities on the view the student sees; mean: their average over all "
                        "the face's views, teaching one answer however the face is framed; online: the teachers run "
                        "in every step on the student's own batch, fresh augmentation and mixup included (a teacher's "
                        "forward pass per step; --teacher-views unused) (default: view)")
    p.add_argument("--consistency", type=non_negative_float, default=0.0, metavar="W",
                   help="add W times the divergence between the predictions for each view and for a copy moved by a "
                        "pixel or two, as a detector's box moves between frames: fewer labels that flip under such a shift "
                        "(train/consistency.py; costs a second forward pass; default: 0, off)")
    p.add_argument("--mixup", type=non_negative_float, default=0.0, metavar="ALPHA",
                   help="blend each view with another face of its batch, weight ~ Beta(ALPHA, ALPHA), and ask for the "
                        "same blend of their labels (train/mixup.py; e.g. 0.2; default: 0, off)")
    p.add_argument("--max-minutes", type=positive_float, metavar="M",
                   help="stop cleanly at the end of the last epoch that fits in M minutes (judged by the epochs so far), "
                        "state saved for --resume; the schedule stays the one of --epochs")
    p.add_argument("--compact-state", metavar="DIR",
                   help="when the run stops or ends, also write a small copy of its resumable state to DIR (fp16 "
                        "weights and EMA, no optimizer buffers: a few MB to commit between machines)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images, counting them")
    p.add_argument("--no-test", action="store_true", help="do not evaluate PrivateTest after training")
    p.add_argument("--list-models", action="store_true", help="list the registered models and exit")
    add_verbose(p)
    return p


class StopTraining(StopSignalScope):
    """The first signal asks the trainer to stop after its current step and save its state; a second one
    stops at once, as the default handler would."""

    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer

    def _handle(self, number: int, frame) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received.append(number)
        name = signal.Signals(number).name
        self.trainer.request_stop(name)
        print(f"\nfer-train: {name}: stopping after this step and saving the state "
              f"(again to stop at once, losing this epoch)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from fer_engine.errors import FerError

        from .models import get_family, list_models
        from .trainer import TrainConfig, Trainer

        if args.list_models:
            for name in list_models():
                family = get_family(name)
                d = family.defaults
                how = (f"assembled, not trained: {family.assembled_by}" if family.assembled_by else
                       f"defaults: {d.epochs} epochs, batch {d.batch_size}, {d.optimizer} lr {d.lr:g}, "
                       f"weight decay {d.weight_decay:g}")
                print(f"{name:<13} {family.description}\n{'':<13} {how}")
            return 0
        if not args.data and not args.resume:
            raise FerError("--data is required: the Kaggle fer2013.csv(.gz) or an image-folder root")
        get_family(args.model)
        cfg = TrainConfig(
            model=args.model, data=args.data or "", out=args.out, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
            optimizer=args.optimizer, warmup_epochs=args.warmup_epochs, seed=args.seed, workers=args.workers,
            amp=args.amp, device=args.device, threads=args.threads, limit=args.limit,
            pretrained=args.pretrained, from_config=args.from_config, skip_bad_rows=args.skip_bad_rows,
            final_test=not args.no_test, average_last=args.average_last,
            tune_bias=args.tune_bias, augment=args.augment, ema=args.ema,
            new_head=args.new_head, teachers=args.teacher, teacher_views=args.teacher_views,
            distill_weight=args.distill_weight, distill_temperature=args.distill_temperature,
            distill_target=args.distill_target, consistency=args.consistency, mixup=args.mixup)
        trainer = Trainer(cfg, resume=args.resume)
        with StopTraining(trainer) as signals:
            result = trainer.run(max_minutes=args.max_minutes)
            if args.compact_state:  # in the scope: a first signal now waits for the copy instead of killing it
                from pathlib import Path

                from .state import compact_state

                folder = compact_state(trainer.out / "last", Path(args.compact_state))
                print(f"compact state: {folder}")
        if "stopped" in result:
            return 128 + signals.received[0] if signals.received else 0
        print(f"checkpoint: {trainer.out / 'best'}")
        return 0

    return run_cli(body, "fer-train", verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
