"""Least privilege: the ACL rule an application's Redis user needs, and nothing more.

>>> from pevensie_redis import RedisConfig
>>> from pevensie_redis.acl import acl_rule
>>> rule = acl_rule(["user", "session"], RedisConfig())
>>> rule.split()[:5]
['resetkeys', '~user:*', '~:lock:user:*', '~session:*', '~:lock:session:*']
>>> rule.split()[5:10]
['~:tag:*', 'resetchannels', '&__pevensie__:lock-released', '-@all', '+ping']

Give it to ``ACL SETUSER <name> on ><password> <rule>`` (or a ``user`` line of an
ACL file) on every data node: ACL users are not replicated, so replicas and
every Cluster node need the user too. The user may then do everything the API
offers for its resource types, and nothing else: any other key, command or
channel is refused with ``NOPERM``, which the driver raises as
:class:`~pevensie_redis.RedisPermissionError` (a
:class:`~pevensie_redis.RedisServerError`). ``AUTH`` needs no permission.

What each command is for (:data:`FEATURES`):

- every connection: ``PING`` (the check at ``connect()``, health checks),
  ``CLIENT SETINFO`` (redis-py names itself; refused, it is skipped; Redis 7.0
  and 7.1 lack it and refuse a rule that names it: ``client_setinfo=False``),
  and with ``client_name`` ``CLIENT SETNAME``, with ``db`` other than 0
  ``SELECT``. The driver speaks RESP2, so it never sends ``HELLO``;
- ``get``/``set``/``delete``: ``GET``, ``SET``, ``UNLINK``;
- batches: ``MGET``, ``MSET``; ``set_many`` with a TTL ``EVALSHA`` of a script
  that runs ``SET`` (``SCRIPT LOAD`` the first time; a Cluster may send it as
  ``EVAL``). Without the scripting commands it falls back to ``SET ... EX``
  per key, so ``-@scripting`` users work too, at a round trip per slot;
- ``add``: ``SET``; ``incr``/``decr``: ``INCRBY``, with a TTL also ``SET`` in a
  ``MULTI``/``EXEC`` transaction (on a Cluster, one ``EVAL`` of a script
  running both); ``touch``: ``EXPIRE``, ``EXISTS``, ``PERSIST``; ``exists``:
  ``EXISTS``; ``ttl``: ``PTTL``;
- ``clear``: ``SCAN`` (which lists key names without a key check) and ``UNLINK``;
- locks (``lock()``, ``get_or_set(lock=True)``, ``cached(lock=True)``): ``SET``
  on ``:lock:<type>:<key>``, released by a script (``EVALSHA``/``EVAL``, which
  runs ``GET`` and ``DEL``) or without scripts ``GET`` then ``UNLINK``, and
  extended by one that runs ``GET`` and ``PEXPIRE`` (without scripts: ``GET``
  then ``PEXPIRE``); the release is published (``PUBLISH`` from the script) on
  the channel ``__pevensie__:lock-released``, to which waiting callers
  ``SUBSCRIBE`` (one connection per cache), so they are woken rather than
  polling;
- tags (``tags=[...]``, ``invalidate_tags``): the counters ``:tag:<tag>``
  (``{}:tag:<tag>`` with ``cluster_hash_tag``), shared by every resource type:
  ``MGET``, ``SET``, ``INCRBY``;
- the near cache: ``CLIENT ID``, ``CLIENT TRACKING``, ``SUBSCRIBE`` to the
  channel ``__redis__:invalidate``, ``PTTL``;
- a Cluster: ``CLUSTER SLOTS`` (the driver reads the slot map), ``ASKING``
  (keys being migrated); with the near cache also ``CLUSTER NODES`` (it
  listens to every primary, those without slots too);
- replica reads: ``ROLE`` (the replica's link check) and on a Cluster
  ``READONLY``.

Keys are ``~<type>:*`` and ``~:lock:<type>:*`` per resource type
(``~{<type>}:*`` and ``~:lock:{<type>}:*`` with ``cluster_hash_tag``), and
``~:tag:*`` (``~{}:tag:*``) for the tag counters.

The sentinels, when they require authentication, need their own user
(``sentinel_username``): ``-@all +sentinel|masters +sentinel|master
+sentinel|replicas +client|setinfo`` (and ``+client|setname`` with
``client_name``), which :func:`sentinel_acl_rule` returns.
"""

from __future__ import annotations

from collections.abc import Iterable

from pevensie_redis.config import RedisConfig
from pevensie_redis.protocol.commands import LOCK_RELEASED_CHANNEL as _RELEASED
from pevensie_redis.protocol.keys import scan_pattern

__all__ = ["FEATURES", "acl_rule", "sentinel_acl_rule"]

FEATURES: dict[str, tuple[str, ...]] = {
    "connection": ("ping",),
    "client_setinfo": ("client|setinfo",),
    "client_name": ("client|setname",),
    "db": ("select",),
    "single": ("get", "set", "unlink"),
    "batches": ("mget", "mset", "evalsha", "script|load"),
    "atomic": ("incrby", "exists", "expire", "persist", "pttl"),
    "transactions": ("multi", "exec"),
    "clear": ("scan",),
    "locks": ("del", "pexpire", "publish", "subscribe"),
    "near_cache": ("client|id", "client|tracking", "subscribe", "pttl"),
    "cluster": ("cluster|slots", "asking", "eval"),
    "cluster_near_cache": ("cluster|nodes",),
    "replica_reads": ("role",),
    "cluster_replica_reads": ("readonly",),
}
"""The commands each feature adds to the rule (those already added by another are not repeated).

``locks`` adds ``DEL`` for the release script, ``PEXPIRE`` for the extend
script, ``PUBLISH`` (the release script's, to wake the waiters) and
``SUBSCRIBE`` (the waiters') (``GET`` and ``UNLINK``, for the fallback, come
with ``single``); ``cluster`` adds ``EVAL``, which the Cluster driver sends for
the lock's release and extension, ``incr`` with a TTL and where a node may
not have the ``set_many`` script yet; ``transactions`` (``incr`` with a TTL)
is for one server and Sentinel.
"""

INVALIDATION_CHANNEL = "__redis__:invalidate"
"""The near cache's channel (``&__redis__:invalidate``)."""

LOCK_RELEASED_CHANNEL = _RELEASED.decode()
"""The channel lease releases are published on (``&__pevensie__:lock-released``)."""


def acl_rule(
    resource_types: Iterable[str],
    config: RedisConfig | None = None,
    *,
    client_setinfo: bool = True,
) -> str:
    """Return the ACL rule for a user of ``resource_types`` with the features ``config`` turns on.

    Keys, channels and commands, each reset first, so the rule replaces what
    the user had: ``resetkeys ~<type>:* ~:lock:<type>:* ... ~:tag:*
    resetchannels &__pevensie__:lock-released [&__redis__:invalidate] -@all
    +<command> ...``. ``client_setinfo=False`` for servers without ``CLIENT
    SETINFO`` (Redis 7.0 and 7.1), which refuse a rule that names it.
    """
    config = RedisConfig() if config is None else config
    types = list(dict.fromkeys(resource_types))
    if not types:
        raise ValueError("acl_rule needs at least one resource type")
    keys: list[str] = []
    for resource_type in types:
        # ACL key patterns are globs, as SCAN's: every key of the type, and their locks.
        pattern = scan_pattern(resource_type, hash_tag=config.cluster_hash_tag)
        keys += [f"~{pattern}", f"~:lock:{pattern}"]
    keys.append("~{}:tag:*" if config.cluster_hash_tag else "~:tag:*")
    features = ["connection"]
    if client_setinfo:
        features.append("client_setinfo")
    if config.client_name is not None:
        features.append("client_name")
    if config.db:
        features.append("db")
    features += ["single", "batches", "atomic", "clear", "locks"]
    if not config.cluster:
        features.append("transactions")
    if config.near_cache:
        features.append("near_cache")
    if config.cluster:
        features.append("cluster")
        if config.near_cache:
            features.append("cluster_near_cache")
    # The near cache fills from the primary; on a Cluster, the reads it does not keep
    # go to the replicas (which are checked at connect).
    if config.read_from_replicas and (config.cluster or not config.near_cache):
        features.append("replica_reads")
        if config.cluster:
            features.append("cluster_replica_reads")
    commands = dict.fromkeys(command for name in features for command in FEATURES[name])
    channels = [f"&{LOCK_RELEASED_CHANNEL}"]
    if config.near_cache:
        channels.append(f"&{INVALIDATION_CHANNEL}")
    return " ".join(
        ["resetkeys", *keys, "resetchannels", *channels, "-@all", *(f"+{c}" for c in commands)]
    )


def sentinel_acl_rule(config: RedisConfig | None = None, *, client_setinfo: bool = True) -> str:
    """Return the ACL rule for the user the driver logs into the sentinels with.

    ``SENTINEL MASTERS`` and ``SENTINEL MASTER`` find the primary (the sync
    and the async face ask differently), ``SENTINEL REPLICAS`` the replicas.
    """
    config = RedisConfig() if config is None else config
    commands = ["sentinel|masters", "sentinel|master", "sentinel|replicas"]
    if client_setinfo:
        commands.append("client|setinfo")
    if config.client_name is not None:
        commands.append("client|setname")
    return " ".join(["-@all", *(f"+{c}" for c in commands)])
