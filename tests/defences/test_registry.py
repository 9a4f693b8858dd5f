"""The defence registry and the ``name:key=value`` specs of the command line."""

from __future__ import annotations

from typing import Any

import pytest

from invprotect import UnknownNameError
from invprotect.defences import (
    JPEG,
    Defence,
    create_defence,
    create_defence_from_spec,
    is_defence,
    list_defences,
    parse_defence_spec,
    register_defence,
)
from invprotect.defences.registry import _DEFENCES


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("jpeg", ("jpeg", {})),
        ("jpeg:quality=50,foo=1", ("jpeg", {"quality": 50, "foo": 1})),
        (
            " resize : scale = 0.75 , interpolation=bicubic ",
            ("resize", {"scale": 0.75, "interpolation": "bicubic"}),
        ),
        (
            "x:a=1e-3,b=-2,c=true,d=False,e=none",
            ("x", {"a": 1e-3, "b": -2, "c": True, "d": False, "e": None}),
        ),
        ("x:a='50',b=\"true\"", ("x", {"a": "50", "b": "true"})),
        ("comdefend:weights=runs/a b/c", ("comdefend", {"weights": "runs/a b/c"})),
        ("comdefend:weights=C:/ckpt", ("comdefend", {"weights": "C:/ckpt"})),
    ],
)
def test_parse_defence_spec(spec: str, expected: tuple[str, dict[str, Any]]) -> None:
    name, kwargs = parse_defence_spec(spec)
    assert (name, kwargs) == expected
    for key, value in expected[1].items():
        assert type(kwargs[key]) is type(value)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty defence spec"),
        ("   ", "empty defence spec"),
        (":quality=5", "bad defence name"),
        ("jpeg:", "no key=value"),
        ("jpeg:quality", "is not key=value"),
        ("jpeg:quality=", "has no value"),
        ("jpeg:quality=1,quality=2", "given twice"),
        ("jpeg:1x=2", "bad parameter name"),
        ("jpeg:quality=5,", "is not key=value"),
    ],
)
def test_malformed_specs_are_refused(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_defence_spec(spec)


def test_create_from_spec() -> None:
    defence = create_defence_from_spec("jpeg:quality=90")
    assert isinstance(defence, JPEG) and defence.quality == 90
    assert create_defence_from_spec("resize:scale=0.5,interpolation=area").interpolation == "area"
    with pytest.raises(ValueError, match=r"takes no parameter .foo.*quality"):
        create_defence_from_spec("jpeg:quality=50,foo=1")
    with pytest.raises(UnknownNameError, match="did you mean 'jpeg'"):
        create_defence_from_spec("jpg:quality=50")
    with pytest.raises(ValueError, match=r"quality must be in 1\.\.100"):
        create_defence_from_spec("jpeg:quality=500")


def test_registry_functions() -> None:
    names = list_defences()
    assert {"jpeg", "resize", "gaussian_noise", "median_filter", "gaussian_blur"} <= set(names)
    assert {"grayscale", "bit_depth", "comdefend", "dipdefend"} <= set(names)
    assert list_defences("jp*") == ["jpeg"]
    assert is_defence("jpeg") and not is_defence("jpg")
    assert create_defence("jpeg", quality=None).quality == 50  # None keeps the default
    with pytest.raises(ValueError, match="already registered"):
        register_defence("jpeg")(JPEG)


def test_register_a_new_defence() -> None:
    class Invert(Defence):
        def purify(self, images, generator):  # type: ignore[no-untyped-def]
            return 1.0 - images

    register_defence("test_invert")(Invert)
    try:
        assert is_defence("test_invert")
        assert isinstance(create_defence_from_spec("test_invert"), Invert)
    finally:
        del _DEFENCES._entries["test_invert"]
