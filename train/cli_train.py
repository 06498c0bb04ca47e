"""``fer-train``: train an emotion classifier on FER2013 (Training), selecting on PublicTest."""

from __future__ import annotations

import argparse
import sys

from fer_engine.cli import run_cli

DEFAULTS_NOTE = "(default: the model's own; see --list-models)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-train", description=__doc__,
        epilog="Example: fer-train --model cnn --data fer2013.csv.gz --out runs/cnn")
    p.add_argument("--model", default="cnn", help="model name: cnn, vit, convnext, convnextv2 (default: cnn)")
    p.add_argument("--data", help="Kaggle fer2013.csv(.gz) or an image-folder root <root>/<split>/<emotion>/*.png")
    p.add_argument("--out", help="output folder (default: runs/MODEL); best/ and last/ go inside")
    p.add_argument("--epochs", type=int, help=f"epochs {DEFAULTS_NOTE}")
    p.add_argument("--batch-size", type=int, help=f"batch size {DEFAULTS_NOTE}")
    p.add_argument("--lr", type=float, help=f"peak learning rate {DEFAULTS_NOTE}")
    p.add_argument("--weight-decay", type=float, help=f"weight decay {DEFAULTS_NOTE}")
    p.add_argument("--label-smoothing", type=float, help=f"label smoothing {DEFAULTS_NOTE}")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], help=f"optimizer {DEFAULTS_NOTE}")
    p.add_argument("--warmup-epochs", type=float, help=f"linear warm-up before the cosine decay {DEFAULTS_NOTE}")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same run (default: 0)")
    p.add_argument("--workers", type=int, default=0, help="background threads preparing batches (default: 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="mixed precision: auto = bf16 on CPUs that have it, fp16 on CUDA (default: auto)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR (its last/ folder)")
    p.add_argument("--limit", type=int, help="use only the first N faces of each split (smoke runs)")
    p.add_argument("--pretrained", metavar="ID_OR_DIR",
                   help="start from these weights: a Hugging Face hub id or a local folder (default for vit/convnext/"
                        "convnextv2: the model's hub id); for cnn, a fer-engine checkpoint folder")
    p.add_argument("--from-config", nargs="?", const="full", metavar="full|tiny|JSON",
                   help="build an untrained model from its config: full size (default), tiny (tests) or a JSON file")
    p.add_argument("--average-last", type=int, default=0, metavar="N",
                   help="also try the average of the last N epochs' weights; kept if PublicTest prefers it")
    p.add_argument("--tune-bias", action="store_true",
                   help="after training, fit a per-class logit bias on PublicTest for macro-F1 (kept if it gains)")
    p.add_argument("--augment", default="strong", choices=["strong", "light", "flip"],
                   help="augmentation preset: strong (flip, rotation 15, scale, shift, jitter, erasing 0.5), light "
                        "(milder warps, erasing 0.25) or flip only (default: strong)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows or images, counting them")
    p.add_argument("--no-test", action="store_true", help="do not evaluate PrivateTest after training")
    p.add_argument("--list-models", action="store_true", help="list the registered models and exit")
    return p


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
                print(f"{name:<11} {family.description}\n{'':<11} defaults: {d.epochs} epochs, batch {d.batch_size}, "
                      f"{d.optimizer} lr {d.lr:g}, weight decay {d.weight_decay:g}")
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
            tune_bias=args.tune_bias, augment=args.augment)
        trainer = Trainer(cfg, resume=args.resume)
        try:
            trainer.run()
        except KeyboardInterrupt:
            return 130
        print(f"checkpoint: {trainer.out / 'best'}")
        return 0

    return run_cli(body, "fer-train")


if __name__ == "__main__":
    sys.exit(main())
