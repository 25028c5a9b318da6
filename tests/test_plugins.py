"""Driver discovery through real installed plugin distributions (see tests/plugins/)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pevensie_cache import (
    DriverConflict,
    DriverInfo,
    DriverNotFound,
    PevensieCache,
    cache,
    hookimpl,
)
from pevensie_cache.plugins import ENTRY_POINT_GROUP, register_plugin, reset


@pytest.fixture(autouse=True)
def _fresh_registry() -> None:
    reset()


def _by_name(name: str) -> list[DriverInfo]:
    return [info for info in cache.drivers() if info.name == name]


def test_memory_is_registered_through_the_entry_point_group() -> None:
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names["memory"] == "pevensie_cache.memory"


def test_drivers_lists_memory_with_its_distribution_and_version() -> None:
    from importlib.metadata import version

    [memory] = _by_name("memory")
    assert memory.loaded
    assert memory.distribution == "pevensie-cache"
    assert memory.version == version("pevensie-cache")
    assert memory.schemes == ("memory",)
    assert memory.description


def test_a_third_party_driver_is_found_by_name_and_by_scheme() -> None:
    c = cache.from_url("echo://anything").connect()
    c.set("user", "1", "hello")
    assert c.get("user", "1") == "hello"
    assert type(c.driver).__module__ == "pevensie_test_echo.driver"


def test_only_the_first_line_of_a_description_is_kept() -> None:
    [info] = [i for i in _by_name("echo") if i.distribution == "pevensie-test-echo"]
    assert info.description == "Echo: a dict-backed test driver."


def test_every_broken_plugin_is_reported_with_its_reason() -> None:
    failed = {i.name: i for i in cache.drivers() if not i.loaded}
    assert "ModuleNotFoundError" in (failed["broken-import"].error or "")
    assert "the plugin blew up" in (failed["broken-hook"].error or "")
    assert "unknown hook 'register_cache_driver'" in (failed["broken-spelling"].error or "")
    assert "invalid driver name" in (failed["broken-name"].error or "")
    for name in ("broken-import", "broken-hook", "broken-spelling", "broken-name"):
        assert failed[name].distribution == "pevensie-test-broken"
        assert failed[name].version == "6.6.6"


def test_a_plugin_that_raises_mid_registration_registers_nothing() -> None:
    assert _by_name("half-registered") == []
    with pytest.raises(DriverNotFound):
        cache.new(driver="half-registered")


def test_broken_plugins_break_no_other_driver() -> None:
    with cache.new(driver="memory") as c:
        c.set("user", "1", "fine")
        assert c.get("user", "1") == "fine"
    with cache.new(driver="dupe-only") as c:
        c.set("user", "1", "fine too")
        assert c.get("user", "1") == "fine too"


def test_driver_not_found_lists_installed_drivers_and_failures() -> None:
    with pytest.raises(DriverNotFound) as caught:
        cache.new(driver="nosuch")
    message = str(caught.value)
    assert "no cache driver named 'nosuch'" in message
    assert "memory (memory://; pevensie-cache" in message
    assert "broken-import from pevensie-test-broken 6.6.6" in message
    assert "ModuleNotFoundError" in message
    assert isinstance(caught.value, LookupError)


def test_unknown_url_scheme_lists_installed_drivers() -> None:
    with pytest.raises(
        DriverNotFound, match=r"(?s)no cache driver for URL scheme 'nosuch://'.*memory"
    ):
        cache.from_url("nosuch://host")


def test_a_duplicate_name_is_an_error_naming_both_distributions() -> None:
    with pytest.raises(DriverConflict) as caught:
        cache.new(driver="echo")
    message = str(caught.value)
    assert "pevensie-test-echo 1.2.3" in message
    assert "pevensie-test-dupe 0.0.1" in message
    assert {i.distribution for i in _by_name("echo")} == {
        "pevensie-test-echo",
        "pevensie-test-dupe",
    }
    assert not any(i.loaded for i in _by_name("echo"))


def test_a_hand_registered_plugin_joins_the_registry() -> None:
    class Plugin:
        @hookimpl
        def register_cache_drivers(self, register: object) -> None:
            from pevensie_cache.memory import MemoryDriver

            register("handmade", lambda **o: MemoryDriver(**o))  # type: ignore[operator]

    register_plugin(Plugin(), name="handmade-plugin")
    try:
        with cache.new(driver="handmade", max_entries=2) as c:
            c.set("a", "1", "x")
            assert c.get("a", "1") == "x"
    finally:
        reset()
    with pytest.raises(DriverNotFound):
        cache.new(driver="handmade")


def test_importing_the_package_loads_no_plugin() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pevensie_cache
        from pevensie_cache import cache
        prefixes = ("pevensie_test", "pevensie_cache.memory")
        loaded = [m for m in sys.modules if m.startswith(prefixes)]
        assert loaded == [], loaded
        cache.new(driver="memory")
        assert "pevensie_cache.memory" in sys.modules
        assert "pevensie_test_echo" in sys.modules  # every plugin loads on first lookup
        assert "pevensie_test_echo.driver" not in sys.modules  # but no driver module
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_registry_is_loaded_once_and_cached() -> None:
    from pevensie_cache.plugins import get_registry

    assert get_registry() is get_registry()


def test_a_driver_object_needs_no_registry() -> None:
    from pevensie_test_echo.driver import EchoDriver

    c = PevensieCache(EchoDriver())
    assert not c.connected
    assert cache.new(driver=EchoDriver()).driver.__class__ is EchoDriver


def test_the_memory_driver_works_from_a_bare_source_tree(tmp_path: Path) -> None:
    """No installed metadata (a vendored copy): the built-in driver is still found, once."""
    import shutil

    import pluggy

    import pevensie_cache

    shutil.copytree(Path(pevensie_cache.__file__).parent, tmp_path / "pevensie_cache")
    shutil.copytree(Path(pluggy.__file__).parent, tmp_path / "pluggy")
    program = textwrap.dedent(
        """
        import sys
        from importlib.metadata import entry_points
        assert not list(entry_points(group="pevensie.drivers")), "metadata leaked in"
        from pevensie_cache import cache
        c = cache.new().connect()
        c.set("user", "1", "bare")
        print(c.get("user", "1"), [(i.name, i.loaded) for i in cache.drivers()])
        """
    )
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{program}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "bare [('memory', True)]"


def test_an_installed_memory_driver_is_listed_once() -> None:
    assert [info.name for info in cache.drivers()].count("memory") == 1
