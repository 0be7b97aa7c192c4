"""YAML for configuration files, read strictly: a config is data a person typed, so
everything YAML would silently accept but a person did not mean is an error.

- a key given twice in one mapping (plain YAML keeps the last one without a word);
- text that is not UTF-8;
- nesting deeper than :data:`MAX_DEPTH` (a config is a few levels deep; a "billion laughs"
  or a pathological document would otherwise exhaust the stack or memory);
- a file larger than :data:`MAX_BYTES`, or one whose aliases expand to more than
  :data:`MAX_VALUES` values ("billion laughs").

Each is a one-line :class:`ConfigError` that names the file and, where YAML knows it, the
line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edge_infer.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
#: values after expanding aliases (``*anchor``): bounds what anchors can multiply
MAX_VALUES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and deep nesting."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (list, dict)):
                raise ConfigError(f"line {line}: a mapping key must be a scalar")
            if key in seen:
                raise ConfigError(
                    f"line {line}: key {key!r} given twice in one mapping "
                    f"(first on line {seen[key]}); keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        depth = getattr(self, "_depth", 0) + 1
        if depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise ConfigError(f"line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
        self._depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth - 1


def load_yaml_file(path: Path) -> Any:
    """The parsed document of a YAML config file, or a one-line :class:`ConfigError`."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // 1024} KiB; is it a config file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}, line {line}); save it as UTF-8"
        ) from None
    return load_yaml_text(text, str(path))


def load_yaml_text(text: str, source: str = "config") -> Any:
    """Parse ``text`` strictly; errors name ``source``."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no object construction
        _count_values(data, [0])
        return data
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML: {where}{problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None


def _count_values(value: Any, count: list[int]) -> None:
    """Count every value as the validator will see it (aliases expanded); stop at the bound."""
    count[0] += 1
    if count[0] > MAX_VALUES:
        raise ConfigError(f"more than {MAX_VALUES} values once aliases are expanded")
    if isinstance(value, dict):
        for v in value.values():
            _count_values(v, count)
    elif isinstance(value, list):
        for v in value:
            _count_values(v, count)
