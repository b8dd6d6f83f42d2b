"""`.ckptvc/config.toml`: the committed repository configuration.

Strictly checked: an unknown key or a wrong type is a one-line error naming the
file and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ckptvc.errors import ConfigError, UserInputError
from ckptvc.stores.factory import validate_remote_url
from ckptvc.stores.local import atomic_write_file

CONFIG_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

CORE_DEFAULTS: dict[str, object] = {
    "version": CONFIG_VERSION,
    "default_remote": "",
    "chunk_size": 2 << 20,  # average content-defined chunk for opaque files
    "compression_level": 1,
    "max_delta_chain": 8,
    "jobs": 0,  # 0: one worker per core
    # Restored workspace files are copies of verified objects: like git and DVC,
    # checkout does not fsync them (a crash leaves a short file that status flags
    # and checkout redoes). true makes every restored file durable before rename.
    "fsync_checkout": False,
}
REMOTE_KEYS: dict[str, type] = {
    "url": str,
    "endpoint_url": str,
    "region": str,
    "profile": str,
    "jobs": int,
}


def check_name(name: str, what: str) -> None:
    if not _NAME_RE.match(name):
        raise UserInputError(f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.' (max 64)")


@dataclass
class RemoteConfig:
    name: str
    url: str
    options: dict[str, object] = field(default_factory=dict)


@dataclass
class Config:
    core: dict[str, object] = field(default_factory=lambda: dict(CORE_DEFAULTS))
    remotes: dict[str, RemoteConfig] = field(default_factory=dict)

    @property
    def default_remote(self) -> str:
        return str(self.core["default_remote"])

    def get_int(self, key: str) -> int:
        return int(self.core[key])  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Config:
        where = str(path)
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{where}: missing; run 'ckptvc init'") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8 text") from None
        cfg = cls()
        for section, body in doc.items():
            if section == "core":
                if not isinstance(body, dict):
                    raise ConfigError(f"{where}: [core] must be a table")
                for key, value in body.items():
                    if key not in CORE_DEFAULTS:
                        raise ConfigError(f"{where}: unknown key core.{key}")
                    expected = type(CORE_DEFAULTS[key])
                    if type(value) is not expected:
                        raise ConfigError(f"{where}: core.{key} must be {expected.__name__}, not {type(value).__name__}")
                    cfg.core[key] = value
            elif section == "remote":
                if not isinstance(body, dict):
                    raise ConfigError(f"{where}: [remote] must hold [remote.NAME] tables")
                for name, rbody in body.items():
                    if not isinstance(rbody, dict):
                        raise ConfigError(f"{where}: remote.{name} must be a table")
                    try:
                        check_name(name, "remote")
                    except UserInputError as exc:
                        raise ConfigError(f"{where}: {exc}") from None
                    for key, value in rbody.items():
                        if key not in REMOTE_KEYS:
                            raise ConfigError(f"{where}: unknown key remote.{name}.{key}")
                        if type(value) is not REMOTE_KEYS[key]:
                            raise ConfigError(f"{where}: remote.{name}.{key} must be {REMOTE_KEYS[key].__name__}")
                    if "url" not in rbody:
                        raise ConfigError(f"{where}: remote.{name} has no url")
                    try:
                        validate_remote_url(rbody["url"])
                    except UserInputError as exc:
                        raise ConfigError(f"{where}: remote.{name}: {exc}") from None
                    opts = {k: v for k, v in rbody.items() if k != "url"}
                    cfg.remotes[name] = RemoteConfig(name, rbody["url"], opts)
            else:
                raise ConfigError(f"{where}: unknown section [{section}]")
        if cfg.core["version"] != CONFIG_VERSION:
            raise ConfigError(f"{where}: unknown config version {cfg.core['version']}")
        level = cfg.get_int("compression_level")
        if not 1 <= level <= 19:
            raise ConfigError(f"{where}: core.compression_level must be 1..19")
        if not 0 <= cfg.get_int("max_delta_chain") <= 64:
            raise ConfigError(f"{where}: core.max_delta_chain must be 0..64")
        if not (64 << 10) <= cfg.get_int("chunk_size") <= (64 << 20):
            raise ConfigError(f"{where}: core.chunk_size must be 64 KiB..64 MiB")
        if cfg.get_int("jobs") < 0:
            raise ConfigError(f"{where}: core.jobs must be >= 0")
        if cfg.default_remote and cfg.default_remote not in cfg.remotes:
            raise ConfigError(f"{where}: core.default_remote names unknown remote {cfg.default_remote!r}")
        return cfg

    def to_toml(self) -> str:
        lines = ["# ckptvc repository configuration (committed). See docs/config.md.", "[core]"]
        for key in CORE_DEFAULTS:
            lines.append(f"{key} = {_toml_value(self.core[key])}")
        for name in sorted(self.remotes):
            rc = self.remotes[name]
            lines.append("")
            lines.append(f"[remote.{_toml_key(name)}]")
            lines.append(f"url = {_toml_value(rc.url)}")
            for key in sorted(rc.options):
                lines.append(f"{key} = {_toml_value(rc.options[key])}")
        return "\n".join(lines) + "\n"

    def save(self, path: Path) -> None:
        atomic_write_file(path, self.to_toml().encode("utf-8"))


def _toml_key(name: str) -> str:
    return name if re.match(r"^[A-Za-z0-9_-]+$", name) else _toml_value(name)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    s = str(value)
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'
