"""The software environments: every rule's conda env (envs/*.yaml) provides what the modules it
runs import, every import of the package is a declared dependency (pyproject.toml), and the envs'
version bounds are those of pyproject.toml.

Imports are followed from the module a rule runs (`python -m analysis....` in its shell command)
through every module of `analysis` it imports at top level; an import inside a function (a lazy
import of an optional feature) is not followed. Import names map to distributions through the
installed packages' metadata (``yaml`` -> PyYAML)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

#: Prints {rule: {"conda": path, "shell": command}} of the workflow, as Snakemake reads it (so
#: `use rule ... with:` inherits like in a run). `_workflow` is Snakemake 9's loaded workflow.
RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    api = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path("Snakefile"))
    rules = {r.name: {"conda": r.conda_env, "shell": r.shellcmd} for r in api._workflow.rules}
print("RULES=" + json.dumps(rules))
"""

MODULE = re.compile(r"python -m (analysis(?:\.\w+)+)")


def module_path(name: str) -> Path | None:
    """The file of a module of `analysis` (None for a name that is not a module, e.g. a class)."""
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def top_level_imports(path: Path) -> set[str]:
    """Fully qualified names imported at module level (also in a top-level try block)."""
    body = ast.parse(path.read_text()).body
    statements = [*body, *(s for node in body if isinstance(node, ast.Try) for s in node.body)]
    names = set()
    for node in statements:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@cache
def third_party_imports(module: str) -> frozenset[str]:
    """Top-level names of the non-standard packages that importing ``module`` imports."""
    seen, todo, found = set(), [module], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            path = module_path(prefix)
            if prefix in seen or path is None:
                continue
            seen.add(prefix)
            for imported in top_level_imports(path):
                top = imported.split(".")[0]
                if top == "analysis":
                    todo.append(imported)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return frozenset(found)


@cache
def distribution(import_name: str) -> str:
    """The (canonical) distribution providing an import name, from the installed metadata."""
    providers = metadata.packages_distributions().get(import_name)
    assert providers, f"no installed distribution provides `import {import_name}`"
    return canonicalize_name(providers[0])


def env_requirements(path: Path) -> dict[str, Requirement]:
    """The pip requirements of a conda env file, by canonical name (conda packages as bare
    names)."""
    requirements = {}
    for entry in yaml.safe_load(path.read_text())["dependencies"]:
        specs = entry["pip"] if isinstance(entry, dict) else [re.split(r"[=<>! ]", entry)[0]]
        for spec in specs:
            requirement = Requirement(spec)
            requirements[canonicalize_name(requirement.name)] = requirement
    return requirements


def project_requirements() -> dict[str, Requirement]:
    """pyproject.toml's dependencies and its `remote` extra (what a job may need at run time:
    the XRootD client for root:// inputs), by canonical name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["remote"]]
    requirements = (Requirement(spec) for spec in specs)
    return {canonicalize_name(requirement.name): requirement for requirement in requirements}


@pytest.fixture(scope="module")
def rules() -> dict[str, dict[str, str | None]]:
    result = subprocess.run(
        [sys.executable, "-c", RULES_SCRIPT], cwd=REPO, capture_output=True, text=True,
        check=True, timeout=300,
    )  # fmt: skip
    line = next(line for line in result.stdout.splitlines() if line.startswith("RULES="))
    return json.loads(line.removeprefix("RULES="))


@pytest.mark.slow
def test_every_rule_env_provides_what_its_modules_import(rules):
    missing, checked = [], 0
    for name, rule in sorted(rules.items()):
        modules = MODULE.findall(rule["shell"] or "")
        if not modules:
            continue
        assert rule["conda"], f"rule {name} runs {modules} but has no conda: env"
        env = (REPO / "workflow" / "rules" / rule["conda"]).resolve()
        provided = set(env_requirements(env))
        for module in modules:
            assert module_path(module), f"rule {name} runs {module}, which does not exist"
            needed = {distribution(top) for top in third_party_imports(module)}
            missing += [f"{name}: {env.name} lacks {dist} ({module})" for dist in needed - provided]
            checked += 1
    # a parser that found no rules would pass vacuously
    assert checked >= 10
    assert not missing, "\n".join(missing)


def test_every_import_of_the_package_is_a_declared_dependency():
    declared = set(project_requirements())
    modules = [
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for path in sorted((REPO / "analysis").rglob("*.py"))
    ]
    imported = {top for module in modules for top in third_party_imports(module)}
    assert {"numpy", "yaml"} <= imported, "the import scan found the package's imports"
    undeclared = sorted({distribution(top) for top in imported} - declared)
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


@pytest.mark.parametrize("env", sorted(REPO.glob("envs/*.yaml")), ids=lambda path: path.name)
def test_env_versions_are_those_of_pyproject(env):
    project = project_requirements()
    for name, requirement in env_requirements(env).items():
        if name in ("python", "pip"):
            continue
        assert name in project, f"{env.name}: {name} is not a dependency in pyproject.toml"
        # e.g. a floor raised in pyproject.toml but not in the env files
        assert str(requirement) == str(project[name]), f"{env.name}: {requirement}"
