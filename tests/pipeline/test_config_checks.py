"""Config files read strictly, endpoints checked before binding, `run --check` that looks at
what the config names, and CURVE keys made, parsed and kept private (issue 17 §9, §13, §14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edge_infer.cli import main
from edge_infer.errors import ConfigError
from edge_infer.pipeline.config import load_config, parse_config
from edge_infer.pipeline.curve import keys_dir_problems, make_keys, read_key_file


def base() -> dict:
    return {
        "device_id": "dev",
        "engine": {"path": "e.engine"},
        "cameras": [{"type": "file", "id": "c0", "path": "cam.mp4"}],
    }


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("device_id: a\ndevice_id: b\n", "key 'device_id' given twice"),
        ("a: " + "[" * 200 + "]" * 200 + "\n", "nested deeper than 32"),
        ("cameras: [1, 2\n", "not valid YAML: line 2"),
    ],
    ids=["duplicate-key", "deep", "broken"],
)
def test_bad_yaml_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert expected in _one_line(exc) and str(path) in str(exc.value)


def test_non_utf8_and_alias_bombs_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"device_id: caf\xe9\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "not UTF-8 text (byte 14, line 1)" in _one_line(exc)
    lines, prev = ["a: &a [x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "once aliases are expanded" in _one_line(exc)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp://127.0.0.1:99999", "port must be 1..65535"),
        ("tcp://127.0.0.1", "write tcp://HOST:PORT"),
        ("tcp://bad host:5556", "is not a host name"),
        ("udp://127.0.0.1:5556", "must start with tcp://"),
    ],
)
def test_endpoints_are_checked_at_parse(endpoint: str, expected: str) -> None:
    data = base() | {"publisher": {"endpoints": [endpoint]}}
    with pytest.raises(ConfigError, match="publisher") as exc:
        parse_config(data)
    assert expected in str(exc.value)


def test_good_endpoints_and_prometheus_address() -> None:
    ok = ["tcp://*:5556", "tcp://[::1]:5556", "tcp://cam-gw.local:*", "inproc://x"]
    parse_config(base() | {"publisher": {"endpoints": ok}, "health": {"prometheus_address": "::1"}})
    with pytest.raises(ConfigError, match="prometheus_address: 'not an address!'"):
        parse_config(base() | {"health": {"prometheus_address": "not an address!"}})


def test_ipc_endpoint_never_deletes_a_file(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    data = base() | {"publisher": {"endpoints": [f"ipc://{precious}"]}}
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        parse_config(data)
    # the file appears after the config was read: the publisher refuses at bind
    from edge_infer.pipeline.config import PublisherConfig
    from edge_infer.pipeline.publisher import ModelInfo, Publisher

    later = tmp_path / "later.txt"
    cfg = PublisherConfig(endpoints=[f"ipc://{later}"])
    later.write_text("keep me too")
    pub = Publisher(cfg, "dev", "b" * 32, ModelInfo("m", "", "fp32"), [], dict)
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        pub.bind()
    pub.close(0.1)
    assert precious.read_text() == "keep me" and later.read_text() == "keep me too"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_check_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keys = tmp_path / "keys"
    make_keys(keys)
    secret = keys / "server.key_secret"
    os.chmod(secret, 0o644)
    (keys / "authorized_clients" / "bad.key").write_text('public-key = "tooshort"\n')
    data = base() | {"publisher": {"curve": {"enabled": True, "keys_dir": "keys"}}}
    data["cameras"].append({"type": "usb", "id": "u0", "device": "/dev/video-none"})
    assert main(["run", "--config", str(_write(tmp_path, data)), "--check"]) == 1
    out = capsys.readouterr().out
    assert "5 problem(s)" in out
    assert f"cameras[0] (c0).path: {tmp_path / 'cam.mp4'} does not exist" in out
    assert "cameras[1] (u0).device: /dev/video-none does not exist" in out
    assert "engine.path:" in out and "engine.onnx is not set" in out
    assert "server.key_secret is readable by other users (mode 0644)" in out
    assert "bad.key: public-key is not a 40-character Z85 key" in out
    # fixed one by one, it passes
    (tmp_path / "cam.mp4").write_bytes(b"x")
    (tmp_path / "e.engine").write_bytes(b"x")
    os.chmod(secret, 0o600)
    (keys / "authorized_clients" / "bad.key").unlink()
    data["cameras"].pop()
    assert main(["run", "--config", str(_write(tmp_path, data)), "--check"]) == 0


def test_make_keys_writes_private_secrets_that_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    keys = tmp_path / "keys"
    assert main(["subscribe", "--make-keys", str(keys), "--client-name", "ops"]) == 0
    assert "clients/ops" in capsys.readouterr().out
    for secret in (keys / "server.key_secret", keys / "clients/ops/client.key_secret"):
        assert os.stat(secret).st_mode & 0o077 == 0
        public, private = read_key_file(secret, secret=True)
        assert len(public) == 40 and private is not None and len(private) == 40
    assert keys_dir_problems(keys) == []
    # a second subscriber keeps the daemon's keys
    before = (keys / "server.key_secret").read_bytes()
    make_keys(keys, "second")
    assert (keys / "server.key_secret").read_bytes() == before
    assert sorted(p.name for p in (keys / "authorized_clients").iterdir()) == [
        "ops.key",
        "second.key",
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("garbage\n", "no public-key line"),
        ('public-key = "' + "!" * 39 + '"\n', "not a 40-character Z85 key"),
        ('public-key = "' + "a" * 40 + '"\n', "holds no secret-key"),
    ],
)
def test_malformed_server_key_is_one_line_naming_a_real_command(
    tmp_path: Path, content: str, expected: str
) -> None:
    keys = tmp_path / "keys"
    make_keys(keys)
    secret = keys / "server.key_secret"
    secret.write_text(content)
    os.chmod(secret, 0o600)
    from edge_infer.pipeline.curve import server_keys

    with pytest.raises(ConfigError) as exc:
        server_keys(keys)
    assert expected in _one_line(exc)
    if "make new keys" in str(exc.value):
        assert "edge-infer subscribe --make-keys" in str(exc.value)


def test_inference_cores_above_the_machine_are_clamped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import os

    from edge_infer.pipeline.engine_setup import usable_cores

    available = len(os.sched_getaffinity(0))
    assert usable_cores(None) is None
    assert usable_cores(1) == 1
    with caplog.at_level("WARNING", logger="edge_infer.pipeline.daemon"):
        assert usable_cores(available + 7) == available
    assert f"inference.cores is {available + 7}" in caplog.text
