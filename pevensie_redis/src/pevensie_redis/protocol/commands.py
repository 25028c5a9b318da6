"""Every command the driver sends, packed once, and the shape of the reply each one gets.

No I/O here, and no import of redis-py or of any driver, so every driver
(single server, Cluster, Sentinel) and every face (sync, async) packs and
reads commands the same way. Each command's bytes are defined here and
nowhere else; keys come packed already (:mod:`~pevensie_redis.protocol.keys`).

Packing a ``GET`` or ``SET`` costs one ``bytes`` formatting; redis-py's generic
packer does far more work per call.

Next to each command stands the shape of its reply (a :data:`Shape`: a
predicate on a reply that is not an error reply), such as :data:`GET_REPLY`
(a bulk string or nil) or :data:`SET_REPLY` (``OK``). A channel given a shape
checks the reply against it: a reply of another shape means the connection
is out of step or not talking to a Redis server, so the channel raises
``RedisProtocolError`` and closes that connection. Error replies (exception
instances) always pass: the driver interprets them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "ASKING",
    "BATCH_SIZE",
    "CLIENT_ID_REPLY",
    "CLUSTER_NODES",
    "CLUSTER_NODES_REPLY",
    "CLUSTER_SLOTS",
    "EXEC",
    "EXTEND_LOCK_SCRIPT",
    "EXTEND_LOCK_SCRIPT_SHA",
    "GET_REPLY",
    "INCR_EX_SCRIPT",
    "INTEGER_REPLY",
    "INVALIDATION_CHANNEL",
    "LOCK_RELEASED_CHANNEL",
    "MULTI",
    "MULTI_REPLY",
    "NOT_TEXT",
    "OK_REPLY",
    "PING",
    "PING_REPLY",
    "QUEUED_REPLY",
    "READONLY",
    "RELEASE_LOCK_SCRIPT",
    "RELEASE_LOCK_SCRIPT_SHA",
    "ROLE",
    "ROLE_REPLY",
    "SCAN_COUNT",
    "SCAN_REPLY",
    "SCRIPT_LOAD_REPLY",
    "SET_EX_SCRIPT",
    "SET_EX_SCRIPT_SHA",
    "SET_NX_REPLY",
    "SET_REPLY",
    "SUBSCRIBE_REPLY",
    "NotText",
    "Shape",
    "chunks",
    "command_keys",
    "decode_envelope",
    "decode_text",
    "describe",
    "encode_envelope",
    "exec_reply",
    "mget_reply",
    "pack",
    "pack_delete",
    "pack_get",
    "pack_handshake",
    "pack_mget2",
    "pack_scan",
    "pack_set",
    "pack_set_ex",
    "pack_set_many_ex",
    "pack_set_nx",
    "pack_tracking",
    "replica_in_sync",
    "tracking_probes",
]

_T = TypeVar("_T")

Shape = Callable[[Any], bool]
"""A reply's expected shape: a predicate, true of every good reply to its command.

It is asked only about replies that are not error replies (those are
exception instances, which the driver interprets).
"""

# -- reply shapes ------------------------------------------------------------------------


def _bulk_or_nil(reply: Any) -> bool:
    return reply is None or reply.__class__ is bytes


def _ok(reply: Any) -> bool:
    return reply.__class__ is bytes and reply == b"OK"


def _ok_or_nil(reply: Any) -> bool:
    return reply is None or (reply.__class__ is bytes and reply == b"OK")


def _integer(reply: Any) -> bool:
    return reply.__class__ is int


def _bulk(reply: Any) -> bool:
    return reply.__class__ is bytes


def _array(reply: Any) -> bool:
    return reply.__class__ is list


def _queued(reply: Any) -> bool:
    return reply.__class__ is bytes and reply == b"QUEUED"


def _pong(reply: Any) -> bool:
    return reply.__class__ is bytes and reply == b"PONG"


def _scan_page(reply: Any) -> bool:
    return (
        reply.__class__ is list
        and len(reply) == 2
        and reply[0].__class__ is bytes
        and reply[1].__class__ is list
        and all(key.__class__ is bytes for key in reply[1])
    )


def _subscribed(reply: Any) -> bool:
    return (
        reply.__class__ is list
        and len(reply) == 3
        and reply[0] == b"subscribe"
        and reply[1].__class__ is bytes
        and reply[2].__class__ is int
    )


GET_REPLY: Shape = _bulk_or_nil
"""``GET``: the value, or nil."""
SET_REPLY: Shape = _ok
"""``SET`` (with or without ``EX``), ``MSET``: ``OK``."""
SET_NX_REPLY: Shape = _ok_or_nil
"""``SET ... NX`` (``add``, a lease lock): ``OK``, or nil when the key was there."""
INTEGER_REPLY: Shape = _integer
"""``UNLINK``, ``EXISTS``, ``EXPIRE``, ``PERSIST``, ``PTTL``, ``INCRBY``, and our scripts."""
OK_REPLY: Shape = _ok
"""``AUTH``, ``SELECT``, ``CLIENT SETNAME``, ``CLIENT TRACKING``, ``READONLY``, ``ASKING``."""
MULTI_REPLY: Shape = _ok
"""``MULTI``: ``OK``."""
QUEUED_REPLY: Shape = _queued
"""A command sent between ``MULTI`` and ``EXEC``: ``QUEUED``."""
PING_REPLY: Shape = _pong
"""``PING`` (outside pub/sub): ``PONG``."""
SCAN_REPLY: Shape = _scan_page
"""``SCAN``: the next cursor and a list of keys."""
SCRIPT_LOAD_REPLY: Shape = _bulk
"""``SCRIPT LOAD``: the script's SHA1 digest."""
ROLE_REPLY: Shape = _array
"""``ROLE``: a list whose first item names the role."""
CLUSTER_NODES_REPLY: Shape = _bulk
"""``CLUSTER NODES``: one line of text per node."""
CLIENT_ID_REPLY: Shape = _integer
"""``CLIENT ID``: the connection's id."""
SUBSCRIBE_REPLY: Shape = _subscribed
"""``SUBSCRIBE channel``: ``["subscribe", channel, count]``."""


def mget_reply(count: int) -> Shape:
    """``MGET`` of ``count`` keys: a list of exactly ``count`` values, each a bulk string or nil."""

    def shape(reply: Any) -> bool:
        if reply.__class__ is not list or len(reply) != count:
            return False
        for value in reply:  # noqa: SIM110 (a loop, not all(): no generator on every read)
            if value is not None and value.__class__ is not bytes:
                return False
        return True

    return shape


def exec_reply(*queued: Shape) -> Shape:
    """``EXEC`` of the commands whose shapes are ``queued``: their replies, in order (or nil).

    Each reply has its command's shape or is an error reply. Nil means the
    transaction did not run (a ``WATCH``-ed key changed).
    """

    def shape(reply: Any) -> bool:
        if reply is None:
            return True
        return (
            reply.__class__ is list
            and len(reply) == len(queued)
            and all(
                isinstance(item, Exception) or check(item)
                for item, check in zip(reply, queued, strict=True)
            )
        )

    return shape


def describe(reply: Any) -> str:
    """Say what kind of reply ``reply`` is, for an error message (never its content)."""
    if reply is None:
        return "nil"
    if isinstance(reply, list):
        return f"an array of {len(reply)}"
    if isinstance(reply, int):
        return "an integer"
    if isinstance(reply, bytes):
        return f"a string of {len(reply)} bytes"
    return f"a {type(reply).__name__}"


# -- values ------------------------------------------------------------------------------

BATCH_SIZE = 1000
"""Keys per command in batch operations: big enough to amortise, small enough not to block."""

NOT_TEXT = "the stored value is not UTF-8 text (written by another client?)"
"""The message of :class:`NotText`."""


class NotText(Exception):
    """A stored value is not UTF-8 text; drivers raise it as their own error type."""

    def __init__(self) -> None:
        super().__init__(NOT_TEXT)


_ALL_KEYS = frozenset({b"DEL", b"UNLINK", b"EXISTS", b"MGET", b"TOUCH"})
_EVAL = frozenset({b"EVAL", b"EVALSHA"})
_READS = frozenset({b"GET", b"MGET", b"EXISTS", b"PTTL", b"TTL", b"STRLEN", b"TYPE"})


def command_keys(packed: bytes, *, writes_only: bool = False) -> list[bytes]:
    """Return the keys a packed command names (for routing after an abandoned command).

    The argument after the name; every argument of ``DEL``/``UNLINK``/
    ``EXISTS``/``MGET``/``TOUCH``, every other one of ``MSET``; the script's
    keys of ``EVAL``/``EVALSHA``. Values are skipped, never copied. Empty for
    a command without keys or bytes that cannot be read, and with
    ``writes_only`` for a command that only reads (``GET``, ``MGET``...).
    """
    spans: list[tuple[int, int]] = []  # (start, end) of each argument

    def arg(index: int) -> bytes:
        begin, stop = spans[index]
        return packed[begin:stop]

    at = packed.find(b"\r\n") + 2
    try:
        while at > 1 and packed[at : at + 1] == b"$":
            end = packed.index(b"\r\n", at)
            length = int(packed[at + 1 : end])
            spans.append((end + 2, end + 2 + length))
            at = end + 4 + length
    except ValueError:
        return []
    if len(spans) < 2:
        return []
    name = arg(0).upper()
    if writes_only and name in _READS:
        return []
    if name in _EVAL:
        try:
            count = int(arg(2)) if len(spans) > 2 else 0
        except ValueError:
            return []
        return [arg(index) for index in range(3, min(3 + count, len(spans)))]
    if name in _ALL_KEYS:
        return [arg(index) for index in range(1, len(spans))]
    if name == b"MSET":
        return [arg(index) for index in range(1, len(spans), 2)]
    return [arg(1)]


def decode_text(value: bytes) -> str:
    """Decode a stored value; raise :class:`NotText` when it is not UTF-8 (nor an envelope).

    An envelope (:mod:`pevensie_cache.envelope`) is stored with its mark, the
    lone surrogate U+DCFF, as the byte ``0xFF``, which UTF-8 never uses: it
    decodes back to the mark, and the rest must be UTF-8.
    """
    try:
        return value.decode()
    except UnicodeDecodeError:
        return decode_envelope(value)


def decode_envelope(value: bytes) -> str:
    """Decode a stored envelope (its first byte ``0xFF``); :class:`NotText` if it is not one.

    The byte ``0xFF`` becomes the lone surrogate U+DCFF (the ``surrogateescape``
    mapping), and the rest must be UTF-8; whether the text is a well-formed
    envelope is the cache's to judge (:mod:`pevensie_cache.envelope`).
    """
    if value[:1] == _ENVELOPE_BYTE:
        try:
            return _ENVELOPE_TEXT + value[1:].decode()
        except UnicodeDecodeError:
            pass
    raise NotText from None


def encode_envelope(text: str) -> bytes:
    """Encode an envelope: its mark U+DCFF as the byte ``0xFF``, the rest as UTF-8.

    Called where ``text.encode()`` refused a value: only an envelope's mark
    gets there, since every value is checked to be UTF-8 text first.
    """
    if text[:1] != _ENVELOPE_TEXT:
        raise UnicodeEncodeError("utf-8", text, 0, 1, "not text, nor an envelope")
    return _ENVELOPE_BYTE + text[1:].encode()


_ENVELOPE_BYTE = b"\xff"
"""The first byte of a stored envelope, which UTF-8 never uses."""
_ENVELOPE_TEXT = _ENVELOPE_BYTE.decode("utf-8", "surrogateescape")
"""What it stands for in the cache's text: the lone surrogate U+DCFF, its envelopes' mark."""


def chunks(items: Sequence[_T], size: int = BATCH_SIZE) -> list[Sequence[_T]]:
    """Split ``items`` into runs of at most ``size`` (one run when it fits, without copying)."""
    if len(items) <= size:
        return [items]
    return [items[start : start + size] for start in range(0, len(items), size)]


# -- commands ----------------------------------------------------------------------------

SET_EX_SCRIPT = b"""\
local ttl = ARGV[1]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""
"""Sets every key to its value with the same ``EX`` TTL: ``set_many`` with a TTL in one call.

``KEYS`` are the full keys; ``ARGV[1]`` is the TTL and ``ARGV[i + 1]`` the value of ``KEYS[i]``.
"""

SET_EX_SCRIPT_SHA = hashlib.sha1(SET_EX_SCRIPT, usedforsecurity=False).hexdigest()
"""The SHA1 digest ``EVALSHA`` names the script by, as the server computes it."""

RELEASE_LOCK_SCRIPT = b"""\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  pcall(redis.call, 'PUBLISH', ARGV[2], KEYS[1])
  return 1
end
return 0
"""
"""Deletes a lease lock only if its token is the caller's: an owner never frees another's lock.

Then it publishes the lock key on ``ARGV[2]`` (:data:`LOCK_RELEASED_CHANNEL`),
which wakes the waiters subscribed there; a user whose ACL refuses
``PUBLISH`` still releases (the waiters poll).
"""

LOCK_RELEASED_CHANNEL = b"__pevensie__:lock-released"
"""The channel a lease's release is published on, the lock key as the message."""

RELEASE_LOCK_SCRIPT_SHA = hashlib.sha1(RELEASE_LOCK_SCRIPT, usedforsecurity=False).hexdigest()
"""The SHA1 digest of :data:`RELEASE_LOCK_SCRIPT`."""

EXTEND_LOCK_SCRIPT = b"""\
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
"""Gives a lease lock a new lease only if its token is the caller's (compare-and-expire)."""

EXTEND_LOCK_SCRIPT_SHA = hashlib.sha1(EXTEND_LOCK_SCRIPT, usedforsecurity=False).hexdigest()
"""The SHA1 digest of :data:`EXTEND_LOCK_SCRIPT`."""

INCR_EX_SCRIPT = b"""\
redis.call('SET', KEYS[1], '0', 'NX', 'EX', ARGV[2])
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""
"""``incr`` with a TTL where a transaction cannot go (a Cluster node, through redirects).

Creates ``KEYS[1]`` as ``0`` with the TTL ``ARGV[2]`` only if absent, then adds
``ARGV[1]``. A script sees one server time throughout, so the key cannot expire
between the two and come back without a TTL.
"""


def pack_get(key: bytes) -> bytes:
    """Pack ``GET key``."""
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)


def pack_mget2(first: bytes, second: bytes) -> bytes:
    """Pack ``MGET first second``."""
    return b"*3\r\n$4\r\nMGET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
        len(first),
        first,
        len(second),
        second,
    )


def pack_set(key: bytes, value: bytes) -> bytes:
    """Pack ``SET key value``: no expiry, and any earlier TTL cleared."""
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value)


def pack_set_ex(key: bytes, value: bytes, ttl_seconds: int) -> bytes:
    """Pack ``SET key value EX ttl_seconds``: store and set the TTL in one atomic command."""
    ttl = b"%d" % ttl_seconds
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nEX\r\n$%d\r\n%b\r\n" % (
        len(key),
        key,
        len(value),
        value,
        len(ttl),
        ttl,
    )


def pack_set_nx(key: bytes, value: bytes, ttl_seconds: int | None) -> bytes:
    """Pack ``SET key value NX [EX ttl_seconds]``: store only if absent, in one command."""
    if ttl_seconds is None:
        return pack([b"SET", key, value, b"NX"])
    return pack([b"SET", key, value, b"NX", b"EX", b"%d" % ttl_seconds])


PING = b"*1\r\n$4\r\nPING\r\n"
"""``PING``: a connection's check that the server answers (:data:`PING_REPLY`)."""

MULTI = b"*1\r\n$5\r\nMULTI\r\n"
"""``MULTI``: the commands up to :data:`EXEC` run as one, with the server's clock stopped.

Inside a transaction every command sees the same time, so a key cannot expire
between two of them (it can between two plain commands, even pipelined).
"""

EXEC = b"*1\r\n$4\r\nEXEC\r\n"
"""``EXEC``: run the commands queued since :data:`MULTI`; its reply is the list of theirs."""

SCAN_COUNT = 1000
"""Keys one ``SCAN`` page looks at: ``clear`` never makes the server do more at once."""


def pack_scan(cursor: bytes, pattern: str) -> bytes:
    """Pack ``SCAN cursor MATCH pattern COUNT`` :data:`SCAN_COUNT`."""
    return pack([b"SCAN", cursor, b"MATCH", pattern, b"COUNT", b"%d" % SCAN_COUNT])


INVALIDATION_CHANNEL = b"__redis__:invalidate"
"""The channel the server publishes key invalidations on, to a RESP2 connection."""


def pack_tracking(client_id: int | None, *, bcast: bool = True) -> bytes:
    """Pack ``CLIENT TRACKING ON BCAST REDIRECT client_id``: every key changed is named there.

    Broadcast mode keeps no state about which connection read what, so no
    connection but the one listening matters: a data connection that dies or
    reconnects loses nothing. The near cache's listener sends it with its own
    client id, then subscribes to :data:`INVALIDATION_CHANNEL`. ``bcast=False``
    or ``client_id=None`` leave that option out (:func:`tracking_probes`).
    """
    command = [b"CLIENT", b"TRACKING", b"ON"]
    if bcast:
        command.append(b"BCAST")
    if client_id is not None:
        command += [b"REDIRECT", b"%d" % client_id]
    return pack(command)


def tracking_probes(client_id: int) -> list[tuple[str, bytes]]:
    """Return ``(option, command)`` pairs that tell which option of tracking a server refuses.

    Sent after :func:`pack_tracking` got an error reply that names no
    permission or unknown command: a server that accepts tracking without
    ``BCAST`` refuses ``BCAST``; one that accepts it without ``REDIRECT``
    refuses ``REDIRECT``. The connection is closed after (the near cache
    cannot run there).
    """
    return [
        ("BCAST", pack_tracking(client_id, bcast=False)),
        ("REDIRECT", pack_tracking(None)),
    ]


def replica_in_sync(role: object) -> bool:
    """Return whether a ``ROLE`` reply is a replica's whose link to its primary is up.

    ``["slave", host, port, "connected", offset]`` is; a replica still
    connecting or syncing (its link cut, its primary gone), a node that is a
    primary now, or an error reply is not.
    """
    return (
        isinstance(role, list)
        and len(role) >= 4
        and role[0] == b"slave"
        and role[3] == b"connected"
    )


CLUSTER_SLOTS = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n"
"""``CLUSTER SLOTS``: which node serves each slot range, and that node's replicas."""

CLUSTER_NODES = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n"
"""``CLUSTER NODES``: every node of the cluster, slot-less primaries included (the near cache)."""

ASKING = b"*1\r\n$6\r\nASKING\r\n"
"""``ASKING``: the next command may touch a slot this node is importing (an ``ASK`` redirect)."""

ROLE = b"*1\r\n$4\r\nROLE\r\n"
"""``ROLE``: sent with a read to a replica now and then, to check its link to the primary."""

READONLY = b"*1\r\n$8\r\nREADONLY\r\n"
"""``READONLY``: a Cluster replica's connection serves reads of its primary's slots."""


def pack_delete(key: bytes) -> bytes:
    """Pack ``UNLINK key``: delete, freeing the memory in the background."""
    return b"*2\r\n$6\r\nUNLINK\r\n$%d\r\n%b\r\n" % (len(key), key)


def pack_set_many_ex(keys: Sequence[bytes], values: Sequence[bytes], ttl_seconds: int) -> bytes:
    """Pack one ``EVALSHA`` of :data:`SET_EX_SCRIPT`: every key set to its value with ``EX``."""
    return pack(["EVALSHA", SET_EX_SCRIPT_SHA, str(len(keys)), *keys, str(ttl_seconds), *values])


def pack_handshake(
    username: str | None, password: str | None, db: int = 0, client_name: str | None = None
) -> list[bytes]:
    """Pack the commands a new connection sends first: ``AUTH``, ``SELECT``, ``CLIENT SETNAME``.

    A password alone authenticates the default user; a username with a password,
    an ACL user; a username alone, an ACL user with ``nopass`` (``AUTH user ""``).
    """
    commands: list[bytes] = []
    if username is not None:
        commands.append(pack(["AUTH", username, password or ""]))
    elif password is not None:
        commands.append(pack(["AUTH", password]))
    if db:
        commands.append(pack(["SELECT", str(db)]))
    if client_name is not None:
        commands.append(pack(["CLIENT", "SETNAME", client_name]))
    return commands


def _pack_in_python(args: Sequence[bytes | str]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _pack_with_hiredis() -> Callable[[Sequence[bytes | str]], bytes] | None:
    try:
        import hiredis
    except ImportError:
        return None
    pack_command = getattr(hiredis, "pack_command", None)
    if pack_command is None:  # hiredis < 2.1
        return None

    def pack(args: Sequence[bytes | str]) -> bytes:
        packed: bytes = pack_command(tuple(args))
        return packed

    return pack


pack: Callable[[Sequence[bytes | str]], bytes] = _pack_with_hiredis() or _pack_in_python
"""Pack any command given as its arguments (``str`` is encoded as UTF-8).

With ``hiredis`` installed this is its C packer, about twice as fast on a
100-key ``MGET``; otherwise the same bytes are built in Python.
"""
