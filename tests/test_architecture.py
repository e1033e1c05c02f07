"""The structure stays as the design says: no import cycle between packages (a module may import
its own package's modules freely), every package has its ``__init__.py``, and the contracts import
no other part of the project."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("distill", "teachers", "students")


def modules() -> dict[str, Path]:
    found = {}
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def unit(module: str) -> str:
    """The part a module belongs to: its package (``distill.engine``), or itself for a module
    directly under ``distill`` (``distill.runner``, ``distill.errors``)."""
    parts = module.split(".")
    if parts[0] != "distill":
        return parts[0]
    return ".".join(parts[:2])


def imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] in PACKAGES}


def unit_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        edges = graph.setdefault(unit(module), set())
        for name in imports(path):
            while name not in known and "." in name:  # `from pkg import name` of a non-module
                name = name.rsplit(".", 1)[0]
            if name in known and unit(name) != unit(module) and name != "distill":
                edges.add(unit(name))
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_packages():
    found = cycle(unit_graph())
    assert found is None, " -> ".join(found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_every_package_has_its_init():
    for top in PACKAGES:
        for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
            if folder.name != "__pycache__" and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), f"{folder} has no __init__.py"


def test_the_contracts_import_nothing_of_the_project_but_themselves():
    for module, path in modules().items():
        if unit(module) == "distill.contracts":
            assert {unit(n) for n in imports(path)} <= {"distill.contracts"}, module


def test_the_cli_and_the_results_commands_load_no_engine():
    """``distill --help``, usage errors and the results commands (compare, report, env) import
    neither torch nor lightning: only the commands that build or train pay for them."""
    import subprocess
    import sys

    code = ("import sys, distill.cli, distill.environment, distill.results.report; "
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_validate_plan_and_list_load_no_lightning():
    """``distill validate`` and ``distill plan`` of a file without a ``trainer:`` section, and
    ``distill list``, build what they check without Lightning, torchmetrics or torchvision (5 s of
    imports); a file that sets Lightning's Trainer arguments has them checked by Lightning."""
    import subprocess
    import sys

    heavy = ("lightning", "torchmetrics", "torchvision")
    code = ("import contextlib, io, sys; from distill.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    codes = [main(a) for a in ([{}], ['list'])]\n"
            "print(codes, sorted(m for m in {!r} if m in sys.modules))")
    for command in ("'validate', 'experiments/quickstart.yaml'",
                    "'plan', 'experiments/quickstart.yaml'"):
        out = subprocess.run([sys.executable, "-c", code.format(command, heavy)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[0, 0] []", out
    code = code.format("'validate', 'experiments/quickstart.yaml', '--set', "
                       "'trainer.accelerator=tpuu'", heavy)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == f"[2, 0] {sorted(heavy)}", done.stdout  # Lightning's own imports
    assert "trainer.accelerator" in done.stderr and "refused by Lightning" in done.stderr


def test_an_objective_has_every_hook_of_a_lightning_callback():
    """Objectives are Lightning callbacks without importing Lightning: the hooks listed for them
    are Lightning's, and each does nothing until an objective defines its own."""
    from lightning.pytorch.callbacks import Callback

    from distill.objectives.base import CALLBACK_HOOKS, Objective

    lightnings = {name for name, member in vars(Callback).items()
                  if callable(member) and not name.startswith("_")}
    assert set(CALLBACK_HOOKS) == lightnings - {"state_dict", "load_state_dict"}
    assert all(getattr(Objective(), hook)(None, None) is None for hook in CALLBACK_HOOKS)
