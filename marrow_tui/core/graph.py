"""A dependency graph: start waves, stop order, cycles, and `marrow-tui graph`'s text.

Pure functions over services (`ServiceConfig`, or anything with `.name` and `.depends_on` whose
items have `.name`). Everything is deterministic: within a wave services keep the order they
are written in, and a cycle is given starting from its smallest name.

A dependency on a name that is not among the services given is left out: the loader refuses
unknown names, and a caller may pass a subset (the enabled services, say).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

#: name -> the names it depends on (each once, in the order written)
Edges = dict[str, list[str]]


def edges(services: Sequence[Any]) -> Edges:
    names = {service.name for service in services}
    graph: Edges = {}
    for service in services:
        deps: list[str] = []
        for dependency in service.depends_on:
            if dependency.name in names and dependency.name not in deps:
                deps.append(dependency.name)
        graph.setdefault(service.name, deps)
    return graph


def cycle_in(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle of `graph` as a closed path (`["a", "b", "a"]`: a depends on b, b on a), or None.

    The cycle goes through the smallest name that is on any cycle and starts there; it is the
    shortest such cycle, and among those the first in name order. A self-dependency is
    `["a", "a"]`.
    """
    on_cycle = [name for name in graph if _reaches(graph, name, name)]
    if not on_cycle:
        return None
    start = min(on_cycle)
    parent: dict[str, str] = {}
    queue: deque[str] = deque([start])
    while queue:
        node = queue.popleft()
        for dep in sorted(graph.get(node, ())):
            if dep == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if dep not in parent and dep in graph:
                parent[dep] = node
                queue.append(dep)
    return None  # pragma: no cover - start is on a cycle, so the search gets back to it


def _reaches(graph: Mapping[str, Sequence[str]], start: str, goal: str) -> bool:
    """Whether `goal` can be reached from `start` by one edge or more."""
    seen: set[str] = set()
    stack = list(graph.get(start, ()))
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node in seen or node not in graph:
            continue
        seen.add(node)
        stack.extend(graph[node])
    return False


def cycle_text(path: Sequence[str]) -> str:
    return " -> ".join(path)


def find_cycle(services: Sequence[Any]) -> list[str] | None:
    """A dependency cycle as a closed path (see `cycle_in`), or None."""
    return cycle_in(edges(services))


def waves(services: Sequence[Any]) -> list[list[str]]:
    """The start waves: each service comes after every wave holding one of its dependencies.

    Wave 0 is the services without dependencies. Within a wave, the order written. A cycle
    raises ValueError naming it.
    """
    graph = edges(services)
    result, stuck = _placed(graph)
    if stuck:
        found = cycle_in({name: graph[name] for name in stuck}) or stuck
        raise ValueError(f"dependency cycle: {cycle_text(found)}")
    return result


def dependency_waves(services: Sequence[Any]) -> tuple[list[list[str]], dict[str, str]]:
    """(waves, cycles): the start waves as `waves` gives them, without raising on a cycle.

    `cycles` maps each service on a dependency cycle to the cycle as the loader writes it
    ("a -> b -> a"); services that depend on a cycle without being on one are in no wave and
    no cycle (the supervisor keeps them waiting, blocked, for a service that failed)."""
    graph = edges(services)
    result, stuck = _placed(graph)
    cycles: dict[str, str] = {}
    left = {name: graph[name] for name in stuck}
    while (path := cycle_in(left)) is not None:
        for member in path[:-1]:
            cycles[member] = cycle_text(path)
        left = {name: [dep for dep in deps if dep not in cycles]
                for name, deps in left.items() if name not in cycles}
    return result, cycles


def _placed(graph: Edges) -> tuple[list[list[str]], list[str]]:
    """The waves `graph` starts in, and the names no wave can hold (on a cycle, or after one)."""
    placed: set[str] = set()
    result: list[list[str]] = []
    remaining = list(graph)
    while remaining:
        wave = [name for name in remaining if all(dep in placed for dep in graph[name])]
        if not wave:
            break
        placed.update(wave)
        result.append(wave)
        remaining = [name for name in remaining if name not in placed]
    return result, remaining


def start_order(services: Sequence[Any]) -> list[str]:
    return [name for wave in waves(services) for name in wave]


def stop_order(services: Sequence[Any]) -> list[str]:
    """The start order reversed: every service stops before the ones it depends on."""
    return start_order(services)[::-1]


def dependents(services: Sequence[Any], name: str) -> list[str]:
    """Every service that depends on `name`, directly or not, in start order."""
    graph = edges(services)
    affected: set[str] = set()
    changed = True
    while changed:
        changed = False
        for service, deps in graph.items():
            if service not in affected and service != name and any(
                    dep == name or dep in affected for dep in deps):
                affected.add(service)
                changed = True
    return [service for service in start_order(services) if service in affected]


def render(services: Sequence[Any]) -> str:
    """The graph as text: one block per wave, one line per service with what it waits for.

    ```
    wave 1
      db
      cache  [disabled]
    wave 2
      api    <- db (DATABASE_URL), cache
    ```
    A dependency's custom URL variable is in parentheses. Names are printed as written.
    """
    if not services:
        return "no services"
    try:
        order = waves(services)
    except ValueError as exc:
        return str(exc)
    by_name = {service.name: service for service in reversed(services)}
    graph = edges(services)
    width = max(len(service.name) for service in services)
    lines: list[str] = []
    for number, wave in enumerate(order, 1):
        lines.append(f"wave {number}")
        for name in wave:
            service = by_name[name]
            custom = {d.name: getattr(d, "env", "") for d in service.depends_on}
            line = "  " + name.ljust(width)
            if graph[name]:
                line += "  <- " + ", ".join(
                    f"{dep} ({custom[dep]})" if custom.get(dep) else dep for dep in graph[name])
            if not getattr(service, "enabled", True):
                line += "  [disabled]"
            lines.append(line.rstrip())
    return "\n".join(lines)
