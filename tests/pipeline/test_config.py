"""Config: examples load, every field is described and bounded, bad configs name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from edge_infer.errors import ConfigError
from edge_infer.pipeline.camera_config import CAMERA_TYPES, FileCamera, RtspCamera
from edge_infer.pipeline.config import (
    DaemonConfig,
    config_table,
    iter_fields,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))


def base() -> dict:
    return {
        "device_id": "dev",
        "engine": {"path": "e.engine"},
        "cameras": [{"type": "file", "id": "c0", "path": "cam.mp4"}],
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.cameras and cfg.device_id
    # relative paths are resolved against the config's folder
    assert cfg.engine.path.is_absolute()


def test_examples_exist_and_cover_every_camera_type() -> None:
    assert len(EXAMPLES) >= 3
    types = {c.type for p in EXAMPLES for c in load_config(p).cameras}
    assert types == set(CAMERA_TYPES)


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base()))
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.engine.path == tmp_path / "e.engine"
    cam = cfg.cameras[0]
    assert isinstance(cam, FileCamera) and cam.path == tmp_path / "cam.mp4"


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(typo=1), "typo"),
        (lambda d: d["engine"].update(pth="x"), "engine.pth"),
        (lambda d: d["cameras"][0].update(type="webcam"), "cameras.0"),
        (lambda d: d["cameras"][0].update(max_fps=0), "cameras.0.file.max_fps"),
        (lambda d: d["cameras"][0].update(id="bad id!"), "cameras.0.file.id"),
        (
            lambda d: d["cameras"].append({"type": "rtsp", "id": "r", "url": "ftp://x/y"}),
            "cameras.1.rtsp.url",
        ),
        (
            lambda d: d["cameras"].append(
                {"type": "rtsp", "id": "r", "url": "rtsp://h/p", "transport": "sctp"}
            ),
            "cameras.1.rtsp.transport",
        ),
        (lambda d: d.update(batching={"latency_budget_ms": -5}), "batching.latency_budget_ms"),
        (lambda d: d.update(publisher={"endpoints": ["udp://x:1"]}), "publisher"),
        (lambda d: d.update(publisher={"curve": {"enabled": True}}), "publisher"),
        (lambda d: d["engine"].update(build={"min_batch": 4, "max_batch": 2}), "engine.build"),
        (lambda d: d["cameras"].append(dict(d["cameras"][0])), "camera id 'c0' is used twice"),
        (lambda d: d.pop("cameras"), "cameras"),
    ],
)
def test_bad_config_names_the_field(mutate, where: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "test.yaml")
    assert where in str(err.value)
    assert "test.yaml" in str(err.value)


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_config([1, 2], "x")
    (tmp_path / "bad.yaml").write_text("device_id: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_camera_union_discriminates_on_type() -> None:
    data = base()
    data["cameras"] = [
        {"type": "rtsp", "id": "r", "url": "rtsp://127.0.0.1:8554/a", "transport": "udp"}
    ]
    cam = parse_config(data).cameras[0]
    assert isinstance(cam, RtspCamera) and cam.transport == "udp"


def _models(model: type[BaseModel], seen: set) -> set:
    seen.add(model)
    for f in model.model_fields.values():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and ann not in seen:
            _models(ann, seen)
    return seen


def test_every_field_has_a_description_and_numbers_have_bounds() -> None:
    models = _models(DaemonConfig, set())
    for cam in CAMERA_TYPES.values():
        models |= _models(cam, set())
    for model in models:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
            if f.annotation in (int, float, int | None, float | None):
                bounds = [m for m in f.metadata if type(m).__name__ in ("Gt", "Ge", "Lt", "Le")]
                assert len(bounds) >= 2, f"{model.__name__}.{name} lacks lower/upper bounds"


def test_docs_list_every_config_key() -> None:
    doc = (ROOT / "docs" / "daemon.md").read_text()
    keys = [k for k, *_ in iter_fields(DaemonConfig)]
    for cam in CAMERA_TYPES.values():
        keys += [f"cameras[].{k}" for k, *_ in iter_fields(cam)]
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert not missing, f"docs/daemon.md does not document: {missing}"
    table = doc.split("<!-- config-table:start -->\n")[1].split("\n<!-- config-table:end -->")[0]
    assert table == config_table(), "docs/daemon.md is stale: regenerate it with config_table()"


def test_run_fails_at_start_with_the_field_path(tmp_path: Path, capsys) -> None:
    from edge_infer.cli import main

    data = base()
    data["cameras"][0]["max_fps"] = -1
    data["batching"] = {"latency_budget": 100}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    assert main(["run", "--config", str(tmp_path / "bad.yaml")]) == 1
    err = capsys.readouterr().err
    assert "invalid configuration (2 problem(s))" in err
    assert "cameras.0.file.max_fps: Input should be greater than 0" in err
    assert "batching.latency_budget: Extra inputs are not permitted" in err
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(base()))
    (tmp_path / "cam.mp4").write_bytes(b"")  # --check looks for the files the config names
    (tmp_path / "e.engine").write_bytes(b"")
    assert main(["run", "--config", str(tmp_path / "ok.yaml"), "--check"]) == 0
