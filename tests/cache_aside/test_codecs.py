"""A codec of your own: a value it cannot encode is an argument error and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aside_support import Target

from pevensie_cache import ArgumentTypeError, ArgumentValueError, PevensieCacheError, cache

SECRET = "hunter2-do-not-log"


class Upper:
    """Stores strings in upper case; refuses other types (TypeError) and empty text (ValueError)."""

    def encode(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"not text: {value!r}")
        if not value or value.startswith("hunter2"):
            raise ValueError(f"refused: {value!r}")
        return value.upper()

    def decode(self, text: str) -> str:
        return text.lower()


@pytest.mark.parametrize(
    ("value", "error"),
    [(42, ArgumentTypeError), ("", ArgumentValueError), (SECRET, ArgumentValueError)],
)
def test_a_value_a_custom_codec_refuses_is_an_argument_error_and_writes_nothing(
    server_target: Target, value: Any, error: type[PevensieCacheError]
) -> None:
    with cache.from_url(server_target.url) as c:
        names = c.resource("name", codec=Upper())
        names.set("1", "ada")
        calls: list[Callable[[], object]] = [
            lambda: names.set("2", value),
            lambda: names.set_many({"3": "fine", "4": value}),
            lambda: names.add("5", value),
            lambda: names.get_or_set("6", lambda: value),
        ]
        for call in calls:
            with pytest.raises(error) as caught:
                call()
            message = str(caught.value)
            assert "'name'" in message
            assert SECRET not in message  # the codec's own message quotes the value: not shown
            assert isinstance(caught.value.__cause__, (TypeError, ValueError))
        assert names.get("1") == "ada"
    assert server_target.scan_keys() == ["name:1"]
