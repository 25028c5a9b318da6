"""Masking secrets in URLs."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from pevensie_cache import ConfigError, cache, mask_url
from pevensie_cache.urls import is_secret_name, url_secrets


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


SECRET = "s3cretPW"

# Not well-formed: the whole userinfo goes, and every query value.
ODD_URLS = [
    ("redis:/:s3cretPW@127.0.0.1:6379/0", "redis:/***@127.0.0.1:6379/0"),
    (" redis://:s3cretPW@127.0.0.1:6379/0", " redis://***@127.0.0.1:6379/0"),
    ("redis://:s3cretPW@127.0.0.1:6379/0 ", "redis://***@127.0.0.1:6379/0 "),
    ("\tredis://app:s3cretPW@h/0\n", "\tredis://***@h/0\n"),
    ("redis//app:s3cretPW@h/0", "redis//***@h/0"),
    ("redis:app:s3cretPW@h/0", "redis:***@h/0"),
    ("redis:\\\\:s3cretPW@h/0", "redis:\\\\***@h/0"),
    ("REDIS:/:s3cretPW@h/0?db=1", "REDIS:/***@h/0?db=***"),
    ("//:s3cretPW@h/0", "//***@h/0"),
    (":s3cretPW@h:6379", "***@h:6379"),
    ("redis://:s3cret PW@h/0", "redis://***@h/0"),
    ("redis:/h/0?client_name=s3cretPW", "redis:/h/0?client_name=***"),
    ("--url=redis://:s3cretPW@h/0", "***@h/0"),
]


@pytest.mark.parametrize(("url", "masked"), ODD_URLS)
def test_mask_url_hides_the_whole_userinfo_of_what_is_not_a_well_formed_url(
    url: str, masked: str
) -> None:
    assert mask_url(url) == masked
    assert SECRET not in mask_url(url)
    assert "s3cret" not in mask_url(url)


@pytest.mark.parametrize(
    "name",
    [
        "passwd",
        "requirepass",
        "PASSWORD",
        "pass%77ord",  # percent-encoded: the driver reads "password"
        "p%2577d",  # encoded twice
        "sentinel_password",
        "pw",
        "api-key",
        "X-Auth-Token",
        "client_secret",
        "credentials",
        "sig",
        "private_key",
    ],
)
def test_mask_url_hides_the_value_of_every_secret_looking_parameter(name: str) -> None:
    url = f"redis://127.0.0.1:6379/0?db=2&{name}={SECRET}&timeout=5"
    assert mask_url(url) == f"redis://127.0.0.1:6379/0?db=2&{name}=***&timeout=5"
    assert is_secret_name(name)
    assert url_secrets(url) == [SECRET]


@pytest.mark.parametrize("name", ["db", "timeout", "client_name", "namespace", "pool_size"])
def test_other_parameters_of_a_well_formed_url_stay_readable(name: str) -> None:
    url = f"redis://h/0?{name}=visible"
    assert mask_url(url) == url
    assert not is_secret_name(name)
    assert url_secrets(url) == []


def test_a_raw_password_with_url_characters_is_masked_whole_in_the_query_too() -> None:
    url = "redis://h/0?password=s3cret#PW;more&db=1"
    assert mask_url(url) == "redis://h/0?password=***&db=1"
    assert url_secrets(url) == ["s3cret#PW;more"]


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("redis://app:s3cretPW@h/0", [SECRET]),
        ("redis://s3cretPW@h/0", [SECRET]),
        ("redis:/:s3cretPW@h/0", [SECRET, ":s3cretPW"]),
        ("redis:/app:s3cretPW@h/0?db=1", [SECRET, "app:s3cretPW", "1"]),
        ("redis://h/0?passwd=s3cretPW", [SECRET]),
        ("redis://h/0", []),
        ("plain text", []),
    ],
)
def test_url_secrets_are_what_mask_url_hides(url: str, secrets: list[str]) -> None:
    assert url_secrets(url) == secrets
    masked = mask_url(url)
    for secret in secrets:
        assert secret not in masked


# Before the scheme is even read, and when its options are: the URL in each message is masked.
BAD_URLS = [
    ("redis:/:s3cretPW@127.0.0.1:6379/0", "the scheme 'redis' must be followed by '://'"),
    ("redis//:s3cretPW@127.0.0.1:6379/0", "the scheme 'redis' must be followed by '://'"),
    (" redis://:s3cretPW@127.0.0.1:6379/0", "starts with whitespace"),
    ("redis://127.0.0.1:6379/0?passwd=s3cretPW", "unknown Redis URL option 'passwd'"),
    ("redis://127.0.0.1:6379/0?requirepass=s3cretPW", "unknown Redis URL option 'requirepass'"),
    ("redis://127.0.0.1:6379/0?pass%77ord=s3cretPW", "password is not a Redis URL query option"),
    ("redis://127.0.0.1:6379/0?pass%77ord=s3cretPW&password=x", "'password' is given twice"),
    ("memory://?token=s3cretPW", "unknown memory URL option 'token'"),
    ("redis://:s3cretPW@127.0.0.1:6379/0 ", "the path of a Redis URL is the database number"),
]


def _build_error(builder: str, url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    if builder == "from_env":
        monkeypatch.setenv("PEVENSIE_CACHE_URL", url)
        build: Callable[[], object] = cache.from_env
    else:
        build = functools.partial(getattr(cache, builder), url)
    with pytest.raises(ConfigError) as caught:
        build()
    return str(caught.value)


@pytest.mark.parametrize("builder", ["from_url", "from_url_async", "from_env"])
@pytest.mark.parametrize(("url", "named"), BAD_URLS)
def test_errors_about_a_url_name_what_is_wrong_and_never_show_its_password(
    builder: str, url: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _build_error(builder, url, monkeypatch)
    assert SECRET not in message
    assert named in message
    assert mask_url(url) in message


@pytest.mark.parametrize(
    ("url", "masked", "secret"),
    [
        ("redis://h/0?db=1;password=hunter22", "redis://h/0?db=1;password=***", "hunter22"),
        ("redis://h:1/0?password=abc@defghij", "redis://h:1/0?password=***", "abc@defghij"),
        (
            "redis+sentinel://127.0.0.1:1/m?sentinel_password=p@ssw0rd&x=1",
            "redis+sentinel://127.0.0.1:1/m?sentinel_password=***&x=1",
            "p@ssw0rd",
        ),
    ],
)
def test_a_secret_after_a_semicolon_or_holding_an_at_sign_is_masked(
    url: str, masked: str, secret: str
) -> None:
    # A review found both shown: ";" did not separate pieces, and an "@" in a query value
    # was read as the end of a userinfo, leaving the value's tail in the message.
    assert mask_url(url) == masked
    assert secret in url_secrets(url)
