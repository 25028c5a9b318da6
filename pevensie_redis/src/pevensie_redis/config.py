"""The Redis driver's configuration: :class:`RedisConfig`, its defaults and its URLs.

>>> from dataclasses import replace
>>> from pevensie_redis import RedisConfig, default_config
>>> replace(default_config(), host="cache.example.com").port
6379
>>> RedisConfig.from_url("rediss://app:s3cret@cache.example.com:6380/2").display_url()
'rediss://app:***@cache.example.com:6380/2'

Every field converts the same way from keywords (``cache.new(driver="redis",
port="6379")``), mappings (``cache.from_config``) and URL query parameters, and
is checked when a configuration is made, ``dataclasses.replace`` included: an
invalid configuration raises :class:`~pevensie_cache.ConfigError` and never
reaches a server. This module does not import redis-py.
"""

# For maintainers: each field is declared once, in _DECLARATIONS (kind, bounds, unit,
# secrecy, URL query name and aliases, doc); OPTIONS is built from those declarations and
# gives the checks of __post_init__, the URL parsing, the conversion of keyword and
# mapping options, the option names, the masked repr, display_url and the option
# reference appended to the class docstring. Rules that involve several fields live in
# _check_combinations alone. To add a field: write it in RedisConfig with its default, and
# its Option in _DECLARATIONS (a field without one fails at import).

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import SplitResult, quote, unquote, urlsplit

from pevensie_cache import ConfigError, mask_url
from pevensie_cache.options import Alias, Option, OptionSet
from pevensie_cache.urls import query_options, url_scheme

__all__ = [
    "OPTIONS",
    "SCHEMES",
    "SENTINEL_SCHEMES",
    "TLS_SCHEMES",
    "RedisConfig",
    "default_config",
    "sentinel_service",
]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel", "valkey+sentinel", "valkeys+sentinel")
"""URL schemes that name sentinels and a service instead of one server."""

SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys", *SENTINEL_SCHEMES)
"""URL schemes the driver accepts; ``valkey``/``valkeys`` are aliases of ``redis``/``rediss``."""

TLS_SCHEMES = frozenset({"rediss", "valkeys", "rediss+sentinel", "valkeys+sentinel"})
"""URL schemes that turn TLS on."""

SENTINEL_PORT = 26379
"""The port of a sentinel whose address in a URL has none."""


# -- rules of one field each (used by the declarations below) ----------------------------


def _address_rule(what: str, forbidden: str) -> Callable[[str], str]:
    def rule(host: str) -> str:
        # host:port, or [v6]:port: the port has a field of its own.
        if host.startswith("["):
            name, _, rest = host[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, colon, port = host.rpartition(":")
            if not colon or ":" in name:
                port = ""  # no colon, or an IPv6 address
        if port.isdigit():
            where = "host=..., port=..." if what == "host" else "a (host, port) pair"
            raise ConfigError(
                f"{what} must not hold a port, got {host!r}: give the port on its own, "
                f"as {where} ({name!r} and {port})"
            )
        if any(ch.isspace() or ch in forbidden for ch in host):
            raise ConfigError(f"{what} must be a host name or IP address, got {host!r}")
        return host

    return rule


def _client_name_rule(name: str) -> str:
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise ConfigError(f"client_name must not contain spaces, got {name!r}")
    return name


def _cert_reqs(value: object) -> bool:
    """Read redis-py's ``ssl_cert_reqs`` (``required`` or ``none``) as ``tls_verify``."""
    mode = value.lower() if isinstance(value, str) else value
    if mode not in ("none", "required"):
        raise ConfigError(f"ssl_cert_reqs must be 'required' or 'none', got {value!r}")
    return mode == "required"


_SENTINEL_HOST = Option(
    name="sentinel host",
    kind="str",
    query=False,
    validate=_address_rule("sentinel host", "/?#@,"),
    doc="Host name or IP address of one sentinel.",
)
_SENTINEL_PORT = Option(
    name="sentinel port", kind="int", low=1, high=65535, query=False, doc="Port of one sentinel."
)


def _sentinel_address(address: str) -> tuple[str, int] | None:
    """Read ``host[:port]`` (``[::1]:26380``); ``None`` if it cannot be read."""
    try:
        piece = urlsplit(f"//{address}")
        host, port = piece.hostname, piece.port
    except ValueError:
        return None
    if not host:
        return None
    return unquote(host), SENTINEL_PORT if port is None else port


def _parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """Read ``host[:port],host[:port]`` (as in a settings file) into ``(host, port)`` pairs."""
    pairs = []
    for number, address in enumerate(text.split(","), start=1):
        pair = _sentinel_address(address.strip())
        if pair is None:
            raise ConfigError(f"invalid sentinel address (number {number}) in {text!r}")
        pairs.append(pair)
    return tuple(pairs)


def _check_sentinels(value: object) -> tuple[tuple[str, int], ...]:
    """Check ``(host, port)`` pairs; lists (from TOML, JSON, keywords) become the tuple form.

    An item may also be written ``"host[:port]"`` (``sentinels = ["s1:26379", "s2"]``
    in a TOML file), read as one address of the text form.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise ConfigError(
            f"sentinels must be a list of (host, port) pairs, not {type(value).__name__}"
        )
    pairs: list[tuple[str, int]] = []
    for number, item in enumerate(value, start=1):
        if isinstance(item, str):
            pair = _sentinel_address(item.strip()) if "," not in item else None
            if pair is None:
                raise ConfigError(
                    f"invalid sentinel address (number {number}) {item!r}: "
                    "write 'host' or 'host:port'"
                )
            item = pair
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(
                f"each sentinel must be a (host, port) pair or a 'host:port' text, got {item!r}"
            )
        pairs.append((_SENTINEL_HOST.check(item[0]), _SENTINEL_PORT.check(item[1])))
    return tuple(pairs)


# -- the configuration ---------------------------------------------------------------------


_DECLARATIONS: dict[str, Option] = {
    "host": Option(
        kind="str",
        query=False,
        validate=_address_rule("host", "/?#@"),
        doc="Host name or IP address of the server (ignored with unix_socket_path).",
    ),
    "port": Option(kind="int", low=1, high=65535, query=False, doc="TCP port of the server."),
    "timeout": Option(
        kind="duration",
        unit="ms",
        low=1,
        floor=100,
        query=True,
        doc="Bounds connecting, each command, and the wait for a pooled connection; "
        "a bare number is milliseconds, '2s' or '500ms' say their unit.",
    ),
    "pool_size": Option(
        kind="int",
        low=1,
        query=True,
        doc="Most connections open at once; callers beyond it wait up to timeout.",
    ),
    "username": Option(
        kind="str",
        optional=True,
        query=False,
        doc='ACL user name; alone, it authenticates as a nopass user (AUTH user "").',
    ),
    "password": Option(
        kind="str",
        optional=True,
        secret=True,
        query=False,
        doc="Password; alone, it authenticates the default user (requirepass).",
    ),
    "db": Option(
        kind="int",
        low=0,
        query=True,
        display=False,  # a display URL puts it in the path
        doc="Database number selected on every connection.",
    ),
    "tls": Option(kind="bool", query=False, doc="Connect with TLS (the rediss:// schemes)."),
    "tls_ca_file": Option(
        kind="str",
        optional=True,
        query=True,
        aliases=("ssl_ca_certs",),
        doc="PEM file of the CA certificates to trust; None trusts the system's CAs.",
    ),
    "tls_cert_file": Option(
        kind="str",
        optional=True,
        query=True,
        aliases=("ssl_certfile",),
        doc="PEM client certificate, for servers that require one (tls-auth-clients).",
    ),
    "tls_key_file": Option(
        kind="str",
        optional=True,
        query=True,
        aliases=("ssl_keyfile",),
        doc="PEM private key of tls_cert_file (omit when the certificate file holds it).",
    ),
    "tls_verify": Option(
        kind="bool",
        query=True,
        aliases=(Alias("ssl_cert_reqs", _cert_reqs),),
        doc="Verify the server's certificate and host name; turn off only for throwaway setups.",
    ),
    "unix_socket_path": Option(
        kind="str",
        optional=True,
        query=False,
        doc="Connect through this Unix domain socket instead of TCP (unix:// URLs).",
    ),
    "client_name": Option(
        kind="str",
        optional=True,
        query=True,
        validate=_client_name_rule,
        doc="Name shown by CLIENT LIST for each connection.",
    ),
    "retries": Option(
        kind="int",
        low=0,
        high=100,
        query=True,
        doc=(
            "Retries of a command after a connection error or timeout, with exponential backoff "
            "(a Cluster's CLUSTERDOWN or TRYAGAIN is retried until timeout is spent)."
        ),
    ),
    "cluster": Option(
        kind="bool",
        query=True,
        doc="Talk to a Redis Cluster; host:port is any node, the others are discovered.",
    ),
    "cluster_hash_tag": Option(
        kind="bool",
        query=True,
        doc="With cluster: store keys as {resource_type}:key, one slot per resource type.",
    ),
    "sentinels": Option(
        kind="custom",
        parse=_parse_sentinels,
        validate=_check_sentinels,
        query=False,
        doc="(host, port) or 'host:port' of each Sentinel, or 'host:port,host:port' as text; "
        "the primary of service_name is asked of them.",
    ),
    "service_name": Option(
        kind="str",
        optional=True,
        query=False,
        doc="The name the sentinels monitor the primary under (sentinel monitor <name> ...).",
    ),
    "sentinel_username": Option(
        kind="str",
        optional=True,
        query=True,
        doc="ACL user name for the sentinels themselves (not the data nodes').",
    ),
    "sentinel_password": Option(
        kind="str",
        optional=True,
        secret=True,
        query=True,
        doc="Password for the sentinels themselves (requirepass or ACL on the sentinels).",
    ),
    "read_from_replicas": Option(
        kind="bool",
        query=True,
        doc="With cluster or sentinels: get and get_many may read from replicas (rotating, "
        "the primary when none can answer); writes never do. Replication is asynchronous, "
        "so such a read may return an older value (no read-your-writes).",
    ),
    "near_cache": Option(
        kind="bool",
        query=True,
        doc="Keep recent reads in this process, kept coherent by the server's key tracking "
        "(Redis 6+, Valkey; single server, Sentinel and Cluster).",
    ),
    "near_cache_size": Option(
        kind="int",
        low=1,
        query=True,
        doc="With near_cache: the most entries kept in this process (least recently used out).",
    ),
    "near_cache_max_bytes": Option(
        kind="size",
        low=1024,
        query=True,
        doc="With near_cache: the most memory its entries take in this process, keys, values "
        "and bookkeeping counted (least recently used out); bytes, or with a unit: 512kB, 64MiB.",
    ),
    "large_read_rate": Option(
        kind="size",
        low=0,
        query=True,
        doc="Bytes a second the connection for large replies (over 256 KiB) reads while small "
        "commands are being served, so the copying of a transfer leaves their replies the CPU "
        "they need; full speed otherwise, and once a large read has waited half its timeout. "
        "With a unit: 64MiB; 0: never slowed (large reads then compete with small ones).",
    ),
}
"""Each field of :class:`RedisConfig`, declared once: kind, bounds, unit, URL form, doc."""


@dataclass(frozen=True, repr=False)
class RedisConfig:
    """How to reach and talk to one Redis-compatible server (Redis, Valkey) or a cluster.

    Build one with :func:`default_config` and :func:`dataclasses.replace`, with
    :meth:`from_url`, or directly; every field has the default of
    :func:`default_config`. The constructor takes typed values (``port=6379``);
    ``cache.new(driver="redis", ...)``, ``cache.from_config`` and URLs also take
    text (``port="6379"``, ``timeout="2s"``). The ``repr`` shows
    ``password='***'``, never the password.
    """

    driver_name: ClassVar[str] = "redis"
    """The driver this configures: ``cache.new(RedisConfig(...))`` builds it."""

    host: str = "localhost"
    port: int = 6379
    timeout: int = 5000
    pool_size: int = 10
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_verify: bool = True
    unix_socket_path: str | None = None
    client_name: str | None = None
    retries: int = 1
    cluster: bool = False
    cluster_hash_tag: bool = False
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    read_from_replicas: bool = False
    near_cache: bool = False
    near_cache_size: int = 10_000
    near_cache_max_bytes: int = 64 << 20
    large_read_rate: int = 16 << 20

    def __post_init__(self) -> None:
        OPTIONS.check_fields(self)
        _check_combinations(self)

    def __repr__(self) -> str:
        return OPTIONS.masked_repr(self)

    @property
    def timeout_seconds(self) -> float:
        """``timeout`` in seconds, as socket APIs take it."""
        return self.timeout / 1000

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of every field, as accepted by the constructor and ``cache.new``."""
        return OPTIONS.names

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisConfig:
        """Parse a ``redis://``, ``rediss://``, ``unix://``, ``valkey://`` or ``valkeys://`` URL.

        ``redis://[[username][:password]@]host[:port][/db][?option=value&...]``;
        ``unix://[[username][:password]@]/path/to/socket[?db=N&...]``. User name
        and password are percent-decoded. The query options are the fields marked
        ``URL ?name=`` in the class docstring, plus redis-py's spellings
        ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` and ``ssl_cert_reqs``
        (``required`` or ``none``). ``timeout`` is milliseconds unless it says
        its unit (``?timeout=2s``). ``overrides`` are fields that replace what
        the URL says, converted as ``cache.new`` converts them.

        A Redis Cluster: ``redis://host:port?cluster=true`` (any node; add
        ``&cluster_hash_tag=true`` for one slot per resource type,
        ``&read_from_replicas=true`` to read from replicas). Sentinel:
        ``redis+sentinel://[[username][:password]@]host1[:port],host2[:port]/service_name[/db]``
        (``rediss+sentinel://`` for TLS; a sentinel port defaults to 26379); the
        credentials are the data nodes'.
        """
        fields = _parse_url(url)
        fields.update(OPTIONS.convert(overrides))
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
        query = OPTIONS.url_query(self)
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


OPTIONS = OptionSet.from_dataclass(
    RedisConfig,
    owner="Redis",
    declarations=_DECLARATIONS,
    hints={
        "max_connections": "pool_size",
        "socket_timeout": "timeout",
        "socket_connect_timeout": "timeout",
        "ssl": "tls",
        "database": "db",
        "url": "cache.from_url(url)",
    },
    url_hints={"ssl": "rediss://"},
)
"""Every option of the Redis driver, built from the declarations of :class:`RedisConfig`."""
OPTIONS.document(RedisConfig)


def default_config() -> RedisConfig:
    """Return the defaults: ``localhost:6379``, timeout 5000 ms, pool of 10, no credentials."""
    return RedisConfig()


def sentinel_service(config: RedisConfig) -> str:
    """Return the service the sentinels monitor; a ``ConfigError`` when ``config`` names none."""
    if config.service_name is None:
        raise ConfigError("sentinels need service_name (the name the sentinels monitor)")
    return config.service_name


# -- rules across fields: every one in this function -----------------------------------------


def _check_combinations(config: RedisConfig) -> None:
    for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        if getattr(config, name) is not None and not config.tls:
            raise ConfigError(f"{name} needs tls=True (or a rediss:// URL)")
    if config.tls_key_file is not None and config.tls_cert_file is None:
        raise ConfigError("tls_key_file needs tls_cert_file (the client certificate)")
    if config.unix_socket_path is not None and config.tls:
        raise ConfigError("TLS is not supported over a Unix socket: drop tls or unix_socket_path")
    if config.cluster_hash_tag and not config.cluster:
        raise ConfigError("cluster_hash_tag needs cluster=True")
    if config.cluster and config.db != 0:
        raise ConfigError(f"a Redis Cluster has only database 0, got db={config.db}")
    if config.cluster and config.unix_socket_path is not None:
        raise ConfigError("cluster needs host and port, not unix_socket_path")
    if config.sentinels:
        if config.cluster:
            raise ConfigError("choose cluster or sentinels, not both")
        sentinel_service(config)
        if config.unix_socket_path is not None:
            raise ConfigError("sentinels name the primary by host and port: drop unix_socket_path")
    elif config.service_name is not None:
        raise ConfigError("service_name needs sentinels (the (host, port) of each sentinel)")
    if not config.sentinels and (
        config.sentinel_username is not None or config.sentinel_password is not None
    ):
        raise ConfigError("sentinel_username and sentinel_password need sentinels")
    if config.read_from_replicas and not (config.cluster or config.sentinels):
        raise ConfigError(
            "read_from_replicas needs cluster=True or sentinels: a single server has no "
            "replicas to read from"
        )


# -- URL parsing -----------------------------------------------------------------------------

_FRAGMENT = (
    "a Redis URL takes no #fragment: {shown!r}; a '#' in a password must be "
    "percent-encoded as %23 (urllib.parse.quote(password, safe=''))"
)


def _escapes(url: str) -> str:
    """Name the percent-encoding of the characters of ``url`` that break its userinfo."""
    userinfo = url.partition("://")[2].rpartition("@")[0]
    found = [f"{ch!r} as %{ord(ch):02X}" for ch in "#/?@" if ch in userinfo]
    return ": " + ", ".join(found) + "; urllib.parse.quote(password, safe='')" if found else ""


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
        f"(percent-encode special characters in the user name and password{_escapes(url)})"
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
        raise ConfigError(_FRAGMENT.format(shown=shown))
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
            if not _database_number(path):
                # The path is not quoted: it may hold a piece of an unencoded password.
                raise ConfigError(f"the path of a Redis URL is the database number: {shown!r}")
            fields["db"] = int(path)
        fields["tls"] = scheme in TLS_SCHEMES
    OPTIONS.convert_query(query_options(url), fields, shown=shown)
    return fields


def _database_number(text: str) -> bool:
    """Whether a URL's path segment is a database number: ASCII digits, nine at most."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def _parse_sentinel_url(url: str, scheme: str, shown: str) -> dict[str, Any]:
    parts, _, _ = _split(url, shown, read_host_port=False)
    if parts.fragment:
        raise ConfigError(_FRAGMENT.format(shown=shown))
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
        pair = _sentinel_address(address)
        if pair is None:
            # The address is not quoted: it may hold a piece of an unencoded password.
            raise ConfigError(f"invalid sentinel address (number {number}) in {shown!r}")
        sentinels.append(pair)
    fields["sentinels"] = tuple(sentinels)
    path = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2 or (len(path) == 2 and not _database_number(path[1])):
        raise ConfigError(
            f"the path of a {scheme}:// URL is /service_name or /service_name/db, in {shown!r}"
        )
    fields["service_name"] = path[0]
    if len(path) == 2:
        fields["db"] = int(path[1])
    fields["tls"] = scheme in TLS_SCHEMES
    OPTIONS.convert_query(query_options(url), fields, shown=shown)
    return fields


def _sentinel_base_url(config: RedisConfig, userinfo: str) -> str:
    scheme = "rediss+sentinel" if config.tls else "redis+sentinel"
    hosts = ",".join(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in config.sentinels
    )
    service = quote(config.service_name or "", safe="")
    return f"{scheme}://{userinfo}{hosts}/{service}/{config.db}"
