"""The Redis protocol, without I/O: what the driver sends, and how it reads what comes back.

Every connection of the driver (both faces, every mode) speaks through these
modules; none of them opens a socket, and none imports another module of
``pevensie_redis`` or any part of redis-py but its public exception classes.

- :mod:`~pevensie_redis.protocol.keys`: the key layout (``<resource_type>:<key>``,
  its hash-tagged Cluster variant, the lease-lock key, ``SCAN`` patterns).
- :mod:`~pevensie_redis.protocol.commands`: the packing of every command the
  driver sends, its scripts, and next to each command the shape its reply must
  have (a reply of another shape means the connection is not to be trusted).
- :mod:`~pevensie_redis.protocol.resp`: the RESP2 reply reader (hiredis when
  installed, else pure Python), with error replies as values.
- :mod:`~pevensie_redis.protocol.error_codes`: the error code of an error reply
  (``MOVED``, ``NOSCRIPT``, ``OOM``...) to the redis-py exception class the
  driver sorts it by, and back.
- :mod:`~pevensie_redis.protocol.slots`: Redis Cluster's hash slot of a key, the
  slot map read from ``CLUSTER SLOTS``, and what ``MOVED``/``ASK`` say.
"""
