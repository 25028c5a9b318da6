"""Masking secrets in URLs."""

from __future__ import annotations

import pytest

from pevensie_cache import mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:s3cret@host/0", "redis://:***@host/0"),
        ("redis://s3cret@host/0", "redis://***@host/0"),
        ("rediss://host:6380/1?password=s3cret&db=2", "rediss://host:6380/1?password=***&db=2"),
        ("redis://host/0", "redis://host/0"),
        ("memory://", "memory://"),
        ("redis://u:p%40ss@h/0", "redis://u:***@h/0"),
        # Passwords typed without percent-encoding are still masked whole.
        ("redis://u:s3cret@x@h/0", "redis://u:***@h/0"),
        ("redis://:s3cret/?#@h:1/0", "redis://:***@h:1/0"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url)
