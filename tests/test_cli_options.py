"""Every numeric option of fer-eval, fer-export, fer-bench and the other commands in export/ and benchmarks/ is
checked at parse time, by a type that names the option and the range in argparse's one-line error."""

from __future__ import annotations

import importlib

import pytest

PARSERS = ["fer_engine.train.cli_eval", "fer_engine.export.cli_export", "fer_engine.export.build_engine",
           "fer_engine.benchmarks.cli_bench", "fer_engine.benchmarks.gpu_check", "fer_engine.benchmarks.pipeline",
           "fer_engine.benchmarks.onnx_compare", "fer_engine.benchmarks.export_speed"]


def options(module_name: str):
    parser = importlib.import_module(module_name).build_parser()
    return parser, [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("module_name", PARSERS)
def test_no_option_takes_an_unchecked_number(module_name):
    _, actions = options(module_name)
    for action in actions:
        assert action.type not in (int, float), f"{action.option_strings[0]} takes any {action.type.__name__}"
        number_default = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
        assert not number_default or action.type is not None, f"{action.option_strings[0]} has no type"


def is_numeric(kind) -> bool:
    """One of fer_engine.cli's number types, or a comma-separated list of one."""
    from fer_engine import cli

    kind = getattr(kind, "item_type", kind)
    return kind in (cli.positive_int, cli.non_negative_int, cli.positive_float, cli.non_negative_float,
                    cli.unit_interval) or getattr(kind, "__name__", "").startswith("int ")


@pytest.mark.parametrize("module_name", PARSERS)
def test_every_numeric_option_refuses_a_negative_number_naming_itself(module_name, capsys):
    parser, actions = options(module_name)
    numeric = [a for a in actions if is_numeric(a.type)]
    assert numeric, "no numeric option recognised: is_numeric no longer knows the types"
    for action in numeric:
        option = action.option_strings[0]
        with pytest.raises(SystemExit):
            parser.parse_args([option, "-5"] + (["--data", "x", "x.onnx"] if "onnx_compare" in module_name else []))
        assert f"argument {option}" in capsys.readouterr().err.splitlines()[-1]
