"""The operator's files agree with the CLI: every flag they pass exists, every TOML key is a setting."""

from __future__ import annotations

import argparse
import shlex
import tomllib
from pathlib import Path

import yaml

from logserver.config import (
    FIELD_OF_SETTING,
    SETTINGS,
    ServerConfig,
    add_serve_arguments,
    config_from_args,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def serve_flags() -> set[str]:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return {opt for action in parser._actions for opt in action.option_strings}


def flags_in(words: list[str]) -> set[str]:
    return {w.split("=", 1)[0] for w in words if w.startswith("--")}


def test_systemd_unit_uses_only_real_flags():
    """ExecStart of the templated unit runs `logserver serve` with flags the CLI knows."""
    unit = (DEPLOY / "systemd" / "logserver@.service").read_text()
    (exec_line,) = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    words = shlex.split(exec_line.removeprefix("ExecStart="))
    assert words[1] == "serve"
    assert flags_in(words) <= serve_flags()


def test_compose_logservers_use_only_real_flags():
    """Every logserver service in the compose file runs `serve` with known flags and a ZooKeeper of the file."""
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    logservers = {k: v for k, v in services.items() if k.startswith("logserver")}
    zookeepers = {k for k in services if k.startswith("zk")}
    assert len(logservers) == 3 and len(zookeepers) == 3
    for service in logservers.values():
        command = service["command"]
        assert command[0] == "serve"
        assert flags_in(command) <= serve_flags()
        zk = command[command.index("--zk") + 1]
        assert {hp.split(":")[0] for hp in zk.split(",")} == zookeepers


def test_example_config_parses_into_a_valid_server_config(tmp_path: Path):
    """The example TOML holds only known settings and, with a data dir, makes a valid ServerConfig."""
    example = DEPLOY / "logserver.example.toml"
    keys = set(tomllib.loads(example.read_text()))
    assert keys <= set(SETTINGS)
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--config", str(example), "--data-dir", str(tmp_path)])
    config = config_from_args(args, environ={})
    assert config.fsync == "always" and config.port == 9090
    assert config.retention_hours == 168 and config.page_cache == "drop"


def test_every_setting_sets_one_config_field_under_its_own_name_or_a_suffixed_one():
    """Operators keep the published names (``--idle-timeout``, ``tls_cert = ...``); each sets
    exactly one ServerConfig field, whose name may add the glossary's suffix (``_s``, ``_file``)."""
    fields = [FIELD_OF_SETTING.get(name, name) for name in SETTINGS]
    assert sorted(fields) == sorted(ServerConfig.__dataclass_fields__)
    for setting, field in FIELD_OF_SETTING.items():
        assert field in (f"{setting}_s", f"{setting}_file"), (setting, field)


def test_renamed_settings_reach_their_fields(tmp_path: Path):
    """A duration flag, a TLS path variable and a file key each land in their suffixed field."""
    cert = tmp_path / "cert.pem"
    cert.write_text("not read here")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'drain_timeout = 7.5\ntls_key = "{cert}"\n')
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(
        ["--config", str(cfg), "--zk", "zk:1", "--data-dir", str(tmp_path), "--idle-timeout", "3"]
    )
    config = config_from_args(args, environ={"LOGSERVER_TLS_CERT": str(cert)})
    assert (config.idle_timeout_s, config.drain_timeout_s) == (3.0, 7.5)
    assert (config.tls_cert_file, config.tls_key_file) == (cert, cert)


def test_flags_beat_environment_which_beats_the_file(tmp_path: Path):
    """Precedence: flag > LOGSERVER_* variable > TOML file > default."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('zk = "file:1"\nport = 1111\nfsync = "never"\n')
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--config", str(cfg), "--data-dir", str(tmp_path), "--port", "3333"])
    config = config_from_args(
        args, environ={"LOGSERVER_PORT": "2222", "LOGSERVER_FSYNC": "interval"}
    )
    assert (config.zk, config.port, config.fsync) == ("file:1", 3333, "interval")


def test_page_cache_is_drop_or_keep(tmp_path: Path):
    """--page-cache takes drop (the default) or keep, and nothing else."""
    import pytest

    from logserver.config import ConfigError

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    base = ["--zk", "zk:2181", "--data-dir", str(tmp_path)]
    assert config_from_args(parser.parse_args(base), environ={}).page_cache == "drop"
    keep = parser.parse_args([*base, "--page-cache", "keep"])
    assert config_from_args(keep, environ={}).page_cache == "keep"
    with pytest.raises(ConfigError, match="page-cache"):
        config_from_args(parser.parse_args([*base, "--page-cache", "sometimes"]), environ={})


def test_the_image_installs_the_server_extra():
    """The image runs `logserver serve`, so it installs `.[server]`: a plain install is the client."""
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    installs = [ln for ln in dockerfile.splitlines() if ln.startswith("RUN pip install")]
    assert installs == ["RUN pip install --no-cache-dir '.[server]'"]
