"""The ``edge-infer`` console script, run as a user runs it: in a subprocess.

Covers ``build`` (fixed shapes, a batch profile, a reused timing cache, ``--no-tune``),
``infer`` (random inputs, ``--input`` files, bad specs), ``inspect`` (text and ``--json``),
``bench`` (against onnxruntime, ``--json``), the error paths a user meets (missing, non-ONNX
or unsupported model; corrupt engine; engine from another device), and that
``docs/cli.md`` documents every command and flag the parsers define.

Every error must exit 1 with one line on stderr, ``edge-infer <command>: error: ...``, and no
Python traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.cli import make_parser
from edge_infer.engine.runtime import Engine
from edge_infer.engine.serialize import read_engine, write_engine

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cli.md"

#: the tiny model's input and its profile (batch 1..3, tuned for 2)
X_SHAPE = (3, 16, 16)
PROFILE = (
    "--min-shapes",
    "x:1x3x16x16",
    "--opt-shapes",
    "x:2x3x16x16",
    "--max-shapes",
    "x:3x3x16x16",
)


def tiny_model() -> onnx.ModelProto:
    """x[N,3,16,16] → Conv+BN+Relu → Conv+SiLU → ``features``; → GAP → Gemm → ``logits``.

    Small enough to build in about a second, yet with the fusions ``inspect`` shows
    (three-member layers) and convolutions that have tactics to time.
    """
    rng = np.random.default_rng(0)

    def tensor(name: str, shape: tuple[int, ...], scale: float = 0.3) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    inits = [
        tensor("w1", (8, 3, 3, 3)),
        tensor("b1", (8,)),
        numpy_helper.from_array(np.ones(8, np.float32), "gamma"),
        tensor("beta", (8,)),
        tensor("mean", (8,)),
        numpy_helper.from_array(np.full(8, 0.5, np.float32), "var"),
        tensor("w2", (8, 8, 3, 3), 0.2),
        tensor("fc", (8, 4)),
        tensor("fcb", (4,)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node(
            "BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], name="bn1"
        ),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Sigmoid", ["c2"], ["s2"], name="sigmoid2"),
        helper.make_node("Mul", ["c2", "s2"], ["features"], name="silu2"),
        helper.make_node("GlobalAveragePool", ["features"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *X_SHAPE])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8, 16, 16]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def unsupported_model() -> onnx.ModelProto:
    """Two ops edge_infer cannot run, one standard and one custom: both must be reported."""
    nodes = [
        helper.make_node("Det", ["x"], ["d"], name="det_node"),
        helper.make_node("Frobnicate", ["x"], ["y"], domain="com.acme", name="frob_node"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4])],
        [
            helper.make_tensor_value_info("d", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)]
    )
    model.ir_version = 8
    return model


def cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edge_infer ARGS`` on this tree's package, capturing its output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "edge_infer", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def error_line(
    result: subprocess.CompletedProcess[str], command: str, extra_lines: str | None = None
) -> str:
    """Assert a clean failure and return its message line.

    ``extra_lines`` is a regex every further stderr line must match (for messages that list
    several items, one per line); by default the message is exactly one line.
    """
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    prefix = f"edge-infer {command}: error: "
    assert lines[0].startswith(prefix), result.stderr
    assert len(lines[0]) > len(prefix) + 10, "the message says nothing"
    for line in lines[1:]:
        assert extra_lines is not None and re.fullmatch(extra_lines, line), (
            f"unexpected stderr line {line!r}\n{result.stderr}"
        )
    return lines[0]


def ort_outputs(model_path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"x": x}), strict=True))


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    onnx.save(tiny_model(), root / "tiny.onnx")
    onnx.save(unsupported_model(), root / "unsupported.onnx")
    (root / "junk.onnx").write_text("this is not an ONNX model\n")
    return root


@pytest.fixture(scope="module")
def engine(work: Path) -> Path:
    """The tiny model built over a batch profile, tuned, filling a timing cache."""
    out = ok(
        cli(
            "build",
            "tiny.onnx",
            "-o",
            "tiny.engine",
            *PROFILE,
            "--timing-cache",
            "timing.json",
            "--quiet",
            cwd=work,
        )
    )
    assert out == ""  # --quiet
    assert (work / "timing.json").is_file()
    return work / "tiny.engine"


@pytest.fixture(scope="module")
def foreign_engine(engine: Path, work: Path) -> Path:
    """The engine with its build record claiming another CPU."""
    f = read_engine(engine)
    header = dict(f.header)
    build = dict(header["build"])
    build["device"] = {**build["device"], "model": "Imaginary CPU 9000", "isa": ["neon"]}
    header["build"] = build
    path = work / "foreign.engine"
    write_engine(path, header, f.tensors, f.blobs)
    return path


# -- build ----------------------------------------------------------------------------------


def test_build_with_a_batch_profile(engine: Path) -> None:
    loaded = Engine.load(engine)
    assert loaded.batch_sizes == [1, 2, 3]
    assert (loaded.profile.min_batch, loaded.profile.opt_batch, loaded.profile.max_batch) == (
        1,
        2,
        3,
    )
    assert [str(b) for b in loaded.inputs] == ["x: float32[Nx3x16x16]"]
    # tuned: the convolutions carry measured tactic times
    convs = [n for n in loaded.graph(2).nodes if n.op_type == "FusedConv"]
    assert convs and all(n.meta.get("tactic") for n in convs)
    assert any(n.meta.get("tactic_times_us") for n in convs)


def test_build_with_fixed_shapes_and_no_tuning(work: Path) -> None:
    out = ok(
        cli(
            "build",
            "tiny.onnx",
            "-o",
            "fixed.engine",
            "--shapes",
            "x:2x3x16x16",
            "--no-tune",
            cwd=work,
        )
    )
    assert "built fixed.engine" in out
    assert "batch sizes [2]" in out
    assert "input  x: float32[2x3x16x16]" in out
    loaded = Engine.load(work / "fixed.engine")
    assert loaded.batch_sizes == [2]
    convs = [n for n in loaded.graph(2).nodes if n.op_type == "FusedConv"]
    assert convs and all(n.meta.get("tactic") for n in convs)
    assert not any(n.meta.get("tactic_times_us") for n in convs)  # nothing was timed


def test_build_tuned_for_a_thread_count(engine: Path, work: Path) -> None:
    """--threads N times the tactics with N threads per context and says so everywhere."""
    out = ok(
        cli(
            "build",
            "tiny.onnx",
            "-o",
            "one.engine",
            "--shapes",
            "x:2x3x16x16",
            "--threads",
            "1",
            cwd=work,
        )
    )
    assert "tuned at threads_per_context=1" in out
    rec = Engine.load(work / "one.engine").build_record
    # a CPU-backend setting: in the backend's options and settings, not the builder's
    assert rec["backend_settings"] == {"threads_per_context": 1}
    assert rec["options"]["backend_options"] == {"threads": 1}
    assert "--threads 1" in rec["rebuild_command"]
    assert "tactics timed at threads_per_context=1" in ok(cli("inspect", "one.engine", cwd=work))
    # the default: the thread budget, all cores in one context
    default = Engine.load(engine).build_record
    assert default["backend_settings"] == {"threads_per_context": os.cpu_count()}
    assert (
        default["options"]["backend_options"] == {}
        and "--threads" not in default["rebuild_command"]
    )


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_build_threads_must_be_positive(work: Path, value: str) -> None:
    res = cli("build", "tiny.onnx", "-o", "bad.engine", "--threads", value, cwd=work)
    assert res.returncode == 2
    assert "expected a whole number >= 1" in res.stderr
    assert not (work / "bad.engine").exists()


def test_timing_cache_is_reused_on_a_second_build(engine: Path, work: Path) -> None:
    result = cli(
        "-v",
        "build",
        "tiny.onnx",
        "-o",
        "again.engine",
        *PROFILE,
        "--timing-cache",
        "timing.json",
        "--quiet",
        cwd=work,
    )
    ok(result)
    hits = re.search(r"timing cache: (\d+) hits, (\d+) misses", result.stderr)
    assert hits, result.stderr
    assert int(hits[1]) > 0 and int(hits[2]) == 0, hits[0]
    first, again = Engine.load(engine), Engine.load(work / "again.engine")
    for batch in first.batch_sizes:
        tactics = [(n.name, n.meta.get("tactic")) for n in first.graph(batch).nodes]
        assert [(n.name, n.meta.get("tactic")) for n in again.graph(batch).nodes] == tactics


# -- infer ----------------------------------------------------------------------------------


def test_infer_random_inputs_writes_one_npy_per_output(engine: Path, work: Path) -> None:
    out = ok(cli("infer", engine, "--batch", "3", "--seed", "5", "--output-dir", "rand", cwd=work))
    files = sorted(p.name for p in (work / "rand").iterdir())
    assert files == ["features.npy", "logits.npy"]
    assert np.load(work / "rand" / "features.npy").shape == (3, 8, 16, 16)
    logits = np.load(work / "rand" / "logits.npy")
    assert logits.shape == (3, 4) and logits.dtype == np.float32 and np.isfinite(logits).all()
    assert "logits: float32[3, 4]" in out


def test_infer_with_input_file_matches_onnxruntime(engine: Path, work: Path) -> None:
    x = np.random.default_rng(11).standard_normal((3, *X_SHAPE)).astype(np.float32)
    np.save(work / "x3.npy", x)
    ok(cli("infer", engine, "--input", "x=x3.npy", "--output-dir", "given", cwd=work))
    expected = ort_outputs(work / "tiny.onnx", x)
    for name, want in expected.items():
        got = np.load(work / "given" / f"{name}.npy")
        assert got.shape == want.shape
        scale = float(np.abs(want).max())
        assert float(np.abs(got - want).max()) <= 1e-4 * scale, name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x", "--input 'x': expected NAME=FILE.npy"),
        ("x=missing.npy", "--input 'x=missing.npy': no such file missing.npy"),
        (
            "x=tiny.onnx",
            "--input 'x=tiny.onnx': tiny.onnx is not a .npy file holding a plain numeric array",
        ),
        ("x=x_bad_shape.npy", "input 'x' must have shape ['N', 3, 16, 16], got [2, 3, 15, 16]"),
        ("image=x_bad_shape.npy", "unknown ['image'], missing ['x']"),
    ],
)
def test_infer_bad_input_specs(engine: Path, work: Path, spec: str, message: str) -> None:
    np.save(work / "x_bad_shape.npy", np.zeros((2, 3, 15, 16), np.float32))
    line = error_line(
        cli("infer", engine, "--input", spec, "--output-dir", "bad", cwd=work), "infer"
    )
    assert message in line
    assert not (work / "bad").exists() or not any((work / "bad").iterdir())


# -- inspect --------------------------------------------------------------------------------


def test_inspect_text(engine: Path, work: Path) -> None:
    out = ok(cli("inspect", engine, cwd=work))
    assert "input  x: float32[Nx3x16x16]" in out
    assert "output features: float32[Nx8x16x16]" in out
    assert "output logits: float32[Nx4]" in out
    assert "batch min/opt/max 1/2/3" in out
    layers = re.search(r"layers: (\d+) in the model → (\d+) in the plan for batch 2", out)
    assert layers, out
    assert int(layers[1]) == 9 and int(layers[2]) < 9
    assert "conv1 + bn1 + relu1" in out
    assert "conv2 + sigmoid2 + silu2" in out
    # each fused convolution shows the tactic it runs, e.g. [im2col_gemm]
    conv_lines = [line for line in out.splitlines() if "conv1 + bn1" in line]
    assert re.search(r"\[[a-z0-9_]+\]", conv_lines[0]), conv_lines


def test_inspect_json(engine: Path, work: Path) -> None:
    report = json.loads(ok(cli("inspect", engine, "--json", "--batch", "1", cwd=work)))
    assert report["inputs"] == ["x: float32[Nx3x16x16]"]
    assert report["outputs"] == ["features: float32[Nx8x16x16]", "logits: float32[Nx4]"]
    assert report["plan_batch"] == 1
    assert report["original_layers"] == 9
    assert report["final_layers"] == len(report["layers"]) < 9
    assert report["profile"]["specializations"] == [1, 2, 3]
    assert report["build"]["backend"] == "cpu"
    assert report["build"]["options"]["min_shapes"] == {"x": [1, 3, 16, 16]}
    fused = {tuple(layer["members"]): layer for layer in report["layers"]}
    conv = fused[("conv1", "bn1", "relu1")]
    assert conv["op"] == "FusedConv" and conv["tactic"]
    assert ("conv2", "sigmoid2", "silu2") in fused
    assert report["arena"]["bytes"] > 0


def test_inspect_foreign_engine_with_no_device_check(foreign_engine: Path, work: Path) -> None:
    out = ok(cli("inspect", foreign_engine, "--no-device-check", cwd=work))
    assert "conv1 + bn1 + relu1" in out


# -- bench ----------------------------------------------------------------------------------


def test_bench_against_onnxruntime(engine: Path, work: Path) -> None:
    out = ok(
        cli(
            "bench",
            engine,
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--processes",
            "1",
            "--threads",
            "1",
            "--compare-onnxruntime",
            "tiny.onnx",
            cwd=work,
        )
    )
    assert re.search(r"edge_infer\s+median\s+[\d.]+ ms", out), out
    assert re.search(r"onnxruntime\s+median\s+[\d.]+ ms", out), out
    assert re.search(r"latency ratio edge_infer / onnxruntime: [\d.]+×", out), out
    for name in ("features", "logits"):
        diff = re.search(rf"output {name}: max abs diff ([\d.e+-]+)", out)
        assert diff, out
        assert float(diff[1]) < 1e-3


def test_bench_json(engine: Path, work: Path) -> None:
    report = json.loads(
        ok(
            cli(
                "bench",
                engine,
                "--iterations",
                "3",
                "--warmup",
                "1",
                "--threads",
                "1",
                "--batch",
                "1",
                "--json",
                cwd=work,
            )
        )
    )
    assert report["batch"] == 1 and report["iterations"] == 3 and report["processes"] == 1
    stats = report["edge_infer"]
    assert 0 < stats["median_ms"] <= stats["p99_ms"]
    assert stats["throughput"] > 0
    assert "onnxruntime" not in report


# -- errors ---------------------------------------------------------------------------------


def test_missing_model_file(work: Path) -> None:
    line = error_line(cli("build", "nothere.onnx", "-o", "x.engine", cwd=work), "build")
    assert "nothere.onnx" in line and "no such model file" in line
    assert not (work / "x.engine").exists()


def test_not_an_onnx_file(work: Path) -> None:
    line = error_line(cli("build", "junk.onnx", "-o", "junk.engine", cwd=work), "build")
    assert "junk.onnx" in line and "not a valid ONNX model" in line
    assert not (work / "junk.engine").exists()


def test_unsupported_ops_are_all_listed(work: Path) -> None:
    result = cli("build", "unsupported.onnx", "-o", "unsupported.engine", cwd=work)
    # the list continues under the message line, one node per line, then the advice
    line = error_line(result, "build", extra_lines=r"  - node '.*': .*|Register a plugin .*")
    assert "2 node(s)" in line
    assert "node 'det_node': ai.onnx::Det" in result.stderr
    assert "node 'frob_node': com.acme::Frobnicate" in result.stderr
    assert not (work / "unsupported.engine").exists()


def test_corrupt_engine(engine: Path, work: Path) -> None:
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (work / "corrupt.engine").write_bytes(bytes(data))
    for command in ("infer", "inspect"):
        line = error_line(cli(command, "corrupt.engine", cwd=work), command)
        assert "corrupt" in line and "corrupt.engine" in line


def test_engine_from_another_device(foreign_engine: Path, work: Path) -> None:
    line = error_line(cli("infer", foreign_engine, cwd=work), "infer")
    assert "Imaginary CPU 9000" in line
    # says how to rebuild: the exact command with the engine's profile
    assert "edge-infer build " in line and "tiny.onnx" in line
    assert "--min-shapes x:1x3x16x16 --opt-shapes x:2x3x16x16 --max-shapes x:3x3x16x16" in line


def test_bad_shapes_flag(work: Path) -> None:
    line = error_line(
        cli("build", "tiny.onnx", "-o", "s.engine", "--shapes", "x:2by3", cwd=work), "build"
    )
    assert "bad shape 'x:2by3'" in line
    assert not (work / "s.engine").exists()


# -- docs/cli.md ----------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command path (``edge-infer build``, ``edge-infer synth images``, …)."""
    yield path, parser
    for name, sub in _subparsers(parser).items():
        yield from _commands(sub, f"{path} {name}")


def _section(doc: str, command: str) -> str:
    """The text under the heading ``## `COMMAND` `` (any level) up to the next heading of the
    same or a higher level; ``#`` lines inside fenced code blocks are not headings."""
    # blank out code blocks (keeping offsets) so shell comments are not taken for headings
    outline = re.sub(
        r"^```.*?^```", lambda m: re.sub(r"[^\n]", " ", m[0]), doc, flags=re.MULTILINE | re.DOTALL
    )
    match = re.search(rf"^(#+) `{re.escape(command)}`[^\n]*$", outline, flags=re.MULTILINE)
    assert match, f"docs/cli.md has no heading for `{command}`"
    level = len(match[1])
    end = re.compile(rf"^#{{1,{level}}} ", flags=re.MULTILINE).search(outline, match.end())
    return doc[match.end() : end.start() if end else len(doc)]


def test_docs_cover_every_command_and_flag() -> None:
    doc = DOC.read_text(encoding="utf-8")
    missing = []
    for command, parser in _commands(make_parser(), "edge-infer"):
        section = _section(doc, command)
        if command != "edge-infer" and not _subparsers(parser) and "```" not in section:
            missing.append(f"{command}: no example")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if action.option_strings:
                missing += [
                    f"{command} {flag}"
                    for flag in action.option_strings
                    if not re.search(rf"`{re.escape(flag)}[ `=]", section)
                ]
            else:
                name = str(action.metavar or action.dest).upper()
                if f"`{name}" not in section:
                    missing.append(f"{command} positional {name}")
    assert not missing, "docs/cli.md lacks: " + ", ".join(missing)
