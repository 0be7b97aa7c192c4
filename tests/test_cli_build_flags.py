"""`edge-infer build` as a new user types it: typos in shape names, trtexec's spellings,
dims written with commas, a calibration cache without --int8 (issue 17 §17)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import edge_infer.engine as api
from edge_infer.errors import BuildError
from tests.test_cli import cli, error_line, ok, tiny_model


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flags")
    onnx.save(tiny_model(), root / "tiny.onnx")
    (root / "c.cache").write_text("not read: the flags are refused first\n")
    return root


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--shapes", "images:2x3x16x16"],
            "shapes (--shapes) 'images': not an input of the model; its inputs: x ['N', 3, 16, 16]",
        ),
        (
            [
                "--min-shapes",
                "X:1x3x16x16",
                "--opt-shapes",
                "X:2x3x16x16",
                "--max-shapes",
                "X:4x3x16x16",
            ],
            "min_shapes (--min-shapes) 'X', opt_shapes "
            "(--opt-shapes) 'X', max_shapes (--max-shapes) 'X': not an input",
        ),
        (
            ["--shapes", "x:1,3,16,16"],
            "dims are separated by 'x' (commas separate inputs): write x:1x3x16x16",
        ),
        (["--calib-cache", "c.cache"], "--calib-cache is for INT8 engines: add --int8"),
        ([], "no output: give -o OUT.engine (or --saveEngine OUT.engine)"),
    ],
    ids=["typo", "typo-min", "commas", "calib-without-int8", "no-output"],
)
def test_mistakes_are_one_line_errors(work: Path, flags: list[str], expected: str) -> None:
    args = ["build", "tiny.onnx", *flags]
    if "no output" not in expected:
        args += ["-o", "t.engine"]
    line = error_line(cli(*args, cwd=work), "build")
    assert expected in line, line
    assert not (work / "t.engine").exists()


def test_trtexec_spellings_build_the_same_engine(work: Path) -> None:
    ok(
        cli(
            "build",
            "--onnx",
            "tiny.onnx",
            "--saveEngine",
            "trt.engine",
            "--minShapes",
            "x:1x3x16x16",
            "--optShapes",
            "x:2x3x16x16",
            "--maxShapes",
            "x:4x3x16x16",
            "--timingCacheFile",
            "timing.json",
            "--no-tune",
            "--quiet",
            cwd=work,
        )
    )
    engine = api.Engine.load(work / "trt.engine")
    assert min(engine.batch_sizes) == 1 and max(engine.batch_sizes) == 4
    line = error_line(
        cli("build", "tiny.onnx", "--onnx", "other.onnx", "-o", "t.engine", cwd=work), "build"
    )
    assert "two models given" in line


def test_python_api_refuses_unknown_shape_names(work: Path) -> None:
    with pytest.raises(BuildError, match=r"'imgs': not an input of the model; its inputs: x"):
        api.build(
            str(work / "tiny.onnx"),
            options=api.BuildOptions(shapes={"imgs": (1, 3, 16, 16)}, tune=False),
        )
