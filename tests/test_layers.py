"""The arrows point one way: plugins -> sdk -> kernel. The spec drives the kernel, and its plugin
conformance kit drives plugins through the SDK exactly as the runtime does.

A plugin must be writable against ``arcoflow.sdk`` alone, and the pure core must never learn
about its shells. This test reads every module's imports and fails on an arrow that points back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "kernel": {"kernel"},
    "sdk": {"sdk", "kernel"},
    "plugins": {"plugins", "sdk"},
    "spec": {"spec", "kernel", "sdk"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("arcoflow.") and "." in n}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports arcoflow.{target}"
        for path in (ROOT / package).rglob("*.py")
        for target in _imports(path) - ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_the_core_does_no_io() -> None:
    """decide and evolve are pure: no clock, no randomness, no files, no store."""
    for name in ("decide.py", "evolve.py", "events.py", "rows.py"):
        source = (ROOT / "kernel" / name).read_text()
        for banned in (
            "import time",
            "import random",
            "import os",
            "open(",
            "datetime.now",
            "time.time",
            "uuid4",
            "import lmdb",
        ):
            assert banned not in source, f"kernel/{name} uses {banned!r}"


# -- public names only ---------------------------------------------------------------------------

#: Mutation testing breaks the kernel's internals on purpose (it patches private functions of
#: `decide`, `evolve`, `runs` and the stores to prove the machines notice): the one module that
#: may reach past the kernel's published names.
REACHES_INSIDE = {"spec/mutations.py"}


def _published(module: str) -> set[str]:
    """The names ``arcoflow.<package>[.<module>]`` lists in its ``__all__`` (read, not imported)."""
    parts = module.split(".")[1:]
    folder = ROOT.joinpath(*parts)
    path = folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")
    if not path.is_file():
        return set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id == "__all__" and node.value is not None:
                return set(ast.literal_eval(node.value))
    return set()


def _foreign_names(path: Path, package: str) -> list[tuple[str, str]]:
    """``(module, name)`` for each name ``path`` imports from another arcoflow package
    (``name`` empty for ``import arcoflow.x.y``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = node.module
            if module.startswith("arcoflow.") and module.split(".")[1] != package:
                found += [(module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                if name.startswith("arcoflow.") and name.split(".")[1] != package:
                    found.append((name, ""))
    return found


def public_name_problems(path: Path, package: str) -> list[str]:
    """What ``path`` imports from another package that the package does not publish.

    A package publishes the names in its ``__all__`` (wherever they are defined: importing one
    from its home module is fine); a module it lists there too (such as
    ``arcoflow.kernel.views``) publishes the names in that module's own ``__all__``. Anything
    else (a private module, a name missing from ``__all__``) is an internal of the other
    package, free to change without notice.
    """
    problems = []
    for module, name in _foreign_names(path, package):
        parts = module.split(".")
        top = ".".join(parts[:2])
        published_module = len(parts) == 3 and parts[2] in _published(top)
        if not name:  # ``import arcoflow.kernel.views``
            ok = module == top or published_module
        else:
            ok = name in _published(top) or (published_module and name in _published(module))
        if not ok:
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            problems.append(f"{where}: {module} {name}".rstrip())
    return problems


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_each_others_public_names_only(package: str) -> None:
    wrong = [
        problem
        for path in sorted((ROOT / package).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in REACHES_INSIDE
        for problem in public_name_problems(path, package)
    ]
    assert not wrong, wrong


def test_the_public_name_check_catches_what_sdk_used_to_import(tmp_path: Path) -> None:
    """Each kind of reach past the published names is reported (a private name, a name no
    ``__all__`` lists, a module the kernel does not publish); published names pass."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from arcoflow.kernel.kernel import _limit\n"
        "from arcoflow.kernel.rows import key\n"
        "from arcoflow.kernel.views import _cell\n"
        "from arcoflow.kernel.store.lmdb import _driver_error\n"
        "import arcoflow.kernel.evolve\n"
        "from arcoflow.kernel import iso, preview, views\n"
        "from arcoflow.kernel.views import JSON\n"
        "from arcoflow.kernel.kernel import Kernel\n"
        "import arcoflow.kernel.views\n"
    )
    problems = public_name_problems(sample, "sdk")
    assert [p.split(": ", 1)[1] for p in problems] == [
        "arcoflow.kernel.kernel _limit",
        "arcoflow.kernel.rows key",
        "arcoflow.kernel.views _cell",
        "arcoflow.kernel.store.lmdb _driver_error",
        "arcoflow.kernel.evolve",
    ]


def test_no_private_argparse_type_in_the_plugin_api() -> None:
    """Hook specifications and the SDK's signatures name ``Subparsers`` (a small protocol),
    never ``argparse._SubParsersAction``, which argparse does not promise to keep."""
    users = sorted(
        str(path.relative_to(ROOT))
        for package in ("sdk", "plugins")
        for path in (ROOT / package).rglob("*.py")
        if "_SubParsersAction" in path.read_text()
    )
    assert not users, users
