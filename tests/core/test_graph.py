"""The dependency graph of the helper services (core/graph.py): start waves, stop order, cycles,
dependents, and the text `marrow-tui graph` prints."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marrow_tui.config.model import Dependency, ServiceConfig
from marrow_tui.core.graph import (
    cycle_in,
    dependency_waves,
    dependents,
    find_cycle,
    render,
    start_order,
    stop_order,
    waves,
)


def svc(name: str, *deps: str | tuple[str, str], enabled: bool = True) -> ServiceConfig:
    """A service for the graph functions (a tuple dependency has a custom env name)."""
    return ServiceConfig(
        name, command=("true",), enabled=enabled,
        depends_on=tuple(Dependency(*d) if isinstance(d, tuple) else Dependency(d)
                         for d in deps))


LINE = [svc("web", "api"), svc("api", "db"), svc("db")]
DIAMOND = [svc("top", "left", "right"), svc("left", "base"), svc("right", "base"), svc("base")]


def test_waves_of_a_line() -> None:
    assert waves(LINE) == [["db"], ["api"], ["web"]]
    assert start_order(LINE) == ["db", "api", "web"]
    assert stop_order(LINE) == ["web", "api", "db"]


def test_waves_of_a_diamond_keep_the_written_order_within_a_wave() -> None:
    assert waves(DIAMOND) == [["base"], ["left", "right"], ["top"]]
    flipped = [DIAMOND[0], DIAMOND[2], DIAMOND[1], DIAMOND[3]]
    assert waves(flipped) == [["base"], ["right", "left"], ["top"]]
    assert stop_order(DIAMOND) == ["top", "right", "left", "base"]


def test_independent_services_are_one_wave() -> None:
    assert waves([svc("b"), svc("a"), svc("c")]) == [["b", "a", "c"]]
    assert waves([]) == []


def test_a_wave_waits_for_the_deepest_dependency() -> None:
    found = [svc("app", "db", "migrate"), svc("migrate", "db"), svc("db"), svc("cache")]
    assert waves(found) == [["db", "cache"], ["migrate"], ["app"]]


def test_dependencies_outside_the_list_are_left_out() -> None:
    assert waves([svc("api", "db", "ghost")]) == [["api"]]
    assert waves([svc("api", "db"), svc("db", enabled=False)][:1]) == [["api"]]


def test_a_cycle_raises_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^dependency cycle: a -> b -> a$"):
        waves([svc("ok"), svc("b", "a", "ok"), svc("a", "b")])


def test_find_cycle() -> None:
    assert find_cycle(LINE) is None
    assert find_cycle(DIAMOND) is None
    assert find_cycle([svc("c", "a"), svc("b", "c"), svc("a", "b")]) == ["a", "b", "c", "a"]
    assert find_cycle([svc("x", "x")]) == ["x", "x"]
    # downstream services are not part of the cycle
    assert find_cycle([svc("web", "b"), svc("b", "c"), svc("c", "b")]) == ["b", "c", "b"]
    # two cycles: the one through the smallest name; the shortest through it, then name order
    assert find_cycle([svc("z", "y"), svc("y", "z"), svc("m", "q", "n"), svc("n", "m"),
                       svc("q", "n")]) == ["m", "n", "m"]
    assert cycle_in({"a": ["c", "b"], "b": ["a"], "c": ["a"]}) == ["a", "b", "a"]


def test_find_cycle_does_not_depend_on_the_written_order() -> None:
    forward = [svc("a", "b"), svc("b", "c"), svc("c", "a")]
    assert find_cycle(forward) == find_cycle(forward[::-1]) == ["a", "b", "c", "a"]


def test_dependents_are_transitive_and_in_start_order() -> None:
    assert dependents(LINE, "db") == ["api", "web"]
    assert dependents(LINE, "web") == []
    assert dependents(DIAMOND, "base") == ["left", "right", "top"]
    assert dependents(DIAMOND, "right") == ["top"]
    assert dependents(DIAMOND, "ghost") == []


def test_waves_are_stable_and_cycles_are_named() -> None:
    def cfg(name: str, *deps: str) -> ServiceConfig:
        return ServiceConfig(name=name, command=("true",),
                             depends_on=tuple(Dependency(d) for d in deps))

    line = [cfg("c", "b"), cfg("b", "a"), cfg("a")]
    assert dependency_waves(line) == ([["a"], ["b"], ["c"]], {})
    diamond = [cfg("d", "b", "c"), cfg("c", "a"), cfg("b", "a"), cfg("a"), cfg("x", "ghost")]
    assert dependency_waves(diamond) == ([["a", "x"], ["c", "b"], ["d"]], {})
    waves, cycles = dependency_waves(
        [cfg("ok"), cfg("b", "a"), cfg("a", "c"), cfg("c", "b"), cfg("down", "a"),
         cfg("me", "me")])
    assert waves == [["ok"]]
    assert cycles == {"a": "a -> c -> b -> a", "b": "a -> c -> b -> a",
                      "c": "a -> c -> b -> a", "me": "me -> me"}


@st.composite
def dags(draw: st.DrawFn, least: int = 1) -> list[ServiceConfig]:
    count = draw(st.integers(least, 8))
    names = [f"s{i}" for i in range(count)]
    found = [svc(name, *draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3))
                 if i else ()) for i, name in enumerate(names)]
    return draw(st.permutations(found))


@settings(max_examples=200, deadline=None)
@given(dags())
def test_waves_respect_every_dependency(found: list[ServiceConfig]) -> None:
    wave_of = {name: n for n, wave in enumerate(waves(found)) for name in wave}
    assert sorted(wave_of) == sorted(s.name for s in found)
    written = [s.name for s in found]
    for service in found:
        assert all(wave_of[d.name] < wave_of[service.name] for d in service.depends_on)
        # a service is in the first wave its dependencies allow
        assert wave_of[service.name] == max(
            (wave_of[d.name] + 1 for d in service.depends_on), default=0)
    for wave in waves(found):
        assert wave == sorted(wave, key=written.index)
    assert find_cycle(found) is None
    assert stop_order(found) == start_order(found)[::-1]


@settings(max_examples=100, deadline=None)
@given(dags())
def test_the_supervisors_waves_are_the_loaders_waves(found: list[ServiceConfig]) -> None:
    assert dependency_waves(found) == (waves(found), {})


@settings(max_examples=200, deadline=None)
@given(dags(least=2), st.data())
def test_a_back_edge_makes_a_cycle_through_the_smallest_name(found: list[ServiceConfig],
                                                              data: st.DataObject) -> None:
    order = start_order(found)
    low, high = sorted(data.draw(st.lists(st.sampled_from(order), min_size=2, max_size=2,
                                          unique=True)), key=order.index)
    # high comes after low: let low depend on high as well, closing a cycle if high needs low
    changed = [svc(s.name, *[d.name for d in s.depends_on], *([high] if s.name == low else []))
               for s in found]
    graph = {s.name: [d.name for d in s.depends_on] for s in changed}
    path = find_cycle(changed)
    assert (path is not None) == (high in dependents(found, low))
    if path is None:
        waves(changed)
        return
    assert path[0] == path[-1] == min(path)
    assert len(set(path[:-1])) == len(path) - 1
    assert all(b in graph[a] for a, b in zip(path, path[1:]))
    with pytest.raises(ValueError):
        waves(changed)


# ---- render ----------------------------------------------------------------------------------


def test_render_a_diamond() -> None:
    assert render(DIAMOND) == textwrap.dedent("""\
        wave 1
          base
        wave 2
          left   <- base
          right  <- base
        wave 3
          top    <- left, right""")


def test_render_shows_custom_variables_disabled_services_and_odd_names() -> None:
    found = [svc("db"), svc("my cache (v2)", enabled=False),
             svc("api-ü", ("db", "DATABASE_URL"), "my cache (v2)")]
    assert render(found) == textwrap.dedent("""\
        wave 1
          db
          my cache (v2)  [disabled]
        wave 2
          api-ü          <- db (DATABASE_URL), my cache (v2)""")


def test_render_nothing_and_a_cycle() -> None:
    assert render([]) == "no services"
    assert render([svc("a", "b"), svc("b", "a")]) == "dependency cycle: a -> b -> a"
