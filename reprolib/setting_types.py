"""What settings are declared with: the types of their fields, and ``Settings``, the base of every notebook's class.

A setting's type is an ``Annotated`` type whose metadata carries its pydantic constraints, an ``Allowed`` (what
is allowed, in words) and, where a class declares the field, a string saying what it means. Pydantic checks a
value; ``allowed`` gives the words for the one-line message ``profiles.validate`` prints (pydantic's own error
text names its internals, not the setting). Numbers are strict: True is no integer, "3" is no number, 2.0 is no
count. Rules between fields are methods marked ``@rule``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
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


# ---------------------------------------------------------------------------------------------------------
# Types of this library's settings: data sets, devices, nested configs.

DATA_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
DATA_SIZES = {"digits": 1797, "mnist": 60_000, "cifar10": 50_000}  # training images


def rule(name: str, other: str | None = None):
    """Marks a method as a rule between settings ``name`` and ``other``: it returns what is wrong, or None."""
    def mark(method):
        method.rule = (name, other)
        return method
    return mark


def _description(tp) -> str:
    return next((m for m in reversed(typing.get_args(tp)[1:]) if isinstance(m, str)), "")


def _device_ok(v) -> bool:
    kind, _, index = v.partition(":")
    return v in ("auto", "cpu", "mps", "cuda") or (kind == "cuda" and index.isdigit())


def _nets_ok(v) -> bool:
    entries = _backbone_entries()
    return all(kind in entries and isinstance(e, dict) and all(k in entries[kind] and is_ok(entries[kind][k], x)
                                                                 for k, x in e.items()) for kind, e in v.items())


def _backbone_entries() -> dict:
    """backbone -> {entry: its type}, from each backbone's constructor defaults (what ``nets`` may replace)."""
    import inspect

    from . import networks

    set_by_library = ("self", "in_channels", "resolution", "num_classes")
    return {kind: {name: like(list(p.default) if isinstance(p.default, tuple) else p.default)
                   for name, p in inspect.signature(cls.__init__).parameters.items()
                   if name not in set_by_library and p.default is not inspect.Parameter.empty}
            for kind, cls in networks.BACKBONES.items()}


def _entries(what: str, types: dict) -> str:
    return f"a dict of {what} entries (" + "; ".join(f"{k}: {allowed(t)}" for k, t in types.items()) + ")"


def _nets_words() -> str:
    entries = _backbone_entries()
    return ("a dict {backbone: entries}, backbones " + ", ".join(entries) + "; "
            + "; ".join(_entries(f"{kind} backbone", types) for kind, types in entries.items()))


def _judge_entries() -> dict:
    from .classifier import CNNConfig

    named = {"data": one_of(*DATA_SHAPES), "seed": Count, "warmup": checked(PositiveNumber, lambda v: v <= 1,
                                                                            "a number in (0, 1]"),
             "momentum": Fraction, "weight_decay": NonNegativeNumber, "label_smoothing": Fraction}
    return {f.name: named.get(f.name) or like(f.default) for f in dataclasses.fields(CNNConfig)}


Device = checked(str, _device_ok, "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
Nets = checked(dict, _nets_ok, _nets_words)
def _judge_ok(v) -> bool:
    entries = _judge_entries()
    return all(k in entries and is_ok(entries[k], x) for k, x in v.items())


Judge = checked(dict, _judge_ok, lambda: _entries("CIFAR-10 judge (classifier.CNNConfig)", _judge_entries()))

# ---------------------------------------------------------------------------------------------------------
# The base of every notebook's settings class.


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    """``cls``'s annotations, evaluated once: each evaluation builds new type objects (``list_of`` and the like), and
    a check reuses its pydantic adapter only for the same object."""
    return typing.get_type_hints(cls, include_extras=True)


@dataclass(frozen=True)
class Settings(Mapping):
    """What every notebook's settings are: frozen, read as attributes or as a read-only mapping."""

    profile: Annotated[str, "the profile these settings are of"]

    def __post_init__(self):
        wrong = [f"{type(self).__name__}: {n}={getattr(self, n)!r} is not allowed: {allowed(t)}."
                 for n, t in self.types().items() if not is_ok(t, getattr(self, n))]
        if wrong:
            raise ValueError("\n".join(wrong))

    @classmethod
    def types(cls) -> dict:
        """Each setting's declared type (the profile aside: it is chosen, not set)."""
        hints = _hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "profile"}

    @classmethod
    def following(cls, values: dict, given) -> dict:
        """``values`` with the defaults that follow the settings ``given`` (names) filled in: a class whose
        defaults depend on other settings says how here; by default none does."""
        return values

    def __getitem__(self, name):
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self):
        return iter(self.__dataclass_fields__)

    def __len__(self):
        return len(self.__dataclass_fields__)

    def replace(self, **changes) -> "Settings":
        """These settings with ``changes`` (checked like any construction)."""
        return dataclasses.replace(self, **changes)

    def problems(self) -> list[tuple[str, str | None, str]]:
        """(setting, other setting or None, what is wrong) for every ``@rule`` that fails, in declaration order."""
        out, seen = [], set()
        for klass in reversed(type(self).__mro__):
            for name, method in vars(klass).items():
                if hasattr(method, "rule") and name not in seen:
                    seen.add(name)
                    why = getattr(self, name)()
                    if why:
                        out.append((*method.rule, why))
        return out

    def table(self):
        """Name, value and description of every setting: what a notebook shows under its header."""
        import pandas as pd

        types = _hints(type(self))
        own_first = dict.fromkeys(n for klass in type(self).__mro__ for n in vars(klass).get("__annotations__", {})
                                  if n in types and n in self.__dataclass_fields__)
        return pd.DataFrame([(n, repr(getattr(self, n)), _description(types[n])) for n in own_first],
                            columns=["setting", "value", "meaning"]).set_index("setting")
