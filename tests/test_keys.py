"""Keys of memoised calls: the same for equal calls, in every process and release.

A stored ``@cached`` entry is found again only if its key is derived the same
way: these tests pin the keys 0.1.0 wrote, and check the derivation against
its documented definition (SHA-256 of ``json.dumps`` of the bound arguments,
sorted, containers tagged) for arbitrary arguments and call forms.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pevensie_cache import ArgumentTypeError
from pevensie_cache.keys import KeyMaker


def _tagged(value: Any) -> Any:
    if isinstance(value, list):
        return ["l", [_tagged(item) for item in value]]
    if isinstance(value, tuple):
        return ["t", [_tagged(item) for item in value]]
    if isinstance(value, dict):
        return ["d", {key: _tagged(item) for key, item in value.items()}]
    return value


def documented_key(function: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The key as the keys module documents it, written the slow, obvious way."""
    bound = inspect.signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    if "." in function.__qualname__ and "<locals>" not in function.__qualname__:
        arguments.pop("self", None)
    text = json.dumps(
        {name: _tagged(value) for name, value in arguments.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=True,
    )
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{function.__module__}.{function.__qualname__}:{digest}"


def report(region: Any, year: Any = 2026, *, tags: Any = ()) -> None:
    return None


report.__module__, report.__qualname__ = "reports", "report"


def pair(a: Any, b: Any) -> None:
    return None


def variadic(first: Any, *rest: Any, scale: Any = 1, **options: Any) -> None:
    return None


def only_positional(a: Any, /, b: Any = 0) -> None:
    return None


class Ledger:
    def balance(self, account: Any, *, currency: Any = "EUR") -> None:
        return None


Ledger.balance.__module__ = "ledgers"

plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
argument = st.recursive(
    plain,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=12,
)


def test_the_keys_of_0_1_0_are_kept() -> None:
    """Entries stored by 0.1.0 are hits: these digests were computed by it."""
    make = KeyMaker(report, None)
    assert make("eu", tags=("a", "b")) == (
        "reports.report:00e54a3dbefa8b21d0943461eef18c5f144a360696572cc1d07825f15221fc6d"
    )
    assert make("eu") == (
        "reports.report:d66ac4c988baaf8c9697acf59db2f3711068e19c38ded39fb448577ef510572c"
    )
    odd = [None, True, -0.0, float("nan"), float("inf"), {"b": 1, "a": [2], "é": (), "~": {}}]
    assert make('é\x01"', 1.5, tags=odd) == (
        "reports.report:a93b0594ac189558871f4d22910898374aff52f1fb0d1337587e4853cc5044bf"
    )


@given(a=argument, b=argument, c=argument)
def test_every_call_form_gives_the_documented_key(a: Any, b: Any, c: Any) -> None:
    make = KeyMaker(report, None)
    key = documented_key(report, a, b, tags=c)
    assert make(a, b, tags=c) == key
    assert make(a, year=b, tags=c) == key
    assert make(region=a, tags=c, year=b) == key
    assert make(a) == make(a, 2026) == make(a, 2026, tags=()) == documented_key(report, a)
    make_pair = KeyMaker(pair, None)
    assert make_pair(a, b) == make_pair(b=b, a=a) == make_pair(a, b=b) == documented_key(pair, a, b)


@given(a=argument, b=argument)
def test_variadic_and_positional_only_signatures_give_the_documented_key(a: Any, b: Any) -> None:
    assert KeyMaker(variadic, None)(a, b, b, x=a) == documented_key(variadic, a, b, b, x=a)
    assert KeyMaker(variadic, None)(a) == documented_key(variadic, a)
    assert KeyMaker(only_positional, None)(a) == documented_key(only_positional, a)
    assert KeyMaker(only_positional, None)(a, b=b) == documented_key(only_positional, a, b)


def test_methods_leave_self_out() -> None:
    make = KeyMaker(Ledger.balance, None)
    key = make(Ledger(), "acc")
    assert key == make(Ledger(), "acc", currency="EUR") == make(Ledger(), account="acc")
    assert key == documented_key(Ledger.balance, Ledger(), "acc")
    assert key.startswith("ledgers.Ledger.balance:")


def test_lists_tuples_and_dicts_stay_apart() -> None:
    make = KeyMaker(pair, None)
    keys = {make(x, 1) for x in ([1], (1,), {"1": 1}, "[1]", 1, 1.0, True, None)}
    assert len(keys) == 8


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda make: make(b"x", 1), r"argument of type bytes cannot be keyed stably"),
        (lambda make: make(1, b=[{1}]), r"argument of type set cannot be keyed stably"),
        (lambda make: make({1: "x"}, 1), r"dict arguments need str keys"),
        (lambda make: make(1, 10**5000), r"arguments cannot be keyed"),
    ],
)
def test_arguments_without_a_stable_form_are_a_type_error(
    call: Callable[[KeyMaker], str], message: str
) -> None:
    with pytest.raises(ArgumentTypeError, match=message) as caught:
        call(KeyMaker(pair, None))
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, 2, 3), {}), ((1,), {"a": 2}), ((1, 2), {"c": 3}), ((), {"b": 1})],
)
def test_calls_that_do_not_fit_the_signature_raise_as_the_function_would(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError) as expected:
        inspect.signature(pair).bind(*args, **kwargs)
    with pytest.raises(TypeError) as caught:
        KeyMaker(pair, None)(*args, **kwargs)
    assert str(caught.value) == str(expected.value)
    with pytest.raises(TypeError, match="positional only"):
        KeyMaker(only_positional, None)(a=1)
