"""The shape of the Rust core (src/) and of the Python package (python/oxloop/): no import cycle
between modules, no oversized file, and a module doc at the top of every file.

A dependency is a `crate::` path (or a `super::` path) in a file's code. Modules are compared
at two levels: top-level modules (`transport` is `transport/mod.rs` with its children), and
files, where a directory module and its own children are one unit (`transport/mod.rs` holds the
state its `stream.rs` and `datagram.rs` extend, as a façade does) but siblings are not.
"""

import ast
import re
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 800
PACKAGE = Path(__file__).resolve().parent.parent / "python" / "oxloop"
MAX_PYTHON_LINES = 500

PATH = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")


def module_of(path):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def code_of(path):
    lines = path.read_text().splitlines()
    return "\n".join(line.split("//", 1)[0] for line in lines)


def dependencies():
    """{module: {module it uses}} over the files of src/, as tuples of path segments."""
    files = {module_of(p): p for p in SRC.rglob("*.rs")}
    deps = defaultdict(set)
    for module, path in files.items():
        is_dir_module = path.name == "mod.rs"
        for root, rest in PATH.findall(code_of(path)):
            segments = [s for s in rest.split("::") if s]
            if root == "super":
                base = module if is_dir_module else module[:-1]
                segments = list(base[:-1]) + segments
            # The longest prefix that is a module file is the dependency.
            target = None
            for n in range(len(segments), 0, -1):
                if tuple(segments[:n]) in files:
                    target = tuple(segments[:n])
                    break
            if target is not None and target != module:
                deps[module].add(target)
    return files, deps


def find_cycle(graph):
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def related(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


def test_no_cycle_between_top_level_modules():
    _, deps = dependencies()
    graph = defaultdict(set)
    for module, targets in deps.items():
        for target in targets:
            if module and target and module[0] != target[0]:
                graph[module[0]].add(target[0])
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_cycle_between_files():
    _, deps = dependencies()
    graph = {m: {t for t in ts if not related(m, t)} for m, ts in deps.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join("::".join(m) for m in cycle)


def test_no_rust_file_is_oversized():
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.rs")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_every_rust_file_opens_with_a_module_doc():
    undocumented = [
        str(p.relative_to(SRC)) for p in SRC.rglob("*.rs") if not p.read_text().startswith("//!")
    ]
    assert undocumented == []


def test_every_unsafe_block_says_why_it_is_sound():
    missing = []
    for path in SRC.rglob("*.rs"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            code = line.split("//", 1)[0]
            if not re.search(r"\bunsafe\s*(\{|impl\b)", code):
                continue
            # The SAFETY comment sits just above the statement (or its attribute lines).
            above = lines[max(0, i - 6) : i + 1]
            if not any("SAFETY:" in a for a in above):
                missing.append(f"{path.relative_to(SRC)}:{i + 1}")
    assert missing == []


def test_the_checker_sees_a_cycle():
    assert find_cycle({("a",): {("b",)}, ("b",): {("a",)}}) == [("a",), ("b",), ("a",)]
    assert find_cycle({("a",): {("b",)}, ("b",): set()}) is None


def test_only_the_io_table_uses_the_poller():
    _, deps = dependencies()
    users = sorted("::".join(m) for m, targets in deps.items() if ("poller",) in targets)
    assert users == ["io_table"]


# -- the Python package ---------------------------------------------------------------------------


def python_module_of(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_dependencies():
    """{module: {oxloop module it imports}}, counting imports inside functions too (a lazy
    import is still a dependency). A package's own `__init__` is left out of its children's
    dependencies: importing `oxloop.diagnostics.x` runs it, but that is the package, not a
    module the child uses."""
    files = {python_module_of(p): p for p in PACKAGE.rglob("*.py")}
    deps = defaultdict(set)
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                target, names = "", [alias.name for alias in node.names]
            else:
                continue
            for name in [*names, target]:
                if name in files and name != module and not module.startswith(name + "."):
                    deps[module].add(name)
                    break
    return files, deps


def test_no_import_cycle_in_the_python_package():
    _, deps = python_dependencies()
    assert deps, "no imports found: the parser is broken"
    cycle = find_cycle(deps)
    assert cycle is None, " -> ".join(cycle)


def test_the_loop_imports_nothing_of_the_diagnostics_but_their_switch_and_session():
    _, deps = python_dependencies()
    used = sorted(m for m in deps["oxloop.loop"] if m.startswith("oxloop.diagnostics"))
    assert used == [
        "oxloop.diagnostics.session",
        "oxloop.diagnostics.settings",
        "oxloop.diagnostics.switch",
    ]
    reports_users = sorted(
        m for m, targets in deps.items() if "oxloop.diagnostics.reports" in targets
    )
    assert all(m.startswith("oxloop.diagnostics.") for m in reports_users), reports_users


def test_no_python_file_is_oversized():
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_PYTHON_LINES} == {}


def test_every_python_module_opens_with_a_docstring():
    undocumented = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert undocumented == []
