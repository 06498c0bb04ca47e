"""Every fer-eval, fer-export and fer-bench command of the README runs as written.

Each is parsed by its own command's parser; the cheap ones also run, in a folder laid out as the README
assumes (fer2013.csv.gz, checkpoints/, runtime/models/, ./vit-base), with a small FER2013-like CSV, and with
tiny configs or shorter timings where the README's command builds full-size models or times for minutes. The
first test fails when the README gains or changes such a command, so that this list follows it.
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest

from conftest import FER2013, REPO, needs_fer2013, write_csv

PROGRAMS = {"fer-eval": "fer_engine.train.cli_eval", "fer-export": "fer_engine.export.cli_export",
            "fer-bench": "fer_engine.benchmarks.cli_bench"}
TINY_BENCH = ["--tiny", "--duration", "0.02", "--batch-sizes", "1"]

# README command -> how this test runs it: None (parsed only, with why), or (replacements, extra arguments).
COMMANDS = {
    "fer-eval checkpoints/cnn --data ../shared/data/fer2013/fer2013.csv.gz --split PrivateTest": ([], []),
    "fer-eval checkpoints/cnn --data fer2013.csv.gz --split PrivateTest --json eval.json": ([], []),
    "fer-eval checkpoints/cnn --data fer2013.csv.gz --split PublicTest --tta": ([], []),
    "fer-eval runtime/models/cnn-int8.onnx --data fer2013.csv.gz --split PrivateTest": ([], []),
    "fer-eval triton://localhost:8001/cnn_int8 --data fer2013.csv.gz --split PrivateTest": None,  # needs a server
    "fer-eval runs/pilot-mean/best --data fer2013.csv.gz --split PrivateTest": None,  # the fer-train runs before it
    "fer-export --model cnn --checkpoint checkpoints/cnn --int8 --fp16 --calibration-data fer2013.csv.gz --out exports/cnn":
        "real data",  # verified on all of PublicTest, as written
    "fer-export --model vit --pretrained ./vit-base --int8 --calibration-data fer2013.csv.gz": ([], []),
    "fer-export --model convnext --from-config --int8 --calibration-data fer2013.csv.gz --verify-size 256":
        ([("--from-config", "--from-config tiny")], []),
    "fer-export --model cnn --int8 --tensorrt --max-batch 32 --calibration-data fer2013.csv.gz": "tensorrt",
    "python -m fer_engine.train.ensemble --member training-state/teachers/cnn-sgd-run10 --member "
    "training-state/cnn-adamw250-best --member training-state/teachers/cnn-large-run14 --out checkpoints/cnn-ensemble":
        None,  # rebuilds the shipped checkpoint; tests/test_ensemble.py runs the same command on tiny members
    "fer-eval checkpoints/cnn-ensemble --data fer2013.csv.gz --split PrivateTest": ([], []),
    "fer-export --model cnn-ensemble --checkpoint checkpoints/cnn-ensemble --int8 --calibration-data fer2013.csv.gz "
    "--out exports/cnn-ensemble": ([], ["--no-verify"]),  # verified on all of PublicTest when shipped (its report)
    "fer-bench --quick": ([], []),
    "fer-bench --all-models --data fer2013.csv.gz --json bench.json --csv bench.csv --png bench.png": ([], TINY_BENCH),
    "fer-bench --models cnn --checkpoint cnn=checkpoints/cnn --backends onnx-int8-cpu --batch-sizes 1,64 --data fer2013.csv.gz":
        ([], ["--duration", "0.05"]),
    "fer-bench --pipeline --data fer2013.csv.gz": ([], ["--quick"]),
    "fer-bench --peers --data fer2013.csv.gz": ([], []),
    "python -m fer_engine.benchmarks.gpu_check --data fer2013.csv.gz --out gpu-check": None,  # a GPU machine's check
    # Bringing in other emotion models: the hub, or a real fine-tune downloaded from it (a tiny random one
    # would not pass the trained thresholds of fer-export's verification).
    "fer-export --model vit --int8": None,
    "fer-eval --model vit --data fer2013.csv.gz": None,
    "fer-eval --model vit --pretrained ./vit-fer --data fer2013.csv.gz --split PrivateTest": ([], []),
    "fer-export --model vit --pretrained ./vit-fer --int8 --out exports/vit": None,
}
RUN = [c for c, how in COMMANDS.items() if isinstance(how, tuple)]


def readme_commands() -> list[str]:
    """The command lines of the README's bash blocks that run fer-eval, fer-export, fer-bench or a fer_engine module."""
    commands, in_bash, pending = [], False, ""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_bash = line.strip() == "```bash"
            continue
        if in_bash and line.endswith("\\"):  # a command continued on the next line
            pending += line[:-1]
            continue
        line, pending = pending + line, ""
        for part in line.split("&&") if in_bash else []:
            words = shlex.split(part, comments=True)
            if words and (words[0] in PROGRAMS or words[:3] and words[:2] == ["python", "-m"]
                          and words[2].startswith("fer_engine.")):
                commands.append(" ".join(words))
    return commands


def parser_of(words: list[str]):
    module = PROGRAMS.get(words[0]) or words[2]
    return importlib.import_module(module).build_parser(), words[1:] if words[0] in PROGRAMS else words[3:]


def test_this_list_follows_the_readme():
    assert sorted(readme_commands()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_readme_command_parses(command):
    parser, argv = parser_of(shlex.split(command))
    parser.parse_args(argv)


@pytest.fixture
def readme_folder(tmp_path, monkeypatch):
    """A folder laid out as the README's commands expect, and the working directory of the test."""
    data = write_csv(tmp_path / "fer2013.csv.gz", n=140)
    shared = tmp_path.parent / "shared" / "data" / "fer2013"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "fer2013.csv.gz").write_bytes(data.read_bytes())
    (tmp_path / "checkpoints").symlink_to(REPO / "checkpoints")
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "models").symlink_to(REPO / "runtime" / "models")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_command(command: str, replacements=(), extra=()) -> int:
    for old, new in replacements:
        command = command.replace(old, new)
    words = shlex.split(command)
    module = importlib.import_module(PROGRAMS[words[0]])
    return module.main(words[1:] + list(extra))


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN)
def test_cheap_readme_commands_run(command, readme_folder):
    for folder in ("vit-base", "vit-fer"):  # a local Hugging Face folder (tiny; its labels are the emotions)
        if f"./{folder}" in command:
            from fer_engine.train.models import create_model

            import torch

            with torch.random.fork_rng():  # the same tiny weights whatever ran before: int8 verification judges them
                torch.manual_seed(0)
                create_model("vit", from_config="tiny").module.hf.save_pretrained(str(readme_folder / folder))
    replacements, extra = COMMANDS[command]
    assert run_command(command, replacements, extra) == 0
    if "--json eval.json" in command:
        assert (readme_folder / "eval.json").is_file() and (readme_folder / "eval.png").is_file()
    if "--all-models" in command:
        assert all((readme_folder / f"bench.{s}").is_file() for s in ("json", "csv", "png"))


@pytest.mark.slow
def test_tensorrt_export_runs_or_says_what_is_missing_before_writing(readme_folder, capsys):
    import importlib.util

    command = next(c for c, how in COMMANDS.items() if how == "tensorrt")
    code = run_command(command)
    if importlib.util.find_spec("tensorrt") is None:
        assert code == 2 and "TensorRT is not installed" in capsys.readouterr().err
        assert not (readme_folder / "exports").exists()


@pytest.mark.slow
@needs_fer2013
def test_cnn_export_passes_its_verification_on_fer2013(readme_folder):
    (readme_folder / "fer2013.csv.gz").unlink()
    (readme_folder / "fer2013.csv.gz").symlink_to(FER2013)
    command = next(c for c, how in COMMANDS.items() if how == "real data")
    assert run_command(command) == 0
    assert sorted(p.name for p in (readme_folder / "exports" / "cnn").iterdir()) == [
        "cnn-fp16.onnx", "cnn-int8.onnx", "cnn.onnx", "export_report.json"]
