"""Driver options declared once: what each option is, and one conversion for every source.

A driver describes each option with an :class:`Option` (its kind, bounds, unit,
secrecy, URL query name and aliases, and a one-line doc) and gathers them in an
:class:`OptionSet`. Everything else is derived from that one declaration:

- :meth:`Option.check` is the strict check of a typed value (for a dataclass's
  ``__post_init__``: ``port="6379"`` is an error there);
- :meth:`Option.convert` is the forgiving conversion, the same for URL query
  values, the strings of INI- or env-style mappings (``cache.from_config``) and
  keyword arguments: ``"6379"`` becomes ``6379`` for an int option, ``"off"``
  becomes ``False`` for a bool, ``"2s"`` becomes ``2000`` for a duration in
  milliseconds, and typed values stay as they are;
- :meth:`OptionSet.convert` and :meth:`OptionSet.convert_query` check names
  (an unknown one gets "did you mean ...?" and the list of valid ones), resolve
  aliases and convert values;
- :meth:`OptionSet.url_query`, :meth:`OptionSet.masked_repr` and
  :meth:`OptionSet.describe` give the query part of a display URL, a repr with
  secrets masked and a reference text.

Sizes (``kind="size"``) are whole numbers of bytes: a bare number is bytes,
and a unit may follow, decimal (``kB``, ``MB``, ``GB``: powers of 1000) or
binary (``KiB``, ``MiB``, ``GiB``: powers of 1024), in any letter case
(``"64MiB"``, ``"512 kB"``, ``"1.5GiB"``; a fraction of a byte is dropped).

>>> limit = Option(name="limit", kind="size", low=1, query=True,
...                doc="Bytes kept at most.")
>>> limit.convert("64MiB"), limit.convert("512 kB"), limit.convert("1024")
(67108864, 512000, 1024)
>>> limit.format(8 << 20)
'8MiB'

Durations: a bare number is in the option's documented unit (``unit="ms"``:
milliseconds), and an explicit unit is accepted (``"500ms"``, ``"2s"``,
``"1.5s"``, ``"250 ms"``, ``"1m"``), as is a :class:`datetime.timedelta`. A
bare number below the option's ``floor`` is refused with a message that names
the unit, since it is most likely meant in another one (``timeout=5`` for five
seconds).

>>> timeout = Option(name="timeout", kind="duration", unit="ms", low=1, floor=100,
...                  query=True, doc="Milliseconds to wait for the server.")
>>> [timeout.convert(given) for given in ("2s", "250 ms", "500", 750)]
[2000, 250, 500, 750]

A duration is always shown with a unit (display URLs, reprs): whole seconds
in ``s``, anything else in ``ms``, so ``300`` milliseconds never reads as
300 seconds.

>>> timeout.format(300), timeout.format(5000), timeout.format(1500)
('300ms', '5s', '1500ms')

A configuration dataclass declares each field with :meth:`Option.field` and
builds its table with :meth:`OptionSet.from_dataclass`, which refuses a field
that has no declaration. This module imports no client library: any driver
can use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from pevensie_cache.errors import ConfigError
from pevensie_cache.validation import shown

__all__ = [
    "DURATION_UNITS",
    "SIZE_UNITS",
    "Alias",
    "Kind",
    "Option",
    "OptionSet",
    "UnknownOptionError",
]

Kind = Literal["int", "bool", "str", "duration", "size", "custom"]
"""What an option holds: ``size`` is an int of bytes; ``custom`` converts text with ``parse``."""

_KINDS = frozenset({"int", "bool", "str", "duration", "size", "custom"})
_NUMERIC = frozenset({"int", "duration", "size"})

DURATION_UNITS: Mapping[str, Fraction] = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}
"""The units a duration may be written with, each as a number of seconds."""

SIZE_UNITS: Mapping[str, int] = {
    "B": 1,
    "kB": 1000,
    "KiB": 1 << 10,
    "MB": 1000**2,
    "MiB": 1 << 20,
    "GB": 1000**3,
    "GiB": 1 << 30,
    "TB": 1000**4,
    "TiB": 1 << 40,
}
"""The units a size may be written with (in any letter case), each as a number of bytes."""

_SIZE_SCALES = {unit.lower(): scale for unit, scale in SIZE_UNITS.items()}
_BINARY_UNITS = ("TiB", "GiB", "MiB", "KiB")
_UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER_TEXT_MAX = 40
"""The longest text read as a number option (a size of 10**30 bytes with a unit fits)."""
_DURATION = re.compile(r"([+-]?[0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)", re.ASCII)
_METADATA_KEY = "pevensie_cache.option"
_T = TypeVar("_T")


class UnknownOptionError(ConfigError):
    """An option name nobody declares: the message suggests the likely one and lists the valid.

    Whoever passes options on (the cache builders, the framework backends)
    adds its own with :meth:`with_options`, so the message lists every option
    the caller could have meant, and the suggestion looks among them all.
    """

    def __init__(
        self,
        unknown: Sequence[str],
        *,
        subject: str,
        valid: Sequence[str],
        candidates: Sequence[str] = (),
        groups: Sequence[tuple[str, Sequence[str]]] = (),
        where: str = "",
        hints: Mapping[str, str] | None = None,
    ) -> None:
        """``subject`` is what was unknown (``Redis driver option``), ``valid`` its options.

        ``candidates`` are the names "did you mean" looks among (default:
        ``valid``); ``groups`` are other ``(label, names)`` accepted alongside;
        ``hints`` map well-known foreign names to the option meant instead.
        """
        self.unknown = tuple(unknown)
        self.subject = subject
        self.valid = tuple(valid)
        self.candidates = tuple(candidates or valid)
        self.groups = tuple((label, tuple(names)) for label, names in groups)
        self.where = where
        self.hints = dict(hints or {})
        super().__init__(self._message())

    def with_options(self, label: str, names: Sequence[str]) -> UnknownOptionError:
        """Return this error with ``names`` (``label`` options) accepted alongside.

        A name among them is no longer unknown; if none is left, the returned
        error's ``unknown`` is empty (the caller then has nothing to report).
        """
        return UnknownOptionError(
            [name for name in self.unknown if name not in names],
            subject=self.subject,
            valid=self.valid,
            candidates=self.candidates,
            groups=[*self.groups, (label, names)],
            where=self.where,
            hints=self.hints,
        )

    def _message(self) -> str:
        everything = [*self.candidates, *(name for _, names in self.groups for name in names)]
        described = []
        for name in self.unknown:
            meant = self.hints.get(name)
            if meant is None:
                close = difflib.get_close_matches(name, everything, n=1)
                meant = close[0] if close else None
            described.append(f"{name!r} (did you mean {meant!r}?)" if meant else repr(name))
        plural = "s" if len(self.unknown) > 1 else ""
        others = "".join(f"; {label} options: {', '.join(names)}" for label, names in self.groups)
        return (
            f"unknown {self.subject}{plural} {', '.join(described)}{self.where}; "
            f"valid options: {', '.join(self.valid)}{others}"
        )


class _WithUnit(int):
    """A duration written with its unit (``"50ms"``, a timedelta): exempt from ``floor``.

    It stays an ``int`` everywhere; the mark survives ``dataclasses.replace``, which
    hands the stored value back to the class's checks.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return int.__repr__(self)


@dataclass(frozen=True)
class Alias:
    """Another name an option is accepted under (a client library's spelling, say)."""

    name: str
    """The other name."""
    parse: Callable[[Any], Any] | None = None
    """Turns a value given under this name into one of the option; ``None`` keeps it."""


@dataclass(frozen=True, kw_only=True)
class Option:
    """One driver option, declared once.

    ``kind``, ``doc`` and ``query`` (whether the option may be given as a URL
    query parameter) have no default: declaring an option means deciding them.
    Int and duration options need ``low``; a duration needs ``unit``.
    """

    kind: Kind
    """``int``, ``bool``, ``str``, ``duration`` (an int in ``unit``), ``size`` or ``custom``.

    A ``size`` is an int of bytes that text may give with a unit (``64MiB``).
    """
    doc: str
    """One line for references and ``help()``."""
    query: bool
    """Whether a URL may give it as ``?name=value`` (``False``: the URL's other parts say it)."""
    name: str = ""
    """The option's name; :meth:`OptionSet.from_dataclass` fills it from the field."""
    low: int | None = None
    """Smallest value allowed (int, duration and size options)."""
    high: int | None = None
    """Largest value allowed, if any."""
    unit: str = ""
    """A duration's unit (a key of :data:`DURATION_UNITS`), or free text for an int."""
    floor: int | None = None
    """A duration given as a bare number below this is refused as a likely unit mistake."""
    optional: bool = False
    """Whether ``None`` is allowed (an empty string in text then means ``None``)."""
    secret: bool = False
    """Never shown: repr, display URLs and error messages print ``***`` or nothing."""
    display: bool | None = None
    """Whether a display URL shows it when it differs from the default; ``None``: as ``query``."""
    aliases: tuple[str | Alias, ...] = ()
    """Other names accepted in URLs, mappings and keywords."""
    parse: Callable[[str], Any] | None = None
    """Converts text into a value: required by ``custom`` options, unused by the others."""
    validate: Callable[[Any], Any] | None = None
    """A rule of this option alone, after the kind's check; returns the value to keep."""

    def __post_init__(self) -> None:
        problem = self._declaration_problem()
        if problem:
            raise TypeError(f"option {self.name or '(unnamed)'}: {problem}")
        named = tuple(Alias(a) if isinstance(a, str) else a for a in self.aliases)
        object.__setattr__(self, "aliases", named)

    def _declaration_problem(self) -> str:
        if self.kind not in _KINDS:
            return f"kind must be one of {', '.join(sorted(_KINDS))}, not {self.kind!r}"
        if not self.doc.strip():
            return "doc must say what the option is"
        numeric = self.kind in _NUMERIC
        if numeric and self.low is None:
            return "an int, duration or size option needs low (its smallest value)"
        if not numeric and (self.low is not None or self.high is not None):
            return "only int, duration and size options take low and high"
        if self.kind == "duration" and self.unit not in DURATION_UNITS:
            return f"a duration needs unit, one of {', '.join(DURATION_UNITS)}"
        if self.kind == "size" and self.unit:
            return "a size is in bytes: it takes no unit"
        if self.floor is not None and self.kind != "duration":
            return "only duration options take floor"
        if self.kind == "custom" and self.parse is None:
            return "a custom option needs parse"
        return ""

    # -- declaring a dataclass field -----------------------------------------------------

    def field(self, default: _T) -> _T:
        """Return a dataclass field with ``default`` that carries this option.

        ``port: int = Option(kind="int", low=1, high=65535, query=False, doc="...").field(6379)``
        """
        value: _T = dataclasses.field(default=default, metadata={_METADATA_KEY: self})
        return value

    # -- facts derived from the declaration ----------------------------------------------

    @property
    def alias_names(self) -> tuple[str, ...]:
        """The other names this option is accepted under."""
        return tuple(a.name if isinstance(a, Alias) else a for a in self.aliases)

    @property
    def shown_in_url(self) -> bool:
        """Whether a display URL carries this option as a query parameter."""
        return self.query if self.display is None else self.display

    @property
    def unit_words(self) -> str:
        """The unit in words (``milliseconds``, ``bytes``), or ``""``."""
        if self.kind == "size":
            return "bytes"
        return _UNIT_WORDS.get(self.unit, self.unit) if self.kind == "duration" else self.unit

    def summary(self) -> str:
        """Return the option's type, bounds and URL form in a few words (``int, 1 to 65535``)."""
        if self.kind == "duration":
            facts = [f"duration in {self.unit_words}"]
        elif self.kind == "size":
            facts = ["size in bytes (or with a unit: 512kB, 64MiB)"]
        else:
            facts = [f"{self.kind} ({self.unit})" if self.unit else self.kind]
        if self.low is not None:
            facts.append(
                f"{self.low} to {self.high}" if self.high is not None else f">= {self.low}"
            )
        if self.floor is not None:
            facts.append(f"a number without unit >= {self.floor}")
        if self.optional:
            facts.append("or None")
        if self.query:
            facts.append(f"URL ?{self.name}=")
        if self.aliases:
            facts.append(f"also {', '.join(self.alias_names)}")
        return ", ".join(facts)

    # -- values ----------------------------------------------------------------------------

    def check(self, value: Any) -> Any:
        """Return ``value`` if it has this option's type and bounds; else raise ConfigError.

        Strict: text is not converted (see :meth:`convert`). The returned value is
        the one to keep (``validate`` may normalise it, a list into a tuple, say).
        A duration may also be a :class:`datetime.timedelta`; a bare number
        below its ``floor`` is refused as it is by :meth:`convert`.
        """
        if value is None and self.optional:
            return None
        if self.kind == "duration":
            if isinstance(value, timedelta):
                value = self._duration_from_value(value)
            self._check_int(value)
            if not isinstance(value, _WithUnit):
                self._bare(value)
        elif self.kind in ("int", "size"):
            self._check_int(value)
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{self.name} must be a bool, not {type(value).__name__}")
        elif self.kind == "str":
            self._check_str(value)
        return value if self.validate is None else self.validate(value)

    def convert(self, value: Any) -> Any:
        """Convert ``value`` from a URL, a mapping or a keyword, then :meth:`check` it.

        Text is read by kind (whole numbers, ``true/false/yes/no/on/off/1/0``,
        durations with or without unit, ``parse`` for custom options; an empty
        string is ``None`` for an optional option); typed values are kept.
        """
        if isinstance(value, str):
            value = self._from_text(value)
        elif self.kind == "duration":
            value = self._duration_from_value(value)
        return self.check(value)

    def format(self, value: Any) -> str:
        """Return ``value`` as URL text that :meth:`convert` reads back (``***`` if secret)."""
        if self.secret:
            return "***"
        if isinstance(value, bool):
            return "true" if value else "false"
        if self.kind == "duration":
            return _format_duration(value, self.unit)
        if self.kind == "size":
            return _format_size(value)
        return str(value)

    # -- helpers -----------------------------------------------------------------------------

    def _shown(self, value: object) -> str:
        return "***" if self.secret else repr(value)

    def _check_int(self, value: object) -> None:
        unit = f" ({self.unit_words})" if self.unit_words else ""
        if not isinstance(value, int) or isinstance(value, bool):
            allowed = f"an int{unit} or None" if self.optional else f"an int{unit}"
            raise ConfigError(f"{self.name} must be {allowed}, not {type(value).__name__}")
        low, high = self.low, self.high
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                bounds = f"between {low} and {high}"
            else:
                bounds = f"at least {low}" if low is not None else f"at most {high}"
            got = "" if self.secret else f", got {shown(value)}"
            raise ConfigError(f"{self.name} must be {bounds}{unit}{got}")

    def _check_str(self, value: object) -> None:
        if not isinstance(value, str):
            allowed = "a str or None" if self.optional else "a str"
            raise ConfigError(f"{self.name} must be {allowed}, not {type(value).__name__}")
        if not value:
            hint = " (use None for none)" if self.optional else ""
            raise ConfigError(f"{self.name} must not be empty{hint}")
        if "\x00" in value:
            got = "" if self.secret else f", got {value!r}"
            raise ConfigError(f"{self.name} must not contain NUL characters{got}")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                got = "" if self.secret else f", got {value!r}"
                # from None: the encoder's error would carry the text (a password) along.
                raise ConfigError(
                    f"{self.name} must be encodable as UTF-8 (no lone surrogates){got}"
                ) from None

    def _from_text(self, text: str) -> Any:
        if self.optional and not text.strip():
            return None
        if self.kind in _NUMERIC and len(text.strip()) > _NUMBER_TEXT_MAX:
            # Past 4,300 digits, int() refuses the text (Python's digit limit): say why here.
            raise ConfigError(
                f"{self.name} must be a number, got a text of {len(text.strip())} characters: "
                f"far longer than any number it can be"
            )
        if self.kind == "int":
            if not _WHOLE.fullmatch(text.strip()):
                unit = f" ({self.unit_words})" if self.unit_words else ""
                raise ConfigError(
                    f"{self.name} must be a whole number{unit}, got {self._shown(text)}"
                )
            return int(text)
        if self.kind == "bool":
            lowered = text.strip().lower()
            if lowered in _TRUE or lowered in _FALSE:
                return lowered in _TRUE
            raise ConfigError(
                f"{self.name} must be true or false (or yes/no, on/off, 1/0), "
                f"got {self._shown(text)}"
            )
        if self.kind == "duration":
            return self._duration_from_text(text)
        if self.kind == "size":
            return self._size_from_text(text)
        if self.kind == "custom":
            if self.parse is None:  # __post_init__ refuses this; a declaration changed since
                raise TypeError(f"option {self.name}: a custom option needs parse")
            return self.parse(text)
        return text

    def _duration_from_text(self, text: str) -> int:
        match = _DURATION.fullmatch(text.strip())
        if match is None or (not match.group(2) and "." in match.group(1)):
            raise ConfigError(
                f"{self.name} must be a whole number of {self.unit_words} or a duration "
                f"with a unit such as 500ms or 2s, got {self._shown(text)}"
            )
        number, symbol = match.groups()
        if not symbol:
            return self._bare(int(number))
        scale = DURATION_UNITS.get(symbol.lower())
        if scale is None:
            raise ConfigError(
                f"{self.name}: unknown unit {symbol!r} in {self._shown(text)}; "
                f"write the duration with {', '.join(DURATION_UNITS)} (500ms, 2s)"
            )
        return self._in_unit(Fraction(number) * scale, text)

    def _size_from_text(self, text: str) -> int:
        match = _DURATION.fullmatch(text.strip())
        if match is None or (not match.group(2) and "." in match.group(1)):
            raise ConfigError(
                f"{self.name} must be a whole number of bytes or a size with a unit such as "
                f"512kB or 64MiB, got {self._shown(text)}"
            )
        number, symbol = match.groups()
        scale = _SIZE_SCALES.get(symbol.lower()) if symbol else 1
        if scale is None:
            close = difflib.get_close_matches(symbol.lower(), _SIZE_SCALES, n=1)
            hint = f" (did you mean {_unit_spelling(close[0])!r}?)" if close else ""
            raise ConfigError(
                f"{self.name}: unknown unit {symbol!r}{hint} in {self._shown(text)}; "
                f"write the size in bytes or with {', '.join(SIZE_UNITS)} (512kB, 64MiB)"
            )
        return int(Fraction(number) * scale)  # a fraction of a byte is dropped

    def _duration_from_value(self, value: object) -> object:
        if isinstance(value, timedelta):
            return self._in_unit(Fraction(value // timedelta(microseconds=1), 1_000_000), value)
        if isinstance(value, int) and not isinstance(value, bool):
            return self._bare(value)
        return value  # not a duration: check() says what is expected

    def _in_unit(self, seconds: Fraction, given: object) -> int:
        amount = seconds / DURATION_UNITS[self.unit]
        if amount.denominator != 1:
            raise ConfigError(
                f"{self.name} must be a whole number of {self.unit_words}, got {self._shown(given)}"
            )
        return _WithUnit(amount)

    def _bare(self, number: int) -> int:
        """Check a duration written without unit against ``floor``."""
        floor = self.floor
        if floor is None or number >= floor or (self.low is not None and number < self.low):
            return number  # below low: check() gives the bounds message
        unit, words = self.unit, self.unit_words
        seconds = f"{number}s for {number} seconds, or " if unit != "s" else ""
        typed = ""
        if unit == "ms":
            typed = (
                f" (as a typed value: {number * 1000} for {number} seconds, or "
                f"datetime.timedelta(milliseconds={number}))"
            )
        raise ConfigError(
            f"{self.name} is in {words}: {number} {unit} is below the {floor} {unit} minimum "
            f"for a number without unit; write {seconds}{number}{unit} if you mean "
            f"{number} {words}{typed}"
        )


class OptionSet:
    """The options of one driver (or configuration class), by name and by alias."""

    def __init__(
        self,
        options: Iterable[Option],
        *,
        owner: str,
        defaults: Mapping[str, Any] | None = None,
        hints: Mapping[str, str] | None = None,
        url_hints: Mapping[str, str] | None = None,
    ) -> None:
        """Gather ``options``; ``owner`` names the driver in messages (``"Redis"``).

        ``defaults`` are the values a display URL leaves out; ``hints`` map
        names other libraries use to the option meant (``max_connections`` to
        ``pool_size``), for the message about an unknown name. In a URL's
        query, a hint to an option a query cannot give is left out, and
        ``url_hints`` are added (``ssl`` to ``rediss://``).
        """
        self.owner = owner
        self.hints = dict(hints or {})
        self.url_hints = dict(url_hints or {})
        self._options: dict[str, Option] = {}
        self._names: dict[str, tuple[Option, Alias | None]] = {}
        self._defaults = dict(defaults or {})
        specs = list(options)
        for spec in specs:
            self._claim(spec.name, spec, None)
            self._options[spec.name] = spec
        for spec in specs:
            for given in spec.aliases:
                alias = given if isinstance(given, Alias) else Alias(given)
                self._claim(alias.name, spec, alias)

    def _claim(self, name: str, spec: Option, alias: Alias | None) -> None:
        if not name:
            raise TypeError(f"an option of {self.owner} has no name")
        if name in self._names:
            raise TypeError(f"{self.owner} declares the option name {name!r} twice")
        self._names[name] = (spec, alias)

    @classmethod
    def from_dataclass(
        cls,
        datacls: type[Any],
        *,
        owner: str,
        declarations: Mapping[str, Option] | None = None,
        hints: Mapping[str, str] | None = None,
        url_hints: Mapping[str, str] | None = None,
    ) -> OptionSet:
        """Build the set from a dataclass whose every field has an option declaration.

        A field is declared either in ``declarations`` (by field name: the
        class keeps plain defaults, so its signature reads well) or with
        :meth:`Option.field`. A field without a declaration, or a declaration
        without a field, is a ``TypeError`` here, when the class's module is
        imported.
        """
        given = dict(declarations or {})
        specs: list[Option] = []
        defaults: dict[str, Any] = {}
        for spec in dataclasses.fields(datacls):
            declared = given.pop(spec.name, None) or spec.metadata.get(_METADATA_KEY)
            if not isinstance(declared, Option):
                raise TypeError(
                    f"{datacls.__name__}.{spec.name} has no option declaration: declare it "
                    "in declarations, or as Option(kind=..., doc=..., query=...).field(default)"
                )
            specs.append(dataclasses.replace(declared, name=spec.name))
            defaults[spec.name] = spec.default
        if given:
            raise TypeError(f"{datacls.__name__} has no field {', '.join(sorted(given))}")
        return cls(specs, owner=owner, defaults=defaults, hints=hints, url_hints=url_hints)

    def __iter__(self) -> Iterator[Option]:
        return iter(self._options.values())

    def __len__(self) -> int:
        return len(self._options)

    def __contains__(self, name: object) -> bool:
        return name in self._options

    def __getitem__(self, name: str) -> Option:
        return self._options[name]

    @property
    def names(self) -> tuple[str, ...]:
        """The options' own names, in declaration order (aliases left out)."""
        return tuple(self._options)

    # -- names ---------------------------------------------------------------------------

    def check_names(self, names: Iterable[str]) -> None:
        """Raise :class:`ConfigError` naming each unknown name, with "did you mean ...?"."""
        unknown = [name for name in names if name not in self._names]
        if unknown:
            raise self._unknown(unknown, "driver option", list(self._names), list(self._options))

    def _unknown(
        self,
        names: list[str],
        what: str,
        candidates: list[str],
        valid: list[str],
        where: str = "",
        hints: Mapping[str, str] | None = None,
    ) -> UnknownOptionError:
        return UnknownOptionError(
            names,
            subject=f"{self.owner} {what}",
            valid=valid,
            candidates=candidates,
            where=where,
            hints=self.hints if hints is None else hints,
        )

    # -- values ------------------------------------------------------------------------------

    def convert(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Return keyword or mapping ``values`` by option name, converted (aliases resolved).

        The rule is the one of URL query values: ``{"port": "6379"}`` gives ``6379``.
        """
        self.check_names(values)
        converted: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for name, value in values.items():
            spec, alias = self._names[name]
            if spec.name in converted:
                raise ConfigError(
                    f"{spec.name} is given twice (as {given_as[spec.name]} and {name})"
                )
            given_as[spec.name] = name
            converted[spec.name] = _convert(spec, alias, value)
        return converted

    def convert_query(self, query: Mapping[str, str], into: dict[str, Any], *, shown: str) -> None:
        """Convert URL query parameters into ``into``, which holds what the URL's other parts say.

        ``shown`` is the URL with its password masked, for messages. An option
        already in ``into`` (``/1?db=2``) or not a query option is an error.
        """
        for name, text in query.items():
            entry = self._names.get(name)
            if entry is None or not entry[0].query:
                raise self._query_error(name, shown)
            spec, alias = entry
            if spec.name in into:
                raise ConfigError(f"{spec.name} is given twice in {shown!r}")
            into[spec.name] = _convert(spec, alias, text)

    def _query_error(self, name: str, shown: str) -> ConfigError:
        valid = sorted(n for spec in self if spec.query for n in (spec.name, *spec.alias_names))
        if name in self._names:
            return ConfigError(
                f"{name} is not a {self.owner} URL query option ({shown!r}): the URL itself "
                f"says it, or give it as a keyword option; valid options: {', '.join(valid)}"
            )
        # A hint to an option that a query cannot give would lead to the error above.
        hints = {
            foreign: meant
            for foreign, meant in self.hints.items()
            if meant not in self._options or self._options[meant].query
        }
        hints.update(self.url_hints)
        return self._unknown([name], "URL option", valid, valid, f" in {shown!r}", hints)

    def check_fields(self, instance: object) -> None:
        """Check every option's attribute of ``instance``, storing the normalised value.

        Meant for a (frozen) dataclass's ``__post_init__``; the cross-field rules
        stay with the class.
        """
        for spec in self:
            value = getattr(instance, spec.name)
            checked = spec.check(value)
            if checked is not value:
                object.__setattr__(instance, spec.name, checked)

    # -- presenting ----------------------------------------------------------------------------

    def url_query(self, instance: object) -> list[str]:
        """Return ``name=value`` for each displayed option of ``instance`` off its default."""
        query: list[str] = []
        for spec in self:
            value = getattr(instance, spec.name)
            if not spec.shown_in_url or value is None:
                continue
            if spec.name in self._defaults and value == self._defaults[spec.name]:
                continue
            shown = "***" if spec.secret else quote(spec.format(value), safe="/")
            query.append(f"{spec.name}={shown}")
        return query

    def masked_repr(self, instance: object) -> str:
        """Return ``Type(name=value, ...)`` with every secret shown as ``'***'``.

        A duration is shown with its unit, as a display URL shows it
        (``timeout=300ms``, ``timeout=5s``), never as a bare number.
        """
        parts = []
        for spec in self:
            value = getattr(instance, spec.name)
            if spec.secret and value is not None:
                shown = "'***'"
            elif spec.kind == "duration" and value is not None:
                shown = spec.format(value)
            else:
                shown = repr(value)
            parts.append(f"{spec.name}={shown}")
        return f"{type(instance).__name__}({', '.join(parts)})"

    def describe(self) -> str:
        """Return a reference of every option: name, type and bounds, URL form, doc."""
        lines = [f"Options of the {self.owner} driver:", ""]
        lines += [f"- ``{spec.name}`` ({spec.summary()}): {spec.doc}" for spec in self]
        return "\n".join(lines)

    def document(self, target: type[Any]) -> None:
        """Append :meth:`describe` to ``target``'s docstring, for ``help()`` and references."""
        target.__doc__ = f"{inspect.cleandoc(target.__doc__ or '')}\n\n{self.describe()}\n"


def _unit_spelling(lowered: str) -> str:
    return next(unit for unit in SIZE_UNITS if unit.lower() == lowered)


def _format_size(size: int) -> str:
    """Write ``size`` bytes in the largest binary unit that holds it exactly (``8MiB``)."""
    for unit in _BINARY_UNITS:
        scale = SIZE_UNITS[unit]
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def _format_duration(amount: int, unit: str) -> str:
    """Write ``amount`` of ``unit`` with its unit: whole seconds as ``5s``, else ``300ms``.

    Always with a unit, so a reader never has to know the option's own unit
    (``timeout=300`` reads as seconds, though it means milliseconds).
    """
    seconds = amount * DURATION_UNITS[unit]
    if seconds.denominator == 1:
        return f"{seconds.numerator}s"
    return f"{seconds * 1000}ms"  # every duration unit is a whole number of milliseconds


def _convert(spec: Option, alias: Alias | None, value: Any) -> Any:
    if alias is not None and alias.parse is not None:
        value = alias.parse(value)
    return spec.convert(value)
