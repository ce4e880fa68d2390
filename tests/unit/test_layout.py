"""The shape of the package: imports run one way, and a deferred import says what it defers.

An import loop is read from the source: module-level imports (not those under
`TYPE_CHECKING`, which never run) and imports inside functions, which would close a loop
just as well, only later.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cronlink

PACKAGE = Path(cronlink.__file__).parent
DEFERS = "# Imported here: "
MAX_LINES = 500


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    deferred: bool


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in PACKAGE.rglob("*.py")}


def _targets(node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {_owner(alias.name) for alias in node.names} - {""}
    base = node.module or ""
    named = {f"{base}.{alias.name}" for alias in node.names}
    return {name if name in MODULES else _owner(base) for name in named} - {""}


def _owner(name: str) -> str:
    """The module `name` is in ("" if none of ours)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _edges(module: str, path: Path) -> Iterator[Edge]:
    def walk(body: list[ast.stmt], deferred: bool) -> Iterator[Edge]:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node):
                    if target != module:
                        yield Edge(module, target, node.lineno, deferred)
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            inside = deferred or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from walk([child], inside)
                elif isinstance(child, ast.ExceptHandler | ast.match_case):
                    yield from walk(child.body, inside)

    yield from walk(ast.parse(path.read_text()).body, False)


EDGES = [edge for module, path in MODULES.items() for edge in _edges(module, path)]


def _loops() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in EDGES:
        graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_loops() -> None:
    assert _loops() == []


def test_a_deferred_import_says_what_it_defers() -> None:
    unexplained = []
    for edge in EDGES:
        if not edge.deferred:
            continue
        lines = MODULES[edge.source].read_text().splitlines()
        above = "\n".join(lines[max(0, edge.line - 5) : edge.line - 1])
        if DEFERS not in above:
            unexplained.append(f"{edge.source}:{edge.line} imports {edge.target}")
    assert unexplained == []


def test_no_module_is_over_the_size_where_a_seam_is_due() -> None:
    sizes = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    assert {module: size for module, size in sizes.items() if size > MAX_LINES} == {}


LAYERS = [
    ("records and rules", {"cronlink.records", "cronlink.errors", "cronlink.clock",
                           "cronlink.durations", "cronlink.storable", "cronlink.envtext",
                           "cronlink.scrubbing", "cronlink.loading", "cronlink.cron",
                           "cronlink.policies", "cronlink.egress", "cronlink.http_client",
                           "cronlink.signatures", "cronlink.plurals",
                           "cronlink.progress"}),
    ("store", {"cronlink.store"}),
    ("domain", {"cronlink.jobs", "cronlink.app", "cronlink.context", "cronlink.audit",
                "cronlink.config", "cronlink.config_models", "cronlink.connections",
                "cronlink.automations", "cronlink.observe", "cronlink.ai", "cronlink.reports"}),
    ("engine", {"cronlink.engine"}),
    ("composition", {"cronlink.compose", "cronlink.services", "cronlink.builtin_jobs",
                     "cronlink.runtime", "cronlink.control"}),
    ("interfaces", {"cronlink", "cronlink.web", "cronlink.cli", "cronlink.interop",
                    "cronlink.sandbox", "cronlink.demo", "cronlink.examples",
                    "cronlink.__main__"}),
]  # fmt: skip
"""The layers, lowest first: a module imports from its own layer and those below."""

UPWARD = {
    ("cronlink.http_client", "cronlink.observe.spend"):
        "every request is counted against the attempt that makes it",
    ("cronlink.http_client", "cronlink.observe.tracing"):
        "every request is a span of the attempt that makes it, when traced",
    ("cronlink.runtime", "cronlink.web.server"): "the serve role starts the HTTP service",
    ("cronlink.runtime", "cronlink.web.secrets"): "the serve role reads the cron secrets",
}  # fmt: skip
"""The imports that run upward, each with its reason (at most five)."""


def _layer(module: str) -> int:
    name = module
    while True:
        for rank, (_, members) in enumerate(LAYERS):
            if name in members:
                return rank
        if "." not in name:
            raise AssertionError(f"{module} is in no layer")
        name = name.rpartition(".")[0]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_imports_run_downward_but_for_a_few_named_ones() -> None:
    upward = {(e.source, e.target) for e in EDGES if _layer(e.target) > _layer(e.source)}
    assert upward == set(UPWARD)
    assert len(UPWARD) <= 5


def test_the_store_imports_nothing_above_it() -> None:
    store = _layer("cronlink.store")
    assert [
        e for e in EDGES if e.source.startswith("cronlink.store") and _layer(e.target) > store
    ] == []
