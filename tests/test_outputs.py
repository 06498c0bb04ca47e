"""The shared output-path helper (fer_engine.outputs) and the argparse helpers of fer_engine.cli."""

from __future__ import annotations

import argparse

import pytest

from fer_engine.cli import comma_separated, excerpt, int_between, naming, one_of, positive_int
from fer_engine.errors import FerError
from fer_engine.outputs import check_outputs, write_atomically, write_outputs


def test_good_outputs_pass_and_create_nothing(tmp_path):
    check_outputs(files={"--json": tmp_path / "new" / "a.json", "--csv": tmp_path / "b.csv", "--null": "/dev/null"},
                  folders={"--out": tmp_path / "x" / "y", "--work-dir": tmp_path})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("files, folders, message", [
    ({"--json": "{tmp}"}, {}, "--json {tmp} is a folder: name a file inside it, e.g. {tmp}/out.json"),
    ({"--csv": "{tmp}/sub/"}, {}, "--csv {tmp}/sub/ is a folder"),
    ({"--json": "{tmp}/file/a.json"}, {}, "--json {tmp}/file/a.json: {tmp}/file is a file, so no folder can be made"),
    ({}, {"--out": "{tmp}/file"}, "--out {tmp}/file is a file, not a folder"),
    ({}, {"--out": "{tmp}/file/deeper"}, "{tmp}/file is a file, so no folder can be made there"),
    ({"--json": "/proc/x/a.json"}, {}, "--json /proc/x/a.json: cannot write in /proc ("),
    ({"--json": ""}, {}, "--json is empty"),
    ({"--json": "{tmp}/a.json", "--png": "{tmp}/./a.json"}, {}, "--json and --png both name the file"),
])
def test_bad_outputs_are_named_with_what_to_do(files, folders, message, tmp_path):
    (tmp_path / "file").write_text("")
    fill = lambda mapping: {k: v.format(tmp=tmp_path) for k, v in mapping.items()}  # noqa: E731
    with pytest.raises(FerError) as error:
        check_outputs(files=fill(files), folders=fill(folders))
    assert message.format(tmp=tmp_path) in str(error.value)


def test_write_outputs_writes_the_others_and_names_the_failure(tmp_path):
    def boom(path):
        raise ValueError("cannot draw\nsecond line")

    written = []
    with pytest.raises(FerError) as error:
        write_outputs([("--json", tmp_path / "a" / "r.json", lambda p: p.write_text("{}")),
                       ("--png", tmp_path / "r.png", boom), ("--csv", None, boom),
                       ("--csv2", tmp_path / "r.csv", lambda p: p.write_text("x"))],
                      announce=lambda option, path: written.append(option))
    assert str(error.value) == (f"could not write --png {tmp_path / 'r.png'} (ValueError: cannot draw); "
                                "the other 2 output(s) were written")
    assert written == ["--json", "--csv2"] and (tmp_path / "a" / "r.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "r.csv"]  # no partial file left


def test_a_failed_write_keeps_the_old_file(tmp_path):
    old = tmp_path / "bench.csv"
    old.write_text("old rows")

    def half_then_fail(path):
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomically(old, half_then_fail)
    assert old.read_text() == "old rows" and [p.name for p in tmp_path.iterdir()] == ["bench.csv"]


def test_writers_see_the_final_suffix(tmp_path):
    seen = []
    write_atomically(tmp_path / "b.png", lambda p: seen.append(p.suffix) or p.write_bytes(b"x"))
    assert seen == [".png"]


def test_argparse_types(capsys):
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--sizes", type=comma_separated(positive_int), default="1,8")
    parser.add_argument("--opset", type=int_between(13, 21))
    parser.add_argument("--models", type=comma_separated(one_of(["cnn", "vit"])))
    args = parser.parse_args(["--opset", "17", "--models", "cnn, vit"])
    assert args.sizes == [1, 8] and args.opset == 17 and args.models == ["cnn", "vit"]
    for argv, message in [(["--sizes", "1,0"], "argument --sizes: 0 is out of range"),
                          (["--sizes", ","], "argument --sizes: ',' is empty"),
                          (["--opset", "9"], "argument --opset: 9 is out of range; it must be a whole number from 13 to 21"),
                          (["--models", "cnn,cnnn"], "argument --models: 'cnnn' is not one of cnn, vit. Did you mean 'cnn'?")]:
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert f"p: error: {message}" in capsys.readouterr().err


def test_excerpt_and_naming():
    assert excerpt("short") == "short"
    long = excerpt(" ".join(["128"] * 2304), 20)
    assert long.startswith("128 128 128") and long.endswith("(9,215 characters)") and len(long) < 50
    with pytest.raises(FerError, match=r"^m\.onnx: no metadata$"):
        with naming("m.onnx"):
            raise FerError("no metadata")
    with pytest.raises(FerError, match=r"^cannot read m\.onnx$"):  # named already: left as it is
        with naming("m.onnx"):
            raise FerError("cannot read m.onnx")
