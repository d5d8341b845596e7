"""The checked reader of one TOML table: every config section is read through it.

Each accessor converts and checks one key (a string among choices, an
integer above a minimum, a size, a duration, an address …) and raises a
ConfigError naming the file, the key and what was expected; ``finish()``
refuses the keys nobody read, so a misspelt key stops the daemon at start.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mailgate.errors import ConfigError
from mailgate.units import parse_duration, parse_size


class Table:
    """A checked reader over one TOML table; remembers which keys were read.

    ``finish()`` rejects keys nobody read, so a misspelt key is an error and
    not a silently ignored setting.
    """

    def __init__(self, data: Any, file: Path | builtins.str, where: builtins.str) -> None:
        self.file = str(file)
        self.where = where
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self.error("", f"expected a table, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self._seen: set[str] = set()

    def error(self, key: builtins.str, message: builtins.str) -> ConfigError:
        name = f"{self.where}.{key}" if key and self.where else (key or self.where)
        return ConfigError(f"{self.file}: {name}: {message}")

    def _get(self, key: builtins.str, default: Any) -> Any:
        self._seen.add(key)
        return self.data.get(key, default)

    def has(self, key: builtins.str) -> builtins.bool:
        return key in self.data

    def str(
        self, key: builtins.str, default: builtins.str | None = None, *, choices: tuple[builtins.str, ...] = ()
    ) -> builtins.str:
        value = self._get(key, default)
        if value is None:
            raise self.error(key, "is required (a string)")
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        if choices and value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def int(self, key: builtins.str, default: builtins.int, *, minimum: builtins.int | None = None) -> builtins.int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}, got {value}")
        return value

    def int_or(self, key: builtins.str, word: builtins.str, *, minimum: builtins.int) -> builtins.int | None:
        """An integer of at least ``minimum``, or ``word``, also when the key is not set (given as None):
        ``workers = "auto"``."""
        value = self._get(key, word)
        if value == word:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f'expected "{word}" or an integer >= {minimum}, got {value!r}')
        return value

    def float(self, key: builtins.str, default: builtins.float) -> builtins.float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        return float(value)

    def bool(self, key: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def size(self, key: builtins.str, default: builtins.str) -> builtins.int:
        value = self._get(key, default)
        try:
            return parse_size(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def duration(self, key: builtins.str, default: builtins.str | builtins.float) -> builtins.float:
        value = self._get(key, default)
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def str_list(self, key: builtins.str, default: list[builtins.str] | None = None) -> tuple[builtins.str, ...]:
        value = self._get(key, default if default is not None else [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def address(self, key: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self.str(key, default).strip().lower()
        if value.count("@") != 1 or value.startswith("@") or value.endswith("@") or " " in value:
            raise self.error(key, f"expected a mail address such as support@example.com, got {value!r}")
        return value

    def path(self, key: builtins.str, default: builtins.str, base: Path) -> Path:
        value = self.str(key, default)
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path)

    def listen(self, key: builtins.str, default: builtins.str) -> tuple[builtins.str, builtins.int]:
        value = self.str(key, default)
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise self.error(key, f"expected host:port such as 127.0.0.1:2525, got {value!r}")
        return host.strip("[]"), int(port)

    def table(self, key: builtins.str) -> Table:
        return Table(self._get(key, {}), self.file, f"{self.where}.{key}" if self.where else key)

    def tables(self, key: builtins.str) -> Iterator[Table]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self.error(key, "expected an array of tables ([[...]])")
        for index, item in enumerate(value):
            yield Table(item, self.file, f"{key}[{index}]")

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key (misspelt?)")
