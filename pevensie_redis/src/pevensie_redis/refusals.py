"""When a background subscriber tries again: soon after a break, less and less often after refusals.

The near cache's invalidation listener (:mod:`~pevensie_redis.listener_async`)
and the lease waiters' subscriber (:mod:`~pevensie_redis.lock_releases_async`)
keep a pipe of their own subscribed, and open a new one when it fails. A
broken connection (a restart, a failover, a timeout) is worth trying again
soon; a refusal (an error reply: an ACL without the channel or the command)
usually stands until an administrator changes it, so each refusal in a row
doubles the delay before the next attempt, up to :data:`RETRY_MAX`.
"""

from __future__ import annotations

from redis.exceptions import ResponseError

from pevensie_redis.errors import TrackingRefused

__all__ = ["RETRY_MAX", "is_refusal", "retry_delay"]

RETRY_MAX = 5.0
"""Seconds between two attempts at subscribing, at most, while the server refuses them."""


def is_refusal(failure: BaseException) -> bool:
    """Whether ``failure`` is the server's error reply (a refusal), not a broken connection."""
    if isinstance(failure, TrackingRefused):
        failure = failure.reply
    return isinstance(failure, ResponseError)


def retry_delay(base: float, refusals: int) -> float:
    """Seconds before the next attempt, after ``refusals`` attempts refused in a row.

    ``base`` after a break (no refusal) and after the first refusal, then
    doubling with each refusal, up to :data:`RETRY_MAX`.
    """
    doublings: int = min(max(refusals - 1, 0), 8)
    return min(base * (1 << doublings), RETRY_MAX)
