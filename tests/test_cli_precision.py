"""`edge-infer calibrate`, `build --fp16/--int8`, `compare`: the field engineer's workflow."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edge_infer.cli import main
from tests.engine.precision.conftest import conv_net


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_precision")
    onnx.save(conv_net(), root / "net.onnx")
    onnx.save(conv_net(seed=4), root / "other.onnx")
    (root / "frames").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(
            str(root / "frames" / f"{i}.jpg"), (rng.random((24, 40, 3)) * 255).astype(np.uint8)
        )
    (root / "frames" / "broken.jpg").write_bytes(b"junk")
    assert (
        main(
            [
                "calibrate",
                str(root / "net.onnx"),
                "--data",
                str(root / "frames"),
                "-o",
                str(root / "net.calib"),
                "--frames",
                "6",
                "--quiet",
            ]
        )
        == 0
    )
    return root


def test_calibrate_writes_cache_and_summary(work: Path, capsys: pytest.CaptureFixture) -> None:
    out = work / "minmax.calib"
    code = main(
        [
            "calibrate",
            str(work / "net.onnx"),
            "--data",
            str(work / "frames"),
            "-o",
            str(out),
            "--calibrator",
            "minmax",
            "--frames",
            "3",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "tensor" in text and "wrote" in text and "minmax calibrator" in text
    assert out.read_text().startswith("# edge_infer calibration cache")
    assert "calibrator: entropy" in (work / "net.calib").read_text()


def test_build_int8_fp16_and_compare(work: Path, capsys: pytest.CaptureFixture) -> None:
    for args in (
        ["--no-tune"],
        ["--fp16", "--no-tune"],
        ["--int8", "--calib-cache", str(work / "net.calib"), "--no-tune"],
        [
            "--int8",
            "--fp16",
            "--calib-cache",
            str(work / "net.calib"),
            "--no-tune",
            "--layer-precision",
            "conv3:fp32",
        ],
    ):
        name = "_".join(a.strip("-") for a in args[:2] if a.startswith("--"))
        assert (
            main(
                [
                    "build",
                    str(work / "net.onnx"),
                    "-o",
                    str(work / f"{name}.engine"),
                    "--quiet",
                    *args,
                ]
            )
            == 0
        )
    capsys.readouterr()
    engines = [
        str(work / f)
        for f in (
            "no-tune.engine",
            "fp16_no-tune.engine",
            "int8_calib-cache.engine",
            "int8_fp16.engine",
        )
    ]
    assert main(["compare", str(work / "net.onnx"), *engines, "--frames", "2"]) == 0
    text = capsys.readouterr().out
    assert "cosine" in text and "(int8)" in text and "(fp16)" in text
    assert main(["compare", engines[0], engines[2], "--per-layer", "--frames", "1"]) == 0
    text = capsys.readouterr().out
    assert "[int8]" in text and "lowest cosine" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--int8"], "needs --calib-cache"),
        (["--int8", "--calib-cache", "{work}/missing.calib"], "no such file"),
        (
            ["--int8", "--calib-cache", "{work}/corrupt.calib"],
            "not an edge_infer calibration cache",
        ),
        (["--max-map-drop", "0.01"], "needs --int8 and --dataset"),
        (["--layer-precision", "conv1=fp32"], "must be NAME:PREC"),
        (["--int8-layers", "faster"], "--int8-layers faster is for INT8 engines"),
        (
            [
                *("--int8", "--calib-cache", "{work}/net.calib", "--int8-layers", "faster"),
                *("--max-map-drop", "0.01", "--dataset", "{work}/val.json"),
            ],
            "give one of them",
        ),
    ],
)
def test_build_precision_errors(
    work: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    (work / "corrupt.calib").write_text("scale table\n")
    args = [a.replace("{work}", str(work)) for a in args]
    code = main(["build", str(work / "net.onnx"), "-o", str(work / "e.engine"), "--quiet", *args])
    assert code == 1 and message in capsys.readouterr().err


def test_build_int8_layers_faster(work: Path, capsys: pytest.CaptureFixture) -> None:
    """INT8 kept only where it ran faster here: whatever the timings, the engine is written,
    loads, and its build record's overrides name exactly the layers it reports in FP32."""
    from edge_infer.engine import Engine

    out = work / "faster.engine"
    calib = ["--int8", "--calib-cache", str(work / "net.calib"), "--no-tune"]
    code = main(
        ["build", str(work / "net.onnx"), "-o", str(out), *calib, "--int8-layers", "faster"]
    )
    text = capsys.readouterr().out
    assert code == 0 and "INT8 layers slower than FP32 here:" in text
    line = next(t for t in text.splitlines() if t.startswith("layers kept in FP32"))
    named = line.split(": ", 1)[1]
    engine = Engine.load(str(out))
    overrides = engine.build_record["options"]["layer_precision"]
    assert sorted(overrides) == ([] if named == "none" else sorted(named.split(", ")))
    assert set(overrides.values()) <= {"fp32"}
    y = engine.create_context().execute(engine.random_feeds())["y"]
    assert np.isfinite(y).all()


def test_cache_for_another_model_refused(work: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "build",
            str(work / "other.onnx"),
            "-o",
            str(work / "o.engine"),
            "--quiet",
            "--int8",
            "--calib-cache",
            str(work / "net.calib"),
        ]
    )
    assert code == 1 and "made for another model" in capsys.readouterr().err


def test_calibrate_bad_data(work: Path, capsys: pytest.CaptureFixture) -> None:
    empty = work / "nothing"
    empty.mkdir(exist_ok=True)
    (empty / "a.png").write_bytes(b"junk")
    code = main(
        [
            "calibrate",
            str(work / "net.onnx"),
            "--data",
            str(empty),
            "-o",
            str(work / "x.calib"),
            "--quiet",
        ]
    )
    assert code == 1 and "no readable frame" in capsys.readouterr().err
    assert not (work / "x.calib").exists()


def test_build_record_names_the_cache(work: Path) -> None:
    from edge_infer.engine.precision.cache import CalibrationCache
    from edge_infer.engine.runtime import Engine

    out = work / "recorded.engine"
    assert (
        main(
            [
                "build",
                str(work / "net.onnx"),
                "-o",
                str(out),
                "--quiet",
                "--no-tune",
                "--int8",
                "--fp16",
                "--calib-cache",
                str(work / "net.calib"),
            ]
        )
        == 0
    )
    rec = Engine.load(out).build_record
    assert rec["options"]["precision"] == "int8" and rec["options"]["int8_fallback"] == "fp16"
    assert rec["options"]["calib_cache_sha256"] == CalibrationCache.load(work / "net.calib").sha256
    assert "--int8" in rec["rebuild_command"] and "--fp16" in rec["rebuild_command"]
    assert f"--calib-cache {work / 'net.calib'}" in rec["rebuild_command"]


def test_dataset_paths_of_compare_and_budget_build(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`compare --dataset` and `build --max-map-drop` run end to end (a tiny detector)."""
    from edge_infer.synth.dataset import write_dataset
    from tests.pipeline.helpers import TINY_SIZE, tiny_detector

    write_dataset(tmp_path, "val", 4, seed=5, size=96, workers=1, progress=False)
    onnx.save(tiny_detector(), tmp_path / "det.onnx")
    shape = f"images:1x3x{TINY_SIZE}x{TINY_SIZE}"
    profile = [
        "--min-shapes",
        shape,
        "--opt-shapes",
        shape.replace(":1x", ":2x"),
        "--max-shapes",
        shape.replace(":1x", ":2x"),
        "--no-tune",
        "--quiet",
    ]
    frames = tmp_path / "val"
    assert (
        main(
            [
                "calibrate",
                str(tmp_path / "det.onnx"),
                "--data",
                str(frames),
                "-o",
                str(tmp_path / "det.calib"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(["build", str(tmp_path / "det.onnx"), "-o", str(tmp_path / "fp32.engine"), *profile])
        == 0
    )
    assert (
        main(
            [
                "build",
                str(tmp_path / "det.onnx"),
                "-o",
                str(tmp_path / "int8.engine"),
                "--int8",
                "--calib-cache",
                str(tmp_path / "det.calib"),
                "--max-map-drop",
                "0.01",
                "--dataset",
                str(tmp_path / "val.json"),
                *profile,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "layers kept in FP32" in out and "mAP@0.5: FP32" in out
    assert (
        main(
            [
                "compare",
                str(tmp_path / "fp32.engine"),
                str(tmp_path / "int8.engine"),
                "--dataset",
                str(tmp_path / "val.json"),
                "--batch",
                "2",
                "--frames",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("mAP@0.5 ") == 2
