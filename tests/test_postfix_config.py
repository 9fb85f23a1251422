"""Tests for smtpsts.postfix.config: the TOML configuration and the postfix-mta-sts-resolver converter."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from smtpsts.cache import PolicyConfig
from smtpsts.postfix.config import (
    DEFAULT_LISTEN,
    ConfigError,
    ServerConfig,
    config_from_pmsr,
    load_config,
    pmsr_to_toml,
)
from smtpsts.postfix.protocol import DaneAnswer, Zone

FULL = """
[server]
listen = ["127.0.0.1:8461", "unix:/run/smtpsts.sock"]
unix_mode = "0660"
max_connections = 50
max_pending = 8
idle_timeout = 30
shutdown_timeout = 2.5

[cache]
backend = "redis"
url = "redis://127.0.0.1:6380/1"
path = "/tmp/x.sqlite"
max_entries = 10
answer_ttl = 0
answer_entries = 500

[refresh]
enabled = false
interval = 3600

[resolver]
nameservers = ["127.0.0.1:5353"]
timeout = 2
cache = false
trust_ad = true
cafile = "/etc/ssl/ca.pem"
connect_to = ["mta-sts.a.test:443:127.0.0.1:8443"]

[policy]
defer_on_dns_error = true
negative_ttl_max = 60
backoff = 600
require_text_plain = false
fetch_timeout = 3
max_bytes = 1000

[zones.default]
timeout = 4
tlsrpt = true

[zones.strict]
strict = true

[zones.legacy]
require_sni = false
dane = "off"
temp_on_timeout = true
"""


class TestLoadConfig:
    def test_defaults(self) -> None:
        """An empty file gives the defaults: sqlite cache, one TCP listener, refresh on."""
        config = load_config("")
        assert ServerConfig() == config
        assert (DEFAULT_LISTEN,) == config.listen
        assert "sqlite" == config.cache_backend
        assert config.refresh

    def test_full(self) -> None:
        """Every setting is read; named zones inherit the default zone's settings."""
        config = load_config(FULL)
        assert ("127.0.0.1:8461", "unix:/run/smtpsts.sock") == config.listen
        assert 0o660 == config.unix_mode
        assert (50, 8, 30.0, 2.5) == (
            config.max_connections,
            config.max_pending,
            config.idle_timeout,
            config.shutdown_timeout,
        )
        assert ("redis", "redis://127.0.0.1:6380/1", 10, 0.0, 500) == (
            config.cache_backend,
            config.redis_url,
            config.max_entries,
            config.answer_ttl,
            config.answer_entries,
        )
        assert (False, 3600.0) == (config.refresh, config.refresh_interval)
        assert ("127.0.0.1:5353",) == config.nameservers
        assert not config.dns_cache
        assert (2.0, True, "/etc/ssl/ca.pem") == (
            config.dns_timeout,
            config.trust_ad,
            config.cafile,
        )
        assert (
            PolicyConfig(
                defer_on_dns_error=True,
                negative_ttl_max=60,
                backoff=600,
                require_text_plain=False,
                timeout=3,
                max_bytes=1000,
            )
            == config.policy
        )
        assert Zone(timeout=4, tlsrpt=True) == config.default_zone
        assert Zone("strict", strict=True, timeout=4, tlsrpt=True) == config.zone("strict")
        legacy = config.zone("legacy")
        assert (False, DaneAnswer.OFF, True, True) == (
            legacy.require_sni,
            legacy.dane,
            legacy.temp_on_timeout,
            legacy.tlsrpt,
        )
        assert config.default_zone is config.zone("unknown")

    def test_numeric_mode(self) -> None:
        """unix_mode may be an integer too (TOML has 0o660 literals)."""
        assert 0o600 == load_config("[server]\nunix_mode = 0o600\n").unix_mode

    def test_strict_testing_alias(self) -> None:
        """The postfix-mta-sts-resolver name strict_testing is accepted in zones."""
        assert load_config("[zones.default]\nstrict_testing = true\n").default_zone.strict

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[server", "not valid TOML"),
            ("[bogus]\n", "bogus: unknown section"),
            ("[server]\nlisten = 'x'\n", "server.listen: expected a list of strings"),
            ("[server]\nlisten = [1]\n", r"server.listen\[0\]: expected a string"),
            ("[server]\nmax_connections = 0\n", "must be at least 1"),
            ("[server]\nmax_connections = true\n", "expected an integer"),
            ("[server]\nidle_timeout = -1\n", "must be positive"),
            ("[server]\nidle_timeout = 'x'\n", "expected a number"),
            ("[server]\nunix_mode = '9x'\n", "not an octal mode"),
            ("[server]\nunix_mode = -1\n", "must not be negative"),
            ("[cache]\nanswer_ttl = -1\n", "cache.answer_ttl: must not be negative"),
            ("[cache]\nanswer_entries = 0\n", "must be at least 1"),
            ("[server]\nport = 1\n", r"server.port: unknown setting \(known: "),
            ("server = 1\n", "server: expected a table"),
            ("[cache]\nbackend = 'postgres'\n", "not one of memory, sqlite, redis"),
            ("[refresh]\nenabled = 1\n", "expected true or false"),
            ("[zones.default]\ndane = 'maybe'\n", "not one of dane-only, dane, notfound, off"),
            ("[zones]\nx = 1\n", "zones.x: expected a table"),
            ("[zones.x]\nfoo = 1\n", "zones.x.foo: unknown setting"),
        ],
    )
    def test_errors(self, text: str, message: str) -> None:
        """Bad settings raise ConfigError naming the key."""
        with pytest.raises(ConfigError, match=message):
            load_config(text)


PMSR = """
host: 127.0.0.1
port: 18461
reuse_port: true
cache_grace: 60
shutdown_timeout: 20
cache:
  type: internal
  options:
    cache_size: 10000
proactive_policy_fetching:
  enabled: true
  interval: 86400
  concurrency_limit: 100
default_zone:
  strict_testing: false
  timeout: 4
zones:
  myzone:
    strict_testing: true
    tlsrpt: true
    require_sni: false
"""


class TestPMSR:
    def test_convert_and_load(self) -> None:
        """A postfix-mta-sts-resolver YAML file converts to TOML that loads to the same meaning."""
        import yaml  # noqa: F401 -- PyYAML is in the tests group; the converter needs it

        text = config_from_pmsr(PMSR)
        assert "cache_grace" not in text
        assert "# NOTE: reuse_port has no equivalent and was dropped" in text
        config = load_config(text)
        assert ("127.0.0.1:18461",) == config.listen
        assert ("memory", 10000, 60.0) == (
            config.cache_backend,
            config.max_entries,
            config.answer_ttl,
        )
        assert (True, 86400.0, 20.0) == (
            config.refresh,
            config.refresh_interval,
            config.shutdown_timeout,
        )
        assert Zone(timeout=4) == config.default_zone
        assert Zone("myzone", strict=True, tlsrpt=True, require_sni=False, timeout=4) == (
            config.zone("myzone")
        )

    @pytest.mark.parametrize(
        ("data", "check"),
        [
            ({"path": "/run/mta-sts.sock", "mode": 0o666}, ("unix:/run/mta-sts.sock",)),
            ({"path": "/run/mta-sts.sock"}, ("unix:/run/mta-sts.sock",)),
            ({"host": "::1", "port": 8461}, ("[::1]:8461",)),
            ({}, ("127.0.0.1:8461",)),
        ],
    )
    def test_listen(self, data: dict[str, Any], check: tuple[str, ...]) -> None:
        """TCP host/port and unix path/mode map to listen addresses."""
        config = load_config(pmsr_to_toml(data))
        assert check == config.listen
        if "mode" in data:
            assert data["mode"] == config.unix_mode

    @pytest.mark.parametrize(
        ("cache", "expect"),
        [
            (
                {"type": "sqlite", "options": {"filename": "/var/lib/c.db"}},
                ("sqlite", "/var/lib/c.db"),
            ),
            ({"type": "sqlite"}, ("sqlite", "/var/lib/smtpsts/policies.sqlite")),
            ({"type": "internal"}, ("memory", "/var/lib/smtpsts/policies.sqlite")),
            (
                {"type": "redis", "options": {"url": "redis://r:6379/2"}},
                ("redis", "redis://r:6379/2"),
            ),
            ({"type": "redis", "options": {}}, ("redis", "redis://localhost:6379/0")),
        ],
    )
    def test_cache(self, cache: dict[str, Any], expect: tuple[str, str]) -> None:
        """Cache types internal, sqlite and redis map to the memory, sqlite and redis backends."""
        text = pmsr_to_toml({"cache": cache})
        config = load_config(text)
        where = config.redis_url if expect[0] == "redis" else config.cache_path
        assert expect == (config.cache_backend, where)
        if cache == {"type": "redis", "options": {}}:
            assert "give [cache] url" in text

    def test_unsupported(self) -> None:
        """Cache types without an equivalent and wrong types raise ConfigError."""
        with pytest.raises(ConfigError, match="postgres"):
            pmsr_to_toml({"cache": {"type": "postgres"}})
        with pytest.raises(ConfigError, match="zones: expected a mapping"):
            pmsr_to_toml({"zones": ["a"]})

    def test_unknown_keys_noted(self) -> None:
        """Unknown top-level and zone keys are dropped with a note."""
        text = pmsr_to_toml({"frobnicate": 1, "default_zone": {"x": 1}, "zones": {"z": None}})
        assert "# NOTE: frobnicate is unknown and was dropped" in text
        assert "# NOTE: default_zone.x has no equivalent and was dropped" in text
        assert Zone("z") == load_config(text).zone("z")

    def test_refresh_disabled_and_quoted_names(self) -> None:
        """Proactive fetching off converts to refresh off; odd zone names are quoted."""
        text = pmsr_to_toml({"proactive_policy_fetching": {"enabled": False}, "zones": {'a"b': {}}})
        config = load_config(text)
        assert not config.refresh
        assert 'a"b' == config.zones[0].name

    def test_empty_and_bad_yaml(self) -> None:
        """An empty YAML file is the defaults; invalid YAML, or YAML that is not a mapping, is a ConfigError."""
        import yaml  # noqa: F401 -- PyYAML is in the tests group; the converter needs it

        with pytest.raises(ConfigError, match="expected a mapping"):
            config_from_pmsr("- just\n- a list\n")
        assert ServerConfig().listen == load_config(config_from_pmsr("")).listen
        with pytest.raises(ConfigError, match="not valid YAML"):
            config_from_pmsr("a: [")

    def test_without_pyyaml(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without PyYAML the converter says what to install."""
        real_import = builtins.__import__

        def no_yaml(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "yaml":
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_yaml)
        with pytest.raises(ConfigError, match="needs PyYAML"):
            config_from_pmsr("host: 127.0.0.1\n")
