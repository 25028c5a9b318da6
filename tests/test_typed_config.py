"""The typed path: a misspelt option is a type error, and a resource's values have a type.

``cache.new(RedisConfig(...))`` takes the Redis driver's configuration
dataclass, so ``mypy --strict`` flags ``prot=6379`` before anything runs;
``Resource[T]`` (from a ``Codec[T]``) makes ``get`` return ``T``, and the json
codec gives ``Resource[Any]``. Each claim is checked by running mypy on a snippet.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pevensie_cache import AsyncPevensieCache, ConfigError, PevensieCache, cache
from pevensie_redis import AsyncRedisDriver, RedisConfig, RedisDriver

GOOD = """
from dataclasses import dataclass
from typing import Any, assert_type

from pevensie_cache import AsyncResource, Resource, cache
from pevensie_redis import RedisConfig


@dataclass
class User:
    name: str


class UserCodec:
    def encode(self, value: User) -> str:
        return value.name

    def decode(self, text: str) -> User:
        return User(text)


c = cache.new(RedisConfig(host="localhost", port=6379, timeout=2000), namespace="app1")
a = cache.new_async(RedisConfig(host="localhost"), fail_open=True)
names: Resource[str] = c.resource("name")
name: str = names.get("1")
maybe: str | None = names.get("1", None)
users = c.resource("user", codec=UserCodec())
user: User = users.get("1")
found: dict[str, User] = users.get_many(["1", "2"])
loaded: User = users.get_or_set("1", lambda: User("Ada"))
async_users: AsyncResource[User] = a.resource("user", codec=UserCodec())
profiles = c.resource("profile", codec="json")
assert_type(profiles, Resource[Any])  # not Resource[object]: no cast on every get
assert_type(profiles.get("1"), Any)
assert_type(profiles.get_many(["1"]), dict[str, Any])
settings: dict[str, int] = profiles.get("1")
assert_type(a.resource("profile", codec="json"), AsyncResource[Any])
assert_type(c.resource("name"), Resource[str])
existed: bool = c.delete("user", "1")
left: int | None = c.ttl("user", "1")
with c.lock("job", "nightly", ttl_seconds=30) as held:
    held.extend(60)
"""

BAD = {
    "misspelt option": (
        "from pevensie_cache import cache\nfrom pevensie_redis import RedisConfig\n"
        'cache.new(RedisConfig(host="localhost", prot=6379))\n',
        'Unexpected keyword argument "prot" for "RedisConfig"',
    ),
    "option beside a config": (
        "from pevensie_cache import cache\nfrom pevensie_redis import RedisConfig\n"
        "cache.new(RedisConfig(), pool_size=3)\n",
        'No overload variant of "new" matches',
    ),
    "wrong value type": (
        "from pevensie_cache import cache\nfrom pevensie_redis import RedisConfig\n"
        'cache.new(RedisConfig(port="6379"))\n',
        'Argument "port" to "RedisConfig" has incompatible type "str"',
    ),
    "resource value type": (
        'from pevensie_cache import cache\nnumber: int = cache.new().resource("name").get("1")\n',
        'Incompatible types in assignment (expression has type "str", variable has type "int")',
    ),
    "clear without a resource type": (
        "from pevensie_cache import cache\ncache.new().clear()\n",
        'Missing positional argument "resource_type" in call to "clear"',
    ),
    "with on an async cache": (
        "from pevensie_cache import cache\nwith cache.new_async() as c:\n    pass\n",
        "has no attribute",
    ),
}


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module: the packages are analysed once, not once per snippet."""
    return tmp_path_factory.mktemp("mypy_cache")


def mypy(tmp_path: Path, cache_dir: Path, source: str) -> subprocess.CompletedProcess[str]:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(source), encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(cache_dir),
            str(snippet),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )


def test_the_typed_path_type_checks(tmp_path: Path, mypy_cache: Path) -> None:
    result = mypy(tmp_path, mypy_cache, GOOD)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("case", list(BAD))
def test_a_mistake_on_the_typed_path_fails_mypy_strict(
    tmp_path: Path, mypy_cache: Path, case: str
) -> None:
    source, expected = BAD[case]
    result = mypy(tmp_path, mypy_cache, source)
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout, result.stdout


def test_a_config_object_builds_its_driver_on_either_face() -> None:
    sync = cache.new(RedisConfig(host="cache.internal", port=6390), namespace="app1")
    assert isinstance(sync, PevensieCache)
    assert isinstance(sync.driver, RedisDriver)
    assert sync.driver.config.port == 6390
    assert sync.namespace == "app1"
    async_face = cache.new_async(RedisConfig(host="cache.internal"))
    assert isinstance(async_face, AsyncPevensieCache)
    assert isinstance(async_face.driver, AsyncRedisDriver)


def test_driver_options_beside_a_config_object_are_an_error_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="set them on it"):
        cache.new(RedisConfig(), pool_size=3)  # type: ignore[call-overload]
