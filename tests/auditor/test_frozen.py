"""Frozen dataclasses built directly (``built_directly``) are the instances their own
constructor makes: equal, hashed, printed, pickled and frozen alike."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from auditor.engine import Finding, Result, Severity, Status
from auditor.frozen import built_directly
from auditor.models import EvidenceRef

REF = EvidenceRef("dns/contoso.example.json", "/answers/0", "nxdomain", "contoso.example MX")
SAMPLES = [
    (EvidenceRef, (REF.file, REF.pointer, REF.observed, REF.property, None)),
    (Result, (Status.FAIL, "domain contoso.example", "no MX", (REF,), Severity.LOW, "contoso.example",
              False, "", (), "")),
    (Finding, ("DNS-002", "t", Severity.MEDIUM, Status.FAIL, "domain contoso.example", "no MX", (REF,),
               "0123456789abcdef0123", "", ("fp",), "bypassable")),
]


@pytest.mark.parametrize(("cls", "args"), SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_an_instance_built_directly_is_the_one_its_constructor_makes(cls: type, args: tuple) -> None:
    built, made = built_directly(cls)(*args), cls(*args)
    assert type(built) is cls and built == made and hash(built) == hash(made) and repr(built) == repr(made)
    assert dataclasses.astuple(built) == dataclasses.astuple(made)
    assert pickle.loads(pickle.dumps(built)) == made  # noqa: S301 - bytes pickled just above
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(cls)[0].name, "changed")
    assert built != cls(*args[:-1], "other")


def test_defaults_apply_as_in_the_constructor() -> None:
    assert built_directly(Result)(Status.PASS, "r", "m") == Result(Status.PASS, "r", "m")


def test_only_frozen_dataclasses_with_slots_and_plain_fields_are_built_directly() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        value: int

    @dataclass(slots=True)
    class NotFrozen:
        value: int

    @dataclass(frozen=True, slots=True)
    class Factory:
        values: list[int] = field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            assert self.value >= 0

    @dataclass(frozen=True, slots=True)
    class Base:
        value: int

    @dataclass(frozen=True, slots=True)
    class Derived(Base):
        other: int

    for cls in (NoSlots, NotFrozen, Factory, Checked, Derived):
        with pytest.raises(TypeError):
            built_directly(cls)


def test_fields_may_be_given_by_name_and_the_builders_own_names_are_refused() -> None:
    assert built_directly(Result)(Status.PASS, "r", "m", key="k") == Result(Status.PASS, "r", "m", key="k")

    @dataclass(frozen=True, slots=True)
    class Clashing:
        _bd_made: int

    with pytest.raises(TypeError, match="builder"):
        built_directly(Clashing)
