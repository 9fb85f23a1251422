"""
Configuration of the Postfix policy server (TOML), and migration from postfix-mta-sts-resolver.

:func:`load_config` reads the TOML text (stdlib :mod:`tomllib`) into a
:class:`ServerConfig`; every key is checked, so a typo is an error naming
the key, not a silently ignored setting. :func:`config_from_pmsr` turns a
postfix-mta-sts-resolver YAML file (``/etc/mta-sts-daemon.yml``) into the
equivalent TOML text (YAML needs PyYAML; without it a clear error says so).

Both work on text: reading files is the caller's business.

Example::

    [server]
    listen = ["127.0.0.1:8461", "unix:/run/smtpsts/postfix.sock"]

    [cache]
    backend = "sqlite"
    path = "/var/lib/smtpsts/policies.sqlite"

    [zones.default]
    require_sni = true

    [zones.strict]
    strict = true
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from smtpsts.cache import PolicyConfig
from smtpsts.exceptions import ConfigError
from smtpsts.postfix.protocol import DaneAnswer, Zone

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_SQLITE_PATH",
    "LOG_FORMATS",
    "ConfigError",
    "ServerConfig",
    "config_from_pmsr",
    "load_config",
    "metrics_address",
    "pmsr_to_toml",
    "split_address",
]

DEFAULT_LISTEN: Final = "127.0.0.1:8461"
"""Where the server listens without configuration (postfix-mta-sts-resolver's port)."""

DEFAULT_SQLITE_PATH: Final = "/var/lib/smtpsts/policies.sqlite"
"""The default SQLite cache file (the cache survives restarts, STS-CACHE-17)."""

BACKENDS: Final = ("memory", "sqlite", "redis")


@attrs.frozen
class ServerConfig:
    """
    Everything ``smtpsts postfix serve`` needs.

    Attributes:
        listen: ``HOST:PORT`` (``[v6]:PORT`` for IPv6) or ``unix:PATH`` addresses.
        unix_mode: Permission bits for unix sockets (``0660``: the owner
            and the socket's group, Postfix's).
        unix_group: The group unix sockets are given (``None``: ``postfix``
            when that group exists, else the socket keeps the server's group).
        postfix_user: The user Postfix connects to unix sockets as; its
            connections (and root's) may use slots kept in reserve for them
            (``None``: ``postfix`` when that user exists).
        max_connections: Connections served at once (also bounded by the
            descriptors the process may open). When full, a new connection
            evicts the one stalled inside a netstring longest, or idle
            longest; with none of those it is closed at once.
        max_connections_per_peer: Connections one non-loopback TCP peer
            address may hold (``None``: half of the connection slots).
        max_pending: Requests of one connection being answered at once
            (pipelining); the connection is not read further meanwhile.
        idle_timeout: Seconds a connection may stay silent between requests
            before it is closed.
        frame_timeout: Seconds a started netstring may take to arrive whole
            (a stalled request) before the connection is closed.
        shutdown_timeout: Seconds running requests get on shutdown.
        cache_backend: ``memory``, ``sqlite`` or ``redis``.
        cache_path: The SQLite file.
        redis_url: The Redis URL.
        max_entries: Bound of the memory cache (``None``: unbounded).
        answer_ttl: Seconds a repeated request may be answered from the
            server's answer cache without a new lookup (never past the
            policy's expiry or the DANE verdict's reuse time; failed lookups
            are never cached). ``0`` turns the answer cache off: then every
            request re-checks the TXT record (through the DNS cache).
        answer_entries: The most answers kept in the answer cache.
        refresh: Refresh cached policies in the background (STS-CACHE-10).
        refresh_interval: Seconds after a fetch when a policy is refreshed.
        nameservers: ``IP[:PORT]`` DNS servers (empty: the system's). A
            validating resolver on loopback also enables DANE checks.
        dns_timeout: Seconds per DNS lookup.
        dns_cache: Keep DNS answers for their TTL (the TXT record is still
            checked on every lookup that the answer cache does not answer,
            through this cache: STS-CACHE-08).
        trust_ad: Trust the resolver's DNSSEC AD bit (``None``: only on
            loopback, DANE-02).
        cafile: PEM trust store for policy hosts (``None``: the system's).
        connect_to: ``HOST:PORT:ADDR:PORT`` overrides (tests and labs).
        policy: The policy machine's knobs.
        default_zone: The zone for unknown socketmap names.
        zones: The named zones (they inherit the default zone's settings).
        metrics_listen: ``HOST:PORT`` (``[v6]:PORT``) to serve Prometheus
            metrics on ``/metrics`` (``None``: off; needs the ``metrics``
            extra; see :mod:`smtpsts.postfix.metrics`).
        log_format: ``text`` or ``json`` (one JSON object per line).
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    unix_mode: int = 0o660
    unix_group: str | None = None
    postfix_user: str | None = None
    max_connections: int = 1000
    max_connections_per_peer: int | None = None
    max_pending: int = 128
    idle_timeout: float = 300.0
    frame_timeout: float = 10.0
    shutdown_timeout: float = 10.0
    cache_backend: str = "sqlite"
    cache_path: str = DEFAULT_SQLITE_PATH
    redis_url: str = "redis://localhost:6379/0"
    max_entries: int | None = None
    answer_ttl: float = 60.0
    answer_entries: int = 100_000
    refresh: bool = True
    refresh_interval: float = 86400.0
    nameservers: tuple[str, ...] = ()
    dns_timeout: float = 5.0
    dns_cache: bool = True
    trust_ad: bool | None = None
    cafile: str | None = None
    connect_to: tuple[str, ...] = ()
    policy: PolicyConfig = attrs.field(factory=PolicyConfig)
    default_zone: Zone = attrs.field(factory=Zone)
    zones: tuple[Zone, ...] = ()
    metrics_listen: str | None = None
    log_format: str = "text"

    def zone(self, name: str) -> Zone:
        """
        The zone a socketmap name selects.

        Args:
            name: The map name from the request.

        Returns:
            The named zone, or :attr:`default_zone`.
        """
        for zone in self.zones:
            if zone.name == name:
                return zone
        return self.default_zone


def _check(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    # bool is an int in Python; TOML keeps them apart, so do we.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    return value


def _positive(where: str, value: Any) -> float:
    number = float(_check(where, value, (int, float), "a number"))
    if not number > 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return number


def _non_negative(where: str, value: Any) -> float:
    number = float(_check(where, value, (int, float), "a number"))
    if number < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return number


def _count(where: str, value: Any) -> int:
    number: int = _check(where, value, int, "an integer")
    if number < 1:
        raise ConfigError(f"{where}: must be at least 1, got {value!r}")
    return number


def _non_negative_int(where: str, value: Any) -> int:
    number: int = _check(where, value, int, "an integer")
    if number < 0:
        raise ConfigError(f"{where}: must not be negative, got {value!r}")
    return number


def _bool(where: str, value: Any) -> bool:
    result: bool = _check(where, value, bool, "true or false")
    return result


def _str(where: str, value: Any) -> str:
    result: str = _check(where, value, str, "a string")
    return result


def _strings(where: str, value: Any) -> tuple[str, ...]:
    items = _check(where, value, list, "a list of strings")
    return tuple(_str(f"{where}[{i}]", item) for i, item in enumerate(items))


def _mode(where: str, value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not an octal mode") from None
    return _non_negative_int(where, value)


def _table(where: str, value: Any) -> dict[str, Any]:
    result: dict[str, Any] = _check(where, value, dict, "a table")
    return result


_Fields = Mapping[str, tuple[str, Callable[[str, Any], Any]]]


def _read(where: str, table: Mapping[str, Any], fields: _Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}.{key}: unknown setting (known: {known})")
        attribute, convert = fields[key]
        out[attribute] = convert(f"{where}.{key}", value)
    return out


_SERVER: Final[_Fields] = {
    "listen": ("listen", _strings),
    "unix_mode": ("unix_mode", _mode),
    "unix_group": ("unix_group", _str),
    "postfix_user": ("postfix_user", _str),
    "max_connections": ("max_connections", _count),
    "max_connections_per_peer": ("max_connections_per_peer", _count),
    "max_pending": ("max_pending", _count),
    "idle_timeout": ("idle_timeout", _positive),
    "frame_timeout": ("frame_timeout", _positive),
    "shutdown_timeout": ("shutdown_timeout", _positive),
}


def _backend(where: str, value: Any) -> str:
    name = _str(where, value)
    if name not in BACKENDS:
        raise ConfigError(f"{where}: {name!r} is not one of {', '.join(BACKENDS)}")
    return name


_CACHE: Final[_Fields] = {
    "backend": ("cache_backend", _backend),
    "path": ("cache_path", _str),
    "url": ("redis_url", _str),
    "max_entries": ("max_entries", _count),
    "answer_ttl": ("answer_ttl", _non_negative),
    "answer_entries": ("answer_entries", _count),
}
_REFRESH: Final[_Fields] = {
    "enabled": ("refresh", _bool),
    "interval": ("refresh_interval", _positive),
}
_RESOLVER: Final[_Fields] = {
    "nameservers": ("nameservers", _strings),
    "timeout": ("dns_timeout", _positive),
    "cache": ("dns_cache", _bool),
    "trust_ad": ("trust_ad", _bool),
    "cafile": ("cafile", _str),
    "connect_to": ("connect_to", _strings),
}
_POLICY: Final[_Fields] = {
    "defer_on_dns_error": ("defer_on_dns_error", _bool),
    "negative_ttl_max": ("negative_ttl_max", _non_negative_int),
    "backoff": ("backoff", _non_negative_int),
    "require_text_plain": ("require_text_plain", _bool),
    "fetch_timeout": ("timeout", _positive),
    "max_bytes": ("max_bytes", _count),
}


def _dane(where: str, value: Any) -> DaneAnswer:
    text = _str(where, value)
    try:
        return DaneAnswer(text)
    except ValueError:
        choices = ", ".join(d.value for d in DaneAnswer)
        raise ConfigError(f"{where}: {text!r} is not one of {choices}") from None


_ZONE: Final[_Fields] = {
    "strict": ("strict", _bool),
    "strict_testing": ("strict", _bool),
    "require_sni": ("require_sni", _bool),
    "tlsrpt": ("tlsrpt", _bool),
    "timeout": ("timeout", _positive),
    "dane": ("dane", _dane),
    "temp_on_timeout": ("temp_on_timeout", _bool),
}


def metrics_address(where: str, value: Any) -> str:
    """
    Check a ``HOST:PORT`` (or ``[v6]:PORT``) metrics address.

    Args:
        where: The setting's name, for the error.
        value: The value given.

    Returns:
        The address, unchanged.

    Raises:
        ConfigError: It is not ``HOST:PORT`` with a port in 0..65535.
    """
    text = _str(where, value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not HOST:PORT (a port 0..65535)")
    return text


def split_address(text: str) -> tuple[str, int]:
    """
    Split a checked ``HOST:PORT`` / ``[v6]:PORT`` address.

    Args:
        text: An address :func:`metrics_address` accepted.

    Returns:
        The host (without brackets) and the port.
    """
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _log_format(where: str, value: Any) -> str:
    text = _str(where, value)
    if text not in LOG_FORMATS:
        raise ConfigError(f"{where}: {text!r} is not one of {', '.join(LOG_FORMATS)}")
    return text


LOG_FORMATS: Final = ("text", "json")
_METRICS: Final[_Fields] = {"listen": ("metrics_listen", metrics_address)}
_LOGGING: Final[_Fields] = {"format": ("log_format", _log_format)}
_SECTIONS: Final = (
    "server",
    "cache",
    "refresh",
    "resolver",
    "policy",
    "zones",
    "metrics",
    "logging",
)


def load_config(text: str) -> ServerConfig:
    """
    Read the TOML configuration.

    Args:
        text: The TOML document.

    Returns:
        The configuration; settings not given keep their defaults.

    Raises:
        ConfigError: The text is not TOML, or a setting is unknown or has a
            wrong type or value.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    settings: dict[str, Any] = {}
    for section in document:
        if section not in _SECTIONS:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(_SECTIONS)})")
    settings |= _read("server", _table("server", document.get("server", {})), _SERVER)
    settings |= _read("cache", _table("cache", document.get("cache", {})), _CACHE)
    settings |= _read("refresh", _table("refresh", document.get("refresh", {})), _REFRESH)
    settings |= _read("resolver", _table("resolver", document.get("resolver", {})), _RESOLVER)
    settings |= _read("metrics", _table("metrics", document.get("metrics", {})), _METRICS)
    settings |= _read("logging", _table("logging", document.get("logging", {})), _LOGGING)
    knobs = _read("policy", _table("policy", document.get("policy", {})), _POLICY)
    settings["policy"] = PolicyConfig(**knobs)
    zones = _table("zones", document.get("zones", {}))
    default = Zone(
        **_read("zones.default", _table("zones.default", zones.get("default", {})), _ZONE)
    )
    named = []
    for name, table in zones.items():
        if name == "default":
            continue
        where = f"zones.{name}"
        named.append(attrs.evolve(default, name=name, **_read(where, _table(where, table), _ZONE)))
    settings["default_zone"] = default
    settings["zones"] = tuple(named)
    return ServerConfig(**settings)


# ---------------------------------------------------------------- migration


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


_PMSR_ZONE: Final = {
    "strict_testing": "strict",
    "timeout": "timeout",
    "require_sni": "require_sni",
    "tlsrpt": "tlsrpt",
}


def _pmsr_zone(where: str, data: Any, notes: list[str]) -> list[str]:
    lines = []
    for key, value in _check(where, data or {}, dict, "a mapping").items():
        if key in _PMSR_ZONE:
            lines.append(f"{_PMSR_ZONE[key]} = {_toml_value(value)}")
        else:
            notes.append(f"{where}.{key} has no equivalent and was dropped")
    return lines


def _pmsr_cache(data: Any, notes: list[str]) -> list[str]:
    cache = _check("cache", data, dict, "a mapping")
    kind = cache.get("type", "internal")
    options = _check("cache.options", cache.get("options") or {}, dict, "a mapping")
    if kind == "internal":
        lines = ['backend = "memory"']
        if "cache_size" in options:
            lines.append(f"max_entries = {_toml_value(options['cache_size'])}")
        return lines
    if kind == "sqlite":
        lines = ['backend = "sqlite"']
        if "filename" in options:
            lines.append(f"path = {_toml_value(options['filename'])}")
        return lines
    if kind == "redis":
        lines = ['backend = "redis"']
        if "url" in options:
            lines.append(f"url = {_toml_value(options['url'])}")
        else:
            notes.append("cache.options without url: give [cache] url for your Redis server")
        return lines
    raise ConfigError(
        f"cache.type {kind!r} is not supported; use internal (memory), sqlite or redis"
    )


def pmsr_to_toml(data: Mapping[str, Any]) -> str:
    """
    Turn a parsed postfix-mta-sts-resolver configuration into our TOML.

    Settings without an equivalent are listed in comments at the top.
    ``cache_grace`` (how long an answer is reused without a new lookup)
    becomes ``[cache] answer_ttl``.

    Args:
        data: The parsed YAML mapping.

    Returns:
        The TOML text (loadable by :func:`load_config`).

    Raises:
        ConfigError: A value has the wrong type, or the cache type has no
            equivalent (``redis_sentinel``, ``postgres``).
    """
    data = _check("the configuration", data, dict, "a mapping")
    notes: list[str] = []
    listen: list[str] = []
    server: list[str] = []
    if "path" in data:
        listen.append(f"unix:{data['path']}")
        if "mode" in data:
            # An explicit mode is kept; without one ours applies (0660 and
            # Postfix's group, where postfix-mta-sts-resolver had 0666).
            server.append(f'unix_mode = "{int(data["mode"]):o}"')
        else:
            notes.append(
                "the unix socket gets mode 0660 and group postfix (postfix-mta-sts-resolver "
                "used 0666); set [server] unix_mode / unix_group to change that"
            )
    else:
        host = str(data.get("host", "127.0.0.1"))
        port = int(data.get("port", 8461))
        listen.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    server.insert(0, f"listen = {_toml_value(listen)}")
    if "shutdown_timeout" in data:
        server.append(f"shutdown_timeout = {_toml_value(data['shutdown_timeout'])}")
    notes += [f"{key} has no equivalent and was dropped" for key in ("reuse_port",) if key in data]
    known = {"host", "port", "path", "mode", "shutdown_timeout", "cache_grace", "reuse_port"}
    known |= {"cache", "proactive_policy_fetching", "default_zone", "zones"}
    notes += [f"{key} is unknown and was dropped" for key in data if key not in known]
    out = ["# Converted from a postfix-mta-sts-resolver configuration by smtpsts."]
    out.append("# DANE: destinations with DNSSEC-validated TLSA records get 'dane-only'")
    out.append("# (postfix-mta-sts-resolver let MTA-STS override DANE); see [zones.*] dane.")
    out += [f"# NOTE: {note}" for note in notes]
    out += ["", "[server]", *server]
    cache = _pmsr_cache(data["cache"], notes) if "cache" in data else []
    if "cache_grace" in data:
        grace = _check("cache_grace", data["cache_grace"], (int, float), "a number")
        cache.append(f"answer_ttl = {_toml_value(grace)}")
    if cache:
        out += ["", "[cache]", *cache]
    fetching = _check(
        "proactive_policy_fetching", data.get("proactive_policy_fetching") or {}, dict, "a mapping"
    )
    if fetching:
        out += ["", "[refresh]", f"enabled = {_toml_value(bool(fetching.get('enabled')))}"]
        if "interval" in fetching:
            out.append(f"interval = {_toml_value(fetching['interval'])}")
    out += ["", "[zones.default]", *_pmsr_zone("default_zone", data.get("default_zone"), notes)]
    for name, zone in _check("zones", data.get("zones") or {}, dict, "a mapping").items():
        out += ["", f"[zones.{_toml_value(str(name))}]", *_pmsr_zone(f"zones.{name}", zone, notes)]
    # Notes found while converting sections go in too.
    header_end = out.index("")
    out[header_end:header_end] = [
        f"# NOTE: {n}" for n in notes if f"# NOTE: {n}" not in out[:header_end]
    ]
    return "\n".join(out) + "\n"


def config_from_pmsr(yaml_text: str) -> str:
    """
    Convert a postfix-mta-sts-resolver YAML configuration to smtpsts TOML.

    Args:
        yaml_text: The YAML document (``/etc/mta-sts-daemon.yml``).

    Returns:
        The TOML text.

    Raises:
        ConfigError: PyYAML is not installed, the text is not YAML, or a
            setting cannot be converted.
    """
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: PLC0415 -- optional extra
    except ImportError:
        raise ConfigError(
            "reading a postfix-mta-sts-resolver YAML file needs PyYAML: pip install PyYAML"
        ) from None
    try:
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}") from None
    return pmsr_to_toml(data if data is not None else {})
