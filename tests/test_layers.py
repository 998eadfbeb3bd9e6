"""The shape of the code, checked from its imports: layers point one way (benchmark ->
condition -> backend -> store -> metrics -> report, then the catalog, the run layer and the
front doors), no import circles, no function over 80 lines."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "selfcorrect"
# Top to bottom: a module may import from its own layer or any layer below, never above.
LAYERS = [
    ["selfcorrect", "selfcorrect.cli"],
    ["selfcorrect.api"],
    ["selfcorrect.runner", "selfcorrect.plan"],
    ["selfcorrect.spec", "selfcorrect.distributed", "selfcorrect.progress"],
    ["selfcorrect.catalog"],
    ["selfcorrect.report", "selfcorrect.predictions"],
    ["selfcorrect.contrasts"],
    ["selfcorrect.verdicts"],
    ["selfcorrect.metrics", "selfcorrect.rules_file"],
    ["selfcorrect.engine", "selfcorrect.archive"],
    ["selfcorrect.store", "selfcorrect.hidden"],
    ["selfcorrect.backends"],
    ["selfcorrect.registry"],
    ["selfcorrect.conditions"],
    ["selfcorrect.benchmarks"],
    ["selfcorrect.manifest", "selfcorrect.data", "selfcorrect.redact", "selfcorrect.faults"],
    ["selfcorrect.errors", "selfcorrect.version", "selfcorrect.tomls"],
]
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in SRC.rglob("*.py")}


def imports(name: str, tree: ast.Module) -> set[str]:
    """Every selfcorrect module `name` imports, at the top or inside functions."""
    package = (
        name
        if (SRC.parent / name.replace(".", "/") / "__init__.py").exists()
        else (name.rsplit(".", 1)[0])
    )
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            subs = {f"{base}.{a.name}" for a in node.names} & set(modules_cache())
            found |= subs or {base}  # `from pkg import module` imports the module
    return {m for m in found if m in modules_cache() and m != name}


_CACHE: dict = {}


def modules_cache() -> dict:
    if not _CACHE:
        _CACHE.update(modules())
    return _CACHE


def layer(name: str) -> int:
    best, where = -1, None
    for k, group in enumerate(LAYERS):
        for prefix in group:
            inside = name.startswith(prefix + ".") and prefix != "selfcorrect"  # the face: itself
            if (name == prefix or inside) and len(prefix) > best:
                best, where = len(prefix), k
    assert where is not None, f"module {name} is in no layer: add it to LAYERS"
    return where


def graph() -> dict[str, set[str]]:
    return {name: imports(name, tree) for name, tree in modules_cache().items()}


def test_every_module_has_a_layer():
    for name in modules_cache():
        layer(name)


def upward(g: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in g.items()
        for b in targets
        if layer(b) < layer(a) and a != "selfcorrect"  # the package's face imports the API lazily
    ]


def test_no_import_runs_up_a_layer():
    g = graph()
    assert "selfcorrect.engine" in g["selfcorrect.runner"]  # the parser sees real imports
    assert "selfcorrect.backends.base" in g["selfcorrect.engine"]
    assert upward(g) == []


def test_an_upward_import_would_be_caught():
    assert upward({"selfcorrect.store": {"selfcorrect.report.study"}}) != []
    assert upward({"selfcorrect.metrics.bbq": {"selfcorrect.verdicts"}}) != []


def test_no_import_circles():
    g = graph()
    g["selfcorrect"] = set()  # the face's lazy import of the API is not a dependency
    index, low, stack, on, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in list(g):
        if v not in index:
            visit(v)
    assert circles == []


def test_no_function_over_80_lines():
    long = []
    for p in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(SRC)}:{node.name} ({n} lines)")
    assert long == []
