"""The Redis driver's configuration: a frozen dataclass, its defaults and URL parsing.

>>> from dataclasses import replace
>>> from pevensie_redis import RedisConfig, default_config
>>> replace(default_config(), host="cache.example.com").port
6379
>>> RedisConfig.from_url("rediss://app:s3cret@cache.example.com:6380/2").display_url()
'rediss://app:***@cache.example.com:6380/2'

This module does not import redis-py, so the plugin can list the driver without it.
Every field is checked once, in ``__post_init__``: an invalid configuration
raises :class:`~pevensie_cache.ConfigError` and never reaches a server.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import SplitResult, quote, unquote, urlsplit

from pevensie_cache import ConfigError, mask_url
from pevensie_cache.urls import query_options, url_scheme

__all__ = ["SCHEMES", "SENTINEL_SCHEMES", "TLS_SCHEMES", "RedisConfig", "default_config"]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel", "valkey+sentinel", "valkeys+sentinel")
"""URL schemes that name sentinels and a service instead of one server."""

SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys", *SENTINEL_SCHEMES)
"""URL schemes the driver accepts; ``valkey``/``valkeys`` are aliases of ``redis``/``rediss``."""

TLS_SCHEMES = frozenset({"rediss", "valkeys", "rediss+sentinel", "valkeys+sentinel"})
"""URL schemes that turn TLS on."""

SENTINEL_PORT = 26379
"""The port of a sentinel whose address in a URL has none."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, repr=False)
class RedisConfig:
    """How to reach and talk to one Redis-compatible server (Redis, Valkey, ...).

    Build one with :func:`default_config` and :func:`dataclasses.replace`, with
    :meth:`from_url`, or directly; every field has the default of
    :func:`default_config`. The ``repr`` shows ``password='***'``, never the password.
    """

    host: str = "localhost"
    """Host name or IP address of the server (ignored with ``unix_socket_path``)."""
    port: int = 6379
    """TCP port of the server."""
    timeout: int = 5000
    """Milliseconds: bounds connecting, each command, and the wait for a pooled connection."""
    pool_size: int = 10
    """Most connections open at once; callers beyond it wait up to ``timeout``."""
    username: str | None = None
    """ACL user name; alone, it authenticates as a ``nopass`` user (``AUTH user ""``)."""
    password: str | None = None
    """Password; alone, it authenticates the default user (``requirepass``)."""
    db: int = 0
    """Database number selected on every connection."""
    tls: bool = False
    """Connect with TLS (``rediss://``)."""
    tls_ca_file: str | None = None
    """PEM file of the CA certificates to trust; ``None`` trusts the system's CAs."""
    tls_cert_file: str | None = None
    """PEM client certificate, for servers that require one (``tls-auth-clients``)."""
    tls_key_file: str | None = None
    """PEM private key of ``tls_cert_file`` (omit when the certificate file holds it)."""
    tls_verify: bool = True
    """Verify the server's certificate and host name; turn off only for throwaway setups."""
    unix_socket_path: str | None = None
    """Connect through this Unix domain socket instead of TCP."""
    client_name: str | None = None
    """Name shown by ``CLIENT LIST`` for each connection."""
    retries: int = 1
    """Retries of a command after a connection error or timeout, with exponential backoff."""
    cluster: bool = False
    """Talk to a Redis Cluster; ``host:port`` is any node, the others are discovered."""
    cluster_hash_tag: bool = False
    """With ``cluster``: store keys as ``{resource_type}:key``, one slot per resource type."""
    sentinels: tuple[tuple[str, int], ...] = ()
    """``(host, port)`` of each Sentinel; the primary of ``service_name`` is asked of them."""
    service_name: str | None = None
    """The name the sentinels monitor the primary under (``sentinel monitor <name> ...``)."""

    _SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"password"})

    def __post_init__(self) -> None:
        _validate(self)

    def __repr__(self) -> str:
        parts = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name in self._SECRET_FIELDS and value is not None:
                parts.append(f"{spec.name}='***'")
            else:
                parts.append(f"{spec.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    @property
    def timeout_seconds(self) -> float:
        """``timeout`` in seconds, as socket APIs take it."""
        return self.timeout / 1000

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of every field, as accepted by the constructor and ``cache.new``."""
        return tuple(spec.name for spec in dataclasses.fields(cls))

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisConfig:
        """Parse a ``redis://``, ``rediss://``, ``unix://``, ``valkey://`` or ``valkeys://`` URL.

        ``redis://[[username][:password]@]host[:port][/db][?option=value&...]``;
        ``unix://[[username][:password]@]/path/to/socket[?db=N&...]``. User name
        and password are percent-decoded. Options: ``timeout`` (ms), ``pool_size``,
        ``client_name``, ``retries``, ``db``, ``tls_ca_file``, ``tls_cert_file``,
        ``tls_key_file``, ``tls_verify`` (``true``/``false``), and redis-py's
        spellings ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` and
        ``ssl_cert_reqs`` (``required`` or ``none``). ``overrides`` are
        fields that replace what the URL says.

        A Redis Cluster: ``redis://host:port?cluster=true`` (any node; add
        ``&cluster_hash_tag=true`` for one slot per resource type). Sentinel:
        ``redis+sentinel://[[username][:password]@]host1[:port],host2[:port]/service_name[/db]``
        (``rediss+sentinel://`` for TLS; a sentinel port defaults to 26379); the
        credentials are the data nodes'.
        """
        fields = _parse_url(url)
        check_field_names(overrides)
        fields.update(overrides)
        return cls(**fields)

    def display_url(self) -> str:
        """Return this configuration as a URL with the password masked, for logs and messages.

        Options that differ from the defaults appear as query parameters, so the
        URL (with the real password put back) builds the same configuration.
        """
        userinfo = ""
        if self.username is not None or self.password is not None:
            userinfo = quote(self.username or "", safe="")
            if self.password is not None:
                userinfo += ":***"
            userinfo += "@"
        query: list[str] = []
        defaults = {spec.name: spec.default for spec in dataclasses.fields(self)}
        for name in _QUERY_FIELDS:
            value = getattr(self, name)
            if value != defaults[name]:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                query.append(f"{name}={quote(text, safe='/')}")
        if self.sentinels:
            base = _sentinel_base_url(self, userinfo)
        elif self.unix_socket_path is not None:
            if self.db:
                query.insert(0, f"db={self.db}")
            base = f"unix://{userinfo}{quote(self.unix_socket_path, safe='/')}"
        else:
            scheme = "rediss" if self.tls else "redis"
            host = f"[{self.host}]" if ":" in self.host else self.host
            base = f"{scheme}://{userinfo}{host}:{self.port}/{self.db}"
        return f"{base}?{'&'.join(query)}" if query else base


_QUERY_FIELDS = (
    "timeout",
    "pool_size",
    "client_name",
    "retries",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_verify",
    "cluster",
    "cluster_hash_tag",
)


def default_config() -> RedisConfig:
    """Return the defaults: ``localhost:6379``, timeout 5000 ms, pool of 10, no credentials."""
    return RedisConfig()


def check_field_names(options: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming any key of ``options`` that is not a field."""
    unknown = sorted(set(options) - set(RedisConfig.field_names()))
    if unknown:
        raise ConfigError(
            f"unknown Redis driver option(s): {', '.join(unknown)}; "
            f"valid options: {', '.join(RedisConfig.field_names())}"
        )


# -- validation: every rule for every field, in one place ----------------------------


def _validate(config: RedisConfig) -> None:
    _check_str("host", config.host, optional=False)
    if any(ch.isspace() or ch in "/?#@" for ch in config.host):
        raise ConfigError(f"host must be a host name or IP address, got {config.host!r}")
    _check_int("port", config.port, low=1, high=65535)
    _check_int("timeout", config.timeout, low=1, unit=" (milliseconds)")
    _check_int("pool_size", config.pool_size, low=1)
    _check_str("username", config.username)
    _check_str("password", config.password, secret=True)
    _check_int("db", config.db, low=0)
    _check_bool("tls", config.tls)
    _check_bool("tls_verify", config.tls_verify)
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        _check_str(name, getattr(config, name))
        if getattr(config, name) is not None and not config.tls:
            raise ConfigError(f"{name} needs tls=True (or a rediss:// URL)")
    if config.tls_key_file is not None and config.tls_cert_file is None:
        raise ConfigError("tls_key_file needs tls_cert_file (the client certificate)")
    _check_str("unix_socket_path", config.unix_socket_path)
    if config.unix_socket_path is not None and config.tls:
        raise ConfigError("TLS is not supported over a Unix socket: drop tls or unix_socket_path")
    _check_str("client_name", config.client_name)
    if config.client_name is not None and any(
        ch.isspace() or not ch.isprintable() for ch in config.client_name
    ):
        raise ConfigError(f"client_name must not contain spaces, got {config.client_name!r}")
    _check_int("retries", config.retries, low=0, high=100)
    _validate_scale_out(config)


def _check_int(
    name: str, value: object, *, low: int, high: int | None = None, unit: str = ""
) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{name} must be an int{unit}, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bounds}{unit}, got {value}")


def _check_str(name: str, value: object, *, optional: bool = True, secret: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        allowed = "a str or None" if optional else "a str"
        raise ConfigError(f"{name} must be {allowed}, not {type(value).__name__}")
    if not value:
        hint = " (use None for none)" if optional else ""
        raise ConfigError(f"{name} must not be empty{hint}")
    if "\x00" in value:
        shown = "" if secret else f", got {value!r}"
        raise ConfigError(f"{name} must not contain NUL characters{shown}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be a bool, not {type(value).__name__}")


# -- URL parsing ---------------------------------------------------------------------

_INT_OPTIONS = frozenset({"timeout", "pool_size", "retries", "db"})
_STR_OPTIONS = frozenset({"client_name", "tls_ca_file", "tls_cert_file", "tls_key_file"})
_BOOL_OPTIONS = frozenset({"tls_verify", "cluster", "cluster_hash_tag"})
_ALIASES = {
    "ssl_ca_certs": "tls_ca_file",
    "ssl_certfile": "tls_cert_file",
    "ssl_keyfile": "tls_key_file",
}


def _split(
    url: str, shown: str, *, read_host_port: bool = True
) -> tuple[SplitResult, str | None, int | None]:
    """Split ``url``; return it with its host and port (both ``None`` unless ``read_host_port``).

    A URL that cannot be read is a :class:`ConfigError` raised outside any
    ``except`` block, so no exception quoting a piece of the URL (a password
    typed without percent-encoding) is kept as its context.
    """
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if not read_host_port:
            return parts, None, None
        return parts, parts.hostname, parts.port
    raise ConfigError(
        f"invalid Redis URL {shown!r}: its host or port cannot be read "
        "(percent-encode special characters in the user name and password)"
    )


def _parse_url(url: str) -> dict[str, Any]:
    scheme = url_scheme(url)
    shown = mask_url(url)
    if scheme not in SCHEMES:
        raise ConfigError(
            f"the Redis driver takes {', '.join(s + '://' for s in SCHEMES)} URLs, not {shown!r}"
        )
    if scheme in SENTINEL_SCHEMES:
        return _parse_sentinel_url(url, scheme, shown)
    parts, hostname, port = _split(url, shown)
    if parts.fragment:
        raise ConfigError(f"a Redis URL takes no #fragment: {shown!r}")
    fields: dict[str, Any] = {}
    if parts.username:
        fields["username"] = unquote(parts.username)
    if parts.password:
        fields["password"] = unquote(parts.password)
    if scheme == "unix":
        if hostname or port is not None:
            raise ConfigError(
                f"a unix:// URL holds a socket path, not a host: {shown!r} "
                "(write unix:///path/to/redis.sock)"
            )
        if not parts.path or parts.path == "/":
            raise ConfigError(f"a unix:// URL needs a socket path: {shown!r}")
        fields["unix_socket_path"] = unquote(parts.path)
    else:
        if hostname:
            fields["host"] = unquote(hostname)
        if port is not None:
            fields["port"] = port
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                # The path is not quoted: it may hold a piece of an unencoded password.
                raise ConfigError(f"the path of a Redis URL is the database number: {shown!r}")
            fields["db"] = int(path)
        fields["tls"] = scheme in TLS_SCHEMES
    for name, text in query_options(url).items():
        _apply_option(fields, name, text, shown)
    return fields


def _apply_option(fields: dict[str, Any], name: str, text: str, shown: str) -> None:
    target = _ALIASES.get(name, name)
    if target in fields:
        raise ConfigError(f"{target} is given twice in {shown!r}")
    if target in _INT_OPTIONS:
        if not text.isdigit():
            raise ConfigError(f"URL option {name} must be a whole number, got {text!r}")
        fields[target] = int(text)
    elif target in _STR_OPTIONS:
        fields[target] = text or None
    elif target in _BOOL_OPTIONS:
        fields[target] = _parse_bool(name, text)
    elif target == "ssl_cert_reqs":
        mode = text.lower()
        if mode not in ("none", "required"):
            raise ConfigError(f"ssl_cert_reqs must be 'required' or 'none', got {text!r}")
        fields["tls_verify"] = mode == "required"
    else:
        options = sorted({*_INT_OPTIONS, *_STR_OPTIONS, *_BOOL_OPTIONS, "ssl_cert_reqs", *_ALIASES})
        raise ConfigError(
            f"unknown Redis URL option {name!r} in {shown!r}; valid options: {', '.join(options)}"
        )


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"URL option {name} must be true or false, got {text!r}")


# -- Cluster and Sentinel ------------------------------------------------------------


def _validate_scale_out(config: RedisConfig) -> None:
    _check_bool("cluster", config.cluster)
    _check_bool("cluster_hash_tag", config.cluster_hash_tag)
    if config.cluster_hash_tag and not config.cluster:
        raise ConfigError("cluster_hash_tag needs cluster=True")
    if config.cluster and config.db != 0:
        raise ConfigError(f"a Redis Cluster has only database 0, got db={config.db}")
    if config.cluster and config.unix_socket_path is not None:
        raise ConfigError("cluster needs host and port, not unix_socket_path")
    # Normalise lists (from TOML, JSON, keyword arguments) to the frozen tuple form.
    object.__setattr__(config, "sentinels", _check_sentinels(config.sentinels))
    _check_str("service_name", config.service_name)
    if config.sentinels:
        if config.cluster:
            raise ConfigError("choose cluster or sentinels, not both")
        if config.service_name is None:
            raise ConfigError("sentinels need service_name (the name the sentinels monitor)")
        if config.unix_socket_path is not None:
            raise ConfigError("sentinels name the primary by host and port: drop unix_socket_path")
    elif config.service_name is not None:
        raise ConfigError("service_name needs sentinels (the (host, port) of each sentinel)")


def _check_sentinels(value: object) -> tuple[tuple[str, int], ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise ConfigError(
            f"sentinels must be a list of (host, port) pairs, not {type(value).__name__}"
        )
    pairs: list[tuple[str, int]] = []
    for item in value:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(f"each sentinel must be a (host, port) pair, got {item!r}")
        host, port = item
        _check_str("sentinel host", host, optional=False)
        if any(ch.isspace() or ch in "/?#@," for ch in host):
            raise ConfigError(f"sentinel host must be a host name or IP address, got {host!r}")
        _check_int("sentinel port", port, low=1, high=65535)
        pairs.append((host, port))
    return tuple(pairs)


def _parse_sentinel_url(url: str, scheme: str, shown: str) -> dict[str, Any]:
    parts, _, _ = _split(url, shown, read_host_port=False)
    if parts.fragment:
        raise ConfigError(f"a Redis URL takes no #fragment: {shown!r}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    fields: dict[str, Any] = {}
    if at:
        username, colon, password = userinfo.partition(":")
        if username:
            fields["username"] = unquote(username)
        if colon and password:
            fields["password"] = unquote(password)
    sentinels: list[tuple[str, int]] = []
    for number, address in enumerate(hosts.split(","), start=1):
        try:
            piece = urlsplit(f"//{address}")
            host, port = piece.hostname, piece.port
        except ValueError:
            host = None
        if not host:
            # The address is not quoted: it may hold a piece of an unencoded password.
            raise ConfigError(f"invalid sentinel address (number {number}) in {shown!r}")
        sentinels.append((unquote(host), SENTINEL_PORT if port is None else port))
    fields["sentinels"] = tuple(sentinels)
    path = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(
            f"the path of a {scheme}:// URL is /service_name or /service_name/db, in {shown!r}"
        )
    fields["service_name"] = path[0]
    if len(path) == 2:
        fields["db"] = int(path[1])
    fields["tls"] = scheme in TLS_SCHEMES
    for name, text in query_options(url).items():
        _apply_option(fields, name, text, shown)
    return fields


def _sentinel_base_url(config: RedisConfig, userinfo: str) -> str:
    scheme = "rediss+sentinel" if config.tls else "redis+sentinel"
    hosts = ",".join(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in config.sentinels
    )
    service = quote(config.service_name or "", safe="")
    return f"{scheme}://{userinfo}{hosts}/{service}/{config.db}"
