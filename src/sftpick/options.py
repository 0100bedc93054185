"""Options, declared once, on the component that takes them (in the spirit of scikit-learn's
`_parameter_constraints`): a scorer, a selector, the engine or a command is a dataclass whose
option fields are made with `option(default, help, …)`: type (the annotation), default, range or
choices, help. From that one declaration come the CLI flags (cli.py), the config file keys,
the Python API's keywords, the check of every value before any work (`check_options`) and the
manifest's record (`option_values`).

Names: an option is given to every component of a command that declares it (`max_length`: IFD
and DEITA alike), or to one component alone as `OWNER.NAME` (`ifd.max_length`; on the command
line `--ifd.max-length`, in a config file `[scorers.ifd]`). Imports nothing from the package but
the errors.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OptionError, did_you_mean, not_one_of

_KEY = "sftpick"  # where an option's Spec sits in its field's metadata


@dataclass(frozen=True)
class Spec:
    help: str
    choices: tuple = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    what: str = ""  # how a range reads in an error: "a share", "a whole number"
    flags: tuple[str, ...] = ()  # command-line flags, when not --NAME
    argument: bool = False  # a positional argument on the command line
    repeat: bool = False  # a list given by repeating the flag (else a comma-separated value)
    cli: bool = True  # False: the Python API alone (e.g. vectors held in memory)


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple = (), ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None, what: str = "",
           flags: tuple[str, ...] = (), argument: bool = False, repeat: bool = False, cli: bool = True) -> Any:
    """A dataclass field that is an option (keyword-only; a list default is copied for each object)."""
    spec = Spec(help, tuple(choices), ge, gt, le, lt, what, tuple(flags), argument, repeat, cli)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={_KEY: spec}, kw_only=True)
    return dataclasses.field(default=default, metadata={_KEY: spec}, kw_only=True)


@dataclass(frozen=True)
class Option:
    name: str
    type: Any
    default: Any
    spec: Spec

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def flag(self) -> str:
        return self.spec.flags[-1] if self.spec.flags else "--" + self.name.replace("_", "-")


def declared(cls: type) -> list[Option]:
    """The options a dataclass declares, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [Option(f.name, hints[f.name], f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else f.default, f.metadata[_KEY])
            for f in dataclasses.fields(cls) if _KEY in f.metadata]


def option_values(obj: Any) -> dict:
    """The options of a component as plain data (paths as text), for manifests and configs."""
    return {o.name: _plain(getattr(obj, o.name)) for o in declared(type(obj))}


def check_options(obj: Any, owner: str = "") -> None:
    """Every declared option's value against its type, choices and range (no work is done)."""
    for o in declared(type(obj)):
        setattr_frozen(obj, o.name, check_value(o, getattr(obj, o.name), owner))


def setattr_frozen(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # also on a frozen dataclass: the value was only normalised


def check_value(o: Option, value: Any, owner: str = "") -> Any:
    """`value` normalised to the option's type (a float from an int, a Path from text, a tuple
    from a list, a list from a comma-separated text); OptionError naming the option otherwise."""
    where = f"{owner}: " if owner else ""
    value = _coerce(o, value, where)
    if value is None:
        return None
    if o.spec.choices and value not in o.spec.choices:
        raise not_one_of(o.name, value, o.spec.choices, owner)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not _in_range(o.spec, value):
        raise OptionError(f"{where}{o.name}={value!r} should be {_range_text(o.spec)}")
    return value


def _coerce(o: Option, value: Any, where: str) -> Any:
    allowed = members(o.type)
    if value is None:
        if type(None) in allowed:
            return None
        raise OptionError(f"{where}{o.name} needs a value")
    for kind in allowed:
        converted = _as(kind, value)
        if converted is not _NO:
            return converted
    raise OptionError(f"{where}{o.name}={value!r} should be {_type_text(allowed)}")


_NO = object()


def _as(kind: Any, value: Any) -> Any:
    """`value` as `kind`, or _NO."""
    origin = typing.get_origin(kind)
    if kind is bool:
        return value if isinstance(value, bool) else _NO
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if kind is float:  # an int stays one: it is a number, and an error shows it as it was given
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO
    if kind is str:
        return str(value) if isinstance(value, (str, Path)) else _NO
    if kind is Path:
        return Path(value) if isinstance(value, (str, Path)) else _NO
    if origin is tuple and typing.get_args(kind)[-1] is Ellipsis:
        converted = _as(list[typing.get_args(kind)[0]], value)
        return _NO if converted is _NO else tuple(converted)
    if origin is tuple:
        items = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            return _NO
        converted = tuple(_as(item, v) for item, v in zip(items, value))
        return _NO if _NO in converted else converted
    if origin is list:
        (item,) = typing.get_args(kind)
        values = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)):
            return _NO
        converted = [_as(item, v) for v in values]
        return _NO if _NO in converted else converted
    return value  # Any


def members(kind: Any) -> tuple:
    """The types a union annotation allows (one type: itself)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def _type_text(kinds: tuple) -> str:
    names = {bool: "True or False", int: "a whole number", float: "a number", str: "text", Path: "a path"}
    return " or ".join(names.get(k, getattr(k, "__name__", str(k))) for k in kinds if k is not type(None))


def _in_range(spec: Spec, value: float) -> bool:
    return ((spec.ge is None or value >= spec.ge) and (spec.gt is None or value > spec.gt)
            and (spec.le is None or value <= spec.le) and (spec.lt is None or value < spec.lt))


def _range_text(spec: Spec) -> str:
    low = (spec.gt, "(") if spec.gt is not None else (spec.ge, "[")
    high = (spec.lt, ")") if spec.lt is not None else (spec.le, "]")
    if low[0] is not None and high[0] is not None:
        text = f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    elif low[0] is not None:
        text = f"{'>' if low[1] == '(' else '>='} {low[0]:g}"
    else:
        text = f"{'<' if high[1] == ')' else '<='} {high[0]:g}"
    return f"{spec.what} {text}" if spec.what else text


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- options given to components

def split_scoped(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """{"max_length": 1, "ifd.max_length": 2} -> ({"max_length": 1}, {"ifd": {"max_length": 2}})."""
    plain, scoped = {}, {}
    for key, value in given.items():
        owner, dot, name = key.rpartition(".")
        if dot:
            scoped.setdefault(owner, {})[name] = value
        else:
            plain[key] = value
    return plain, scoped


def component_options(cls: type, plain: dict[str, Any], scoped: dict[str, Any]) -> dict[str, Any]:
    """What one component gets: the options given to all that it declares, then its own."""
    names = {o.name for o in declared(cls)}
    return {**{k: v for k, v in plain.items() if k in names}, **scoped}


def check_known(given: dict[str, Any], registries: dict[str, dict[str, type]], also: tuple[str, ...] = ()) -> None:
    """Every option in `given` (plain or OWNER.NAME) is declared by some component of the
    `registries` (kind -> name -> class; "scorer": SCORERS, …) or is one of `also`; an
    OptionError naming the closest valid name otherwise. Nothing is built or loaded."""
    plain, scoped = split_scoped(given)
    classes = [cls for registry in registries.values() for cls in registry.values()]
    known = {o.name for cls in classes for o in declared(cls)} | set(also)
    for name in plain:
        if name not in known:
            raise OptionError(f"unknown option {name}{did_you_mean(name, known)}")
    owners = {name: [r[name] for r in registries.values() if name in r] for r in registries.values() for name in r}
    for owner, options in scoped.items():
        if owner not in owners:
            kinds = " or ".join(registries)
            raise OptionError(f"{owner}.{next(iter(options))}: there is no {kinds} {owner!r}"
                              f"{did_you_mean(owner, owners)}")
        names = {o.name for cls in owners[owner] for o in declared(cls)}
        for name in options:
            if name not in names:
                raise OptionError(f"{owner}.{name}: {owner} has no option {name}{did_you_mean(name, names)}"
                                  f" (it takes: {', '.join(sorted(names)) or 'no options'})")


def settings_from(cls: type, given: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the settings object `cls` made from the keys of `given` it declares, checked; the rest)."""
    names = {o.name for o in declared(cls)}
    ours = {k: v for k, v in given.items() if k in names}
    missing = [o.name for o in declared(cls) if o.required and o.name not in ours]
    if missing:
        raise OptionError(f"{missing[0]} needs a value")
    settings = cls(**ours)
    check_options(settings)
    return settings, {k: v for k, v in given.items() if k not in names}


def read_config(path: str | Path) -> dict[str, Any]:
    """A config file as flat keys: TOML (`budget = "5%"`; a table `[ifd]` holds IFD's own options,
    read as `ifd.max_length`), or JSON: a manifest (its `config`, the same data) or the options
    themselves. OptionError naming the file when it cannot be read."""
    import json
    import tomllib

    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as error:
        raise OptionError(f"{path}: {error}") from None
    data = data.get("config", data) if isinstance(data, dict) else data  # a manifest holds its run's config
    if not isinstance(data, dict):
        raise OptionError(f"{path}: expected a table of options (or a manifest with a \"config\")")
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            flat[key] = value
    return flat


@dataclass(kw_only=True, eq=False)
class Component:
    """A scorer or a selector: a dataclass whose options are its fields made with `option()`.
    `check()` validates every option before any work (subclasses add checks that involve
    several options, calling `super().check()` first)."""

    name: typing.ClassVar[str] = ""

    def check(self) -> None:
        check_options(self, self.name)

    def options(self) -> dict:
        return option_values(self)
