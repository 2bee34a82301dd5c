"""The types settings are declared with: each a pydantic constraint and the words a message says it in.

A setting's type is an ``Annotated`` type whose metadata carries its pydantic constraints and an ``Allowed`` (what
is allowed, in words). Pydantic checks a value; ``allowed`` gives the words for the one-line message
``profiles.validate`` prints (pydantic's own error text names its internals, not the setting). Numbers are strict:
True is no integer, "3" is no number, 2.0 is no count.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Callable, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import AfterValidator, Field, StrictBool, StrictStr, TypeAdapter, ValidationError


class Allowed(NamedTuple):
    """What a type allows, in words; ``lazy`` builds them when first asked (they may need an import)."""

    words: str = ""
    lazy: Callable[[], str] | None = None

    def text(self) -> str:
        return self.lazy() if self.lazy else self.words


def allowed(tp) -> str:
    """The words of ``tp``'s outermost ``Allowed``."""
    for meta in reversed(get_args(tp)[1:] if get_origin(tp) is Annotated else ()):
        if isinstance(meta, Allowed):
            return meta.text()
    return "any"


@functools.lru_cache(maxsize=None)
def _adapter(tp) -> TypeAdapter:
    return TypeAdapter(tp)


def is_ok(tp, value) -> bool:
    """Whether ``value`` passes ``tp``'s checks (the value itself is kept as given: a check, not a conversion)."""
    try:
        _adapter(tp).validate_python(value)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


def _check(ok: Callable[[Any], bool], why: str):
    """An ``AfterValidator`` that refuses what ``ok`` refuses."""
    def validate(v):
        if not ok(v):
            raise ValueError(why)
        return v
    return AfterValidator(validate)


def _int(words: str, **bounds):
    return Annotated[int, Field(strict=True, **bounds), Allowed(words)]


def _number(words: str, **bounds):
    return Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds), Allowed(words)]


PositiveInt = _int("a positive integer", ge=1)
Count = _int("an integer >= 0", ge=0)
OddPositiveInt = Annotated[int, Field(strict=True, ge=1), _check(lambda v: v % 2 == 1, "even"),
                           Allowed("an odd positive integer")]
ClassLabel = _int("a class label 0-9", ge=0, le=9)
PositiveNumber = _number("a number > 0", gt=0)
NonNegativeNumber = _number("a number >= 0", ge=0)
Fraction = _number("a number in [0, 1]", ge=0, le=1)
Number = _number("a number")
Flag = Annotated[StrictBool, Allowed("True or False")]
Name = Annotated[StrictStr, Field(min_length=1), Allowed("a string")]
AutoOrPositiveInt = Annotated[Union[Literal["auto"], PositiveInt], Allowed("'auto' or a positive integer")]


def one_of(*names):
    """Exactly one of ``names`` (strings, or None)."""
    return Annotated[Literal[names], Allowed("one of " + ", ".join(repr(n) for n in names))]


def _plural(words: str) -> str:
    for one, many in (("a positive integer", "positive integers"), ("an integer", "integers"), ("a number", "numbers"),
                      ("a string", "strings"), ("True or False", "True/False values"), ("one of", "names among"),
                      ("a class label", "class labels"), ("an odd positive integer", "odd positive integers")):
        if words.startswith(one):
            return many + words[len(one):]
    return words


def list_of(item, *, non_empty: bool = False, length: int | None = None, distinct: bool = False, words: str = ""):
    """A list (or tuple) of ``item``s; at least one, exactly ``length``, all different, as asked."""
    if not words:
        words = "a non-empty list" if non_empty else "a list"
        if length is not None:
            words = f"a list of {length} " + (_plural(allowed(item)) if item is not Any else "values")
        elif item is not Any:
            words += f" of {_plural(allowed(item))}"
        words += ", all different" if distinct else ""
    checks = [_check(lambda v: len(set(v)) == len(v), "repeats")] if distinct else []
    sizes = dict(min_length=length, max_length=length) if length is not None else dict(min_length=1 if non_empty else 0)
    return Annotated[Union[list[item], tuple[item, ...]], Field(**sizes), *checks, Allowed(words)]


def dict_of(key, value):
    """A dict of ``key`` to ``value``."""
    return Annotated[dict[key, value], Allowed(f"a dict {{{allowed(key)}: {allowed(value)}}}")]


def optional(tp):
    """``tp`` or None."""
    return Annotated[Union[tp, None], Allowed(allowed(tp) + " or None")]


def checked(base, ok: Callable[[Any], bool], words: str | Callable[[], str]):
    """``base`` where ``ok`` holds: a check no type says (a device's name, a nested config's entries). ``words``
    may be a function, called when a message needs them."""
    said = Allowed(lazy=words) if callable(words) else Allowed(words)
    return Annotated[base, _check(ok, "refused"), said]


def like(default):
    """The type a backbone's or a judge's entry takes from its default: what a value of that kind and sign is
    (a positive default asks a positive value), for the entries of nested configs that declare no types."""
    if isinstance(default, bool):
        return Flag
    if isinstance(default, int):
        return PositiveInt if default >= 1 else Count if default >= 0 else _int("an integer")
    if isinstance(default, float):
        return PositiveNumber if default > 0 else NonNegativeNumber if default >= 0 else Number
    if isinstance(default, str):
        return Name
    if isinstance(default, (list, tuple)):
        items = [like(x) for x in default]
        return list_of(items[0] if items else Any, non_empty=bool(default))
    return Any
