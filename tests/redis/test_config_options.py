"""RedisConfig fields are declared once, and every source of options converts them alike.

No server is needed here.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

import pytest

from pevensie_cache import ConfigError, cache
from pevensie_cache.options import DURATION_UNITS, OptionSet
from pevensie_redis import RedisConfig, default_config
from pevensie_redis.config import _DECLARATIONS as DECLARATIONS
from pevensie_redis.config import OPTIONS

SECRET = "s3cr&t:p@ss/word"
SECRET_QUOTED = "s3cr%26t%3Ap%40ss%2Fword"


@pytest.mark.parametrize("field", dataclasses.fields(RedisConfig), ids=lambda f: f.name)
def test_every_field_is_declared_once_with_everything_derived_from_it(
    field: dataclasses.Field[Any],
) -> None:
    declared = DECLARATIONS[field.name]
    spec = OPTIONS[field.name]
    assert spec.name == field.name
    assert dataclasses.replace(declared, name=field.name) == spec
    assert spec.kind in ("int", "bool", "str", "duration", "size", "custom")
    assert spec.doc.strip()
    assert "\n" not in spec.doc
    assert isinstance(spec.query, bool)  # the URL decision was made
    if spec.kind in ("int", "duration", "size"):
        assert spec.low is not None
    if spec.kind == "duration":
        assert spec.unit in DURATION_UNITS
    if field.default is None:
        assert spec.optional, "a field defaulting to None must allow None"
    assert OPTIONS[field.name].check(field.default) == field.default
    assert f"- ``{field.name}`` (" in (RedisConfig.__doc__ or "")


def test_the_options_are_exactly_the_fields() -> None:
    assert OPTIONS.names == tuple(f.name for f in dataclasses.fields(RedisConfig))
    assert RedisConfig.field_names() == OPTIONS.names


def test_a_new_field_without_its_declaration_fails() -> None:
    @dataclasses.dataclass(frozen=True, repr=False)
    class Extended(RedisConfig):
        shiny: int = 1000

    with pytest.raises(TypeError, match=r"Extended\.shiny has no option declaration"):
        OptionSet.from_dataclass(Extended, owner="Redis", declarations=DECLARATIONS)
    with pytest.raises(TypeError, match=r"RedisConfig has no field shiny"):
        OptionSet.from_dataclass(
            RedisConfig, owner="Redis", declarations={**DECLARATIONS, "shiny": OPTIONS["port"]}
        )


def test_the_signature_shows_plain_defaults() -> None:
    import inspect

    signature = str(inspect.signature(RedisConfig))
    assert "host: 'str' = 'localhost', port: 'int' = 6379, timeout: 'int' = 5000" in signature
    assert "Option" not in signature


def test_string_mappings_build_the_same_config_as_typed_values() -> None:
    from_strings = cache.from_config(
        {
            "cache.driver": "redis",
            "cache.port": "6379",
            "cache.tls_verify": "false",
            "cache.timeout": "2s",
            "other.port": "1",
        },
        prefix="cache.",
    )
    typed = cache.new(driver="redis", port=6379, tls_verify=False, timeout=2000)
    assert from_strings.driver.config == typed.driver.config  # type: ignore[attr-defined]
    assert from_strings.driver.config.timeout == 2000  # type: ignore[attr-defined]


def test_every_kind_converts_from_a_settings_file() -> None:
    built = cache.from_config(
        {
            "driver": "redis",
            "host": "cache.example.com",
            "pool_size": "4",
            "retries": "0",
            "db": "3",
            "tls": "yes",
            "tls_ca_file": "/ca.pem",
            "client_name": "web-1",
            "timeout": "250 ms",
            "username": "",  # an empty value in a settings file means "not set"
        }
    )
    expected = RedisConfig(
        host="cache.example.com",
        pool_size=4,
        retries=0,
        db=3,
        tls=True,
        tls_ca_file="/ca.pem",
        client_name="web-1",
        timeout=250,
    )
    assert built.driver.config == expected  # type: ignore[attr-defined]


def test_scale_out_options_convert_from_text() -> None:
    sentinels = cache.from_config(
        {"driver": "redis", "sentinels": "s1:26380, [::1], s3", "service_name": "svc"}
    )
    by_url = cache.from_url("redis+sentinel://s1:26380,[::1],s3/svc")
    assert sentinels.driver.config == by_url.driver.config  # type: ignore[attr-defined]
    cluster = cache.from_config({"driver": "redis", "cluster": "on", "cluster_hash_tag": "1"})
    assert (cluster.driver.config.cluster, cluster.driver.config.cluster_hash_tag) == (True, True)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="invalid sentinel address \\(number 2\\)"):
        cache.new(driver="redis", sentinels="s1,,s2", service_name="svc")


def test_url_overrides_from_a_mapping_are_converted_too() -> None:
    built = cache.from_config({"url": "redis://h/1?timeout=300", "pool_size": "4", "timeout": "1s"})
    assert (built.driver.config.db, built.driver.config.pool_size) == (1, 4)  # type: ignore[attr-defined]
    assert built.driver.config.timeout == 1000  # type: ignore[attr-defined]


def test_redis_py_spellings_are_aliases_in_keywords_as_in_urls() -> None:
    by_keywords = cache.new(
        driver="redis", tls=True, ssl_ca_certs="/ca.pem", ssl_cert_reqs="none"
    ).driver.config  # type: ignore[attr-defined]
    assert by_keywords == RedisConfig.from_url(
        "rediss://localhost?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none"
    )
    assert (by_keywords.tls_ca_file, by_keywords.tls_verify) == ("/ca.pem", False)
    with pytest.raises(
        ConfigError, match=r"tls_ca_file is given twice \(as tls_ca_file and ssl_ca_certs\)"
    ):
        cache.new(driver="redis", tls=True, tls_ca_file="/a.pem", ssl_ca_certs="/b.pem")


@pytest.mark.parametrize(
    ("query", "milliseconds"),
    [("500ms", 500), ("2s", 2000), ("1.5s", 1500), ("250%20ms", 250), ("300", 300)],
)
def test_url_timeouts_take_an_explicit_unit(query: str, milliseconds: int) -> None:
    assert RedisConfig.from_url(f"redis://h?timeout={query}").timeout == milliseconds


def test_a_tiny_bare_url_timeout_is_an_error_naming_the_unit() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisConfig.from_url(f"redis://app:{SECRET_QUOTED}@h?timeout=5")
    message = str(caught.value)
    assert "timeout is in milliseconds: 5 ms is below the 100 ms minimum" in message
    assert "write 5s for 5 seconds, or 5ms" in message
    assert "s3cr" not in message
    assert RedisConfig.from_url("redis://h?timeout=5ms").timeout == 5
    with pytest.raises(ConfigError, match="timeout is in milliseconds"):
        cache.new(driver="redis", timeout=5)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RedisConfig(timeout=5),
        lambda: dataclasses.replace(default_config(), timeout=5),
    ],
)
def test_the_typed_constructor_refuses_a_tiny_bare_timeout_as_every_other_path_does(
    build: Any,
) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    message = str(caught.value)
    assert "timeout is in milliseconds: 5 ms is below the 100 ms minimum" in message
    assert "as a typed value: 5000 for 5 seconds, or datetime.timedelta(milliseconds=5)" in message


def test_a_tiny_timeout_with_its_unit_survives_replace() -> None:
    config = RedisConfig(timeout=timedelta(milliseconds=50))  # type: ignore[arg-type]
    assert config.timeout == 50
    assert dataclasses.replace(config, host="other").timeout == 50
    assert dataclasses.replace(RedisConfig.from_url("redis://h?timeout=50ms"), port=1).timeout == 50


def test_display_url_writes_a_tiny_timeout_with_its_unit_so_it_reads_back() -> None:
    config = RedisConfig.from_url("redis://localhost?timeout=50ms")
    assert config.display_url() == "redis://localhost:6379/0?timeout=50ms"
    assert RedisConfig.from_url(config.display_url()) == config


@pytest.mark.parametrize(
    ("given", "shown"),
    [("300ms", "300ms"), ("300", "300ms"), ("1500", "1500ms"), ("2s", "2s"), ("1m", "60s")],
)
def test_a_timeout_is_shown_with_its_unit_wherever_the_config_is_shown(
    given: str, shown: str
) -> None:
    # ?timeout=300ms once showed as timeout=300, which reads as 300 seconds.
    url = f"redis://app:{SECRET_QUOTED}@cache.internal:6379/0?timeout={given}"
    config = RedisConfig.from_url(url)
    renderings = {
        "repr": repr(config),
        "str": str(config),
        "display_url": config.display_url(),
        "driver repr": repr(cache.from_url(url).driver),
        "cache repr": repr(cache.from_url(url)),
        "async cache repr": repr(cache.from_url_async(url)),
    }
    for where, text in renderings.items():
        assert re.search(rf"\btimeout={shown}\b", text), (where, text)
        assert SECRET not in text, where
        assert SECRET_QUOTED not in text, where
    assert RedisConfig.from_url(config.display_url(), password=SECRET) == config
    assert "timeout=5s," in repr(default_config())  # the default too, in a repr


@pytest.mark.parametrize(
    "build",
    [
        lambda: cache.new(driver="redis", pool_sise=5),
        lambda: cache.from_url("redis://h?pool_sise=5"),
        lambda: cache.from_config({"driver": "redis", "pool_sise": "5"}),
    ],
)
def test_a_misspelt_option_suggests_the_likely_one(build: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    message = str(caught.value)
    assert "'pool_sise' (did you mean 'pool_size'?)" in message
    assert "valid options:" in message


def test_a_field_that_is_not_a_query_option_says_where_it_goes() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisConfig.from_url(f"redis://h?password={SECRET_QUOTED}")
    message = str(caught.value)
    assert "password is not a Redis URL query option" in message
    assert SECRET_QUOTED not in message
    assert "s3cr" not in message


def test_text_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        cache.new(driver="redis", password=f"{SECRET}\x00")
    assert "s3cr" not in str(caught.value)
    config = cache.new(driver="redis", password=SECRET).driver.config  # type: ignore[attr-defined]
    assert "s3cr" not in repr(config)
    assert "password='***'" in repr(config)


def test_from_env_takes_a_timeout_with_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEVENSIE_CACHE_URL", "redis://h?timeout=2s")
    assert cache.from_env().driver.config.timeout == 2000  # type: ignore[attr-defined]
