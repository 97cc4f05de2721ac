"""The one plug-in registry: a name is taken once, and an unknown name or option says
what would work."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fedctr.errors import FedctrError
from fedctr.plugins import DuplicatePluginError, Registry, UnknownPluginError, typed_config


class ShapeError(FedctrError, ValueError):
    """The domain error a registry of shapes raises."""


def test_a_registered_plugin_is_found_by_name_and_names_are_sorted() -> None:
    shapes: Registry[type] = Registry("shape")

    @shapes.register("square")
    class Square: ...

    shapes.add("circle", int)

    assert shapes.get("square") is Square
    assert shapes.names() == ("circle", "square")
    assert "circle" in shapes and "triangle" not in shapes


def test_a_name_is_registered_once() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.add("square", 4)

    with pytest.raises(DuplicatePluginError, match="shape 'square' is already registered"):
        shapes.add("square", 5)
    assert shapes.get("square") == 4


def test_an_unknown_name_raises_the_kinds_error_listing_the_known_names() -> None:
    shapes: Registry[int] = Registry("shape", error=ShapeError)
    shapes.add("square", 4)
    shapes.add("circle", 0)

    with pytest.raises(
        ShapeError, match=r"unknown shape 'hexagon'; choose one of \('circle', 'square'\)"
    ):
        shapes.get("hexagon")
    with pytest.raises(UnknownPluginError, match="unknown thing 'x'"):
        Registry[int]("thing").get("x")


@dataclass(frozen=True)
class SquareOptions:
    side: int = 1
    filled: bool = False


def test_typed_config_builds_the_dataclass_and_names_an_unknown_option() -> None:
    assert typed_config(SquareOptions, {"side": 3}, owner="shape 'square'", error=ShapeError) == (
        SquareOptions(side=3)
    )
    with pytest.raises(
        ShapeError, match="shape 'square' has no option 'radius'; it takes filled, side"
    ):
        typed_config(SquareOptions, {"radius": 2}, owner="shape 'square'", error=ShapeError)
