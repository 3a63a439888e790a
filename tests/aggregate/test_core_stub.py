"""`_core.pyi` declares exactly what the built native module has: every public name, and every class's public
attributes and methods, both ways (a stub that drifts from the module types the wrong boundary)."""

from __future__ import annotations

import ast
from pathlib import Path

import pulse.aggregate._core as core

STUB = Path(__file__).resolve().parents[2] / "src/pulse/aggregate/_core.pyi"


def declared() -> dict[str, set[str] | None]:
    """Each top-level name of the stub; for a class, its public members."""
    found: dict[str, set[str] | None] = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ClassDef):
            found[node.name] = {b.target.id if isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name)
                                else b.name for b in node.body
                                if isinstance(b, ast.FunctionDef) or (isinstance(b, ast.AnnAssign)
                                                                      and isinstance(b.target, ast.Name))}
        elif isinstance(node, ast.FunctionDef):
            found[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = None
        elif isinstance(node, ast.Assign):
            found.update({t.id: None for t in node.targets if isinstance(t, ast.Name)})
    return found


def public(names: list[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def test_the_stub_names_exactly_what_the_module_has() -> None:
    stub = declared()
    assert set(stub) - public(dir(core)) == set(), "declared in _core.pyi, missing from the module"
    assert public(dir(core)) - set(stub) == set(), "in the module, not declared in _core.pyi"


def test_each_class_has_exactly_the_members_the_stub_gives_it() -> None:
    for name, members in declared().items():
        if members is None:
            continue
        actual = public(dir(getattr(core, name)))
        assert (public(list(members)) - actual, actual - public(list(members))) == (set(), set()), name
