"""Every cotscope module imports on its own, and imports point one way, down DESIGN.md's arrow.

The test suite imports packages in whatever order its modules happen to, which hides import cycles: a
cycle breaks only the first import of a fresh interpreter (``python -c "import cotscope.thinking"`` once
failed this way while every test passed). So each module is imported here in a fresh subprocess.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import cotscope

ROOT = Path(cotscope.__file__).parent


def _walk(path: Path, prefix: str) -> list[str]:
    # pkgutil.walk_packages would import every package to find its subpackages; iterating each folder
    # with iter_modules lists the same names without importing anything in this process.
    names = []
    for m in pkgutil.iter_modules([str(path)], prefix):
        if m.name.rsplit(".", 1)[-1] == "__main__":
            continue
        names.append(m.name)
        if m.ispkg:
            names += _walk(path / m.name.rsplit(".", 1)[-1], m.name + ".")
    return names


MODULES = ["cotscope", *_walk(ROOT, "cotscope.")]

# A module that needs an optional extra (vllm, ray, ...) that this environment lacks is not a failure.
_MISSING_EXTRA = re.compile(r"ModuleNotFoundError: No module named '(?!cotscope)[^']+'")

# Importing the third-party libraries costs about a second per interpreter, 100 modules over 2 cores a
# minute. So one fresh interpreter imports them (and nothing of cotscope), then forks one child per
# cotscope module: each child starts with no cotscope module loaded, which is what "fresh" has to mean
# for an import cycle, and pays only for cotscope's own imports.
_PRELOAD = ["pydantic", "numpy", "yaml", "orjson", "ijson", "duckdb", "rich", "rich.progress", "httpx", "openai",
            "click", "typer", "pyarrow", "jinja2", "torch", "starlette", "uvicorn", "inspect_ai"]

_DRIVER = r"""
import importlib, json, os, sys, traceback
modules, jobs, errdir, preload = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
for m in preload:
    try:
        importlib.import_module(m)
    except Exception:
        pass
assert not [k for k in sys.modules if k == "cotscope" or k.startswith("cotscope.")], "cotscope preloaded"
results, running, todo = {}, {}, list(enumerate(modules))
while todo or running:
    while todo and len(running) < jobs:
        i, m = todo.pop(0)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                importlib.import_module(m)
            except BaseException:
                code = 1
                with open(os.path.join(errdir, str(i)), "w") as f:
                    f.write(traceback.format_exc())
            os._exit(code)
        running[pid] = (i, m)
    pid, status = os.wait()
    i, m = running.pop(pid)
    path = os.path.join(errdir, str(i))
    err = open(path).read() if os.path.exists(path) else ""
    results[m] = [os.waitstatus_to_exitcode(status), err]
print(json.dumps(results))
"""


def _import_all(modules: list[str], tmp: Path, preload: list[str] = _PRELOAD) -> dict[str, tuple[int, str]]:
    """``{module: (exit code, traceback)}`` of importing each module in a fresh interpreter state."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    jobs = max(2, os.cpu_count() or 2)
    if hasattr(os, "fork"):
        p = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(modules), str(jobs), str(tmp),
                            json.dumps(preload)], capture_output=True, text=True, env=env, timeout=600)
        assert p.returncode == 0, p.stderr
        return {m: (rc, err) for m, (rc, err) in json.loads(p.stdout.strip().splitlines()[-1]).items()}

    def one(m: str) -> tuple[str, tuple[int, str]]:  # no fork (Windows): one interpreter per module
        q = subprocess.run([sys.executable, "-c", f"import {m}"], capture_output=True, text=True, env=env,
                           timeout=300)
        return m, (q.returncode, q.stderr)

    with ThreadPoolExecutor(max_workers=jobs) as ex:
        return dict(ex.map(one, modules))


def test_the_walk_finds_the_packages() -> None:
    assert {"cotscope.models", "cotscope.thinking", "cotscope.thinking._strategies", "cotscope.judges"} <= set(MODULES)


def test_every_module_imports_in_a_fresh_interpreter(tmp_path: Path) -> None:
    results = _import_all(MODULES, tmp_path)
    assert set(results) == set(MODULES)
    failures = {m: err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
                for m, (rc, err) in results.items() if rc != 0 and not _MISSING_EXTRA.search(err)}
    assert not failures, "modules that fail to import on their own:\n" + "\n".join(
        f"  {m}: {e}" for m, e in sorted(failures.items()))


def test_the_fresh_import_check_sees_a_cycle(tmp_path: Path) -> None:
    # Two modules that import each other's names: the first import of either fails in a fresh state.
    pkg = tmp_path / "src" / "cyc"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc.b import g\ndef f(): return 1\n")
    (pkg / "b.py").write_text("from cyc.a import f\ndef g(): return 2\n")
    errs = tmp_path / "errs"
    errs.mkdir()
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "src"), old]))
    try:
        results = _import_all(["cyc.a", "cyc"], errs, preload=[])
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    assert results["cyc"][0] == 0
    assert results["cyc.a"][0] != 0 and "circular import" in results["cyc.a"][1]


# -- dependency direction, checked statically -------------------------------------------------------------
# Modules directly under cotscope that every package may use: they import nothing from the packages.
BASE = {"cotscope", "cotscope.errors", "cotscope._registry", "cotscope._options", "cotscope._progress",
        "cotscope._sync"}

# What each lower package may import besides itself and BASE (DESIGN.md: ... -> judges/monitors/models/
# thinking -> store/traces/metrics; never back up). Within the middle layer: models is the bottom,
# thinking builds on models, judges on both, monitors on judges.
ALLOWED: dict[str, set[str]] = {
    "traces": set(),
    "metrics": set(),
    "store": {"traces", "metrics"},
    "models": {"traces"},
    "thinking": {"models", "traces"},
    "judges": {"models", "thinking", "traces", "store", "metrics"},
    "monitors": {"judges", "models", "thinking", "traces", "store", "metrics"},
    # Beside monitors: the sandbox and agent loop, and process verification, build on the middle layer; the
    # stages that store their results live in pipeline.
    "agents": {"judges", "models", "thinking", "traces", "metrics"},
    "verify": {"judges", "models", "thinking", "traces", "metrics"},
    # Training recipes sit beside the benchmarks: they build data through the stages and evaluate with the
    # benchmark runner.
    "train": {"benchmarks", "pipeline", "judges", "monitors", "models", "thinking", "traces", "store", "metrics",
              "report"},
    # The top layer, beside cli: the viewer, the serving guard and the Inspect AI integration read and write the
    # store through the stages and never import cli.
    "view": {"benchmarks", "pipeline", "judges", "monitors", "models", "thinking", "traces", "store", "metrics",
             "report"},
    "guard": {"pipeline", "judges", "monitors", "models", "thinking", "traces", "store", "metrics"},
    "integrations": {"benchmarks", "pipeline", "agents", "judges", "monitors", "models", "thinking", "traces", "store",
                     "metrics", "report"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute cotscope import of a file, lazy and TYPE_CHECKING ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from cotscope import errors` names a module; `from cotscope.x import y` names cotscope.x.
            if node.module == "cotscope":
                found += [(node.lineno, f"cotscope.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(ln, name) for ln, name in found if name == "cotscope" or name.startswith("cotscope.")]


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    out = []
    for f in sorted((ROOT / package).rglob("*.py")):
        for line, name in _imports(f):
            if name in BASE or any(name == b or name.startswith(b + ".") for b in BASE - {"cotscope"}):
                continue
            if _package_of(name) not in allowed:
                out.append(f"{f.relative_to(ROOT.parent)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package: str) -> None:
    assert not _violations(package)


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import cotscope.models\ndef f():\n    from cotscope.thinking import get_strategy\n")
    assert [n for _, n in _imports(f)] == ["cotscope.models", "cotscope.thinking"]


def test_nothing_below_the_cli_imports_it() -> None:
    bad = [f"{f.relative_to(ROOT.parent)}:{line}" for f in ROOT.rglob("*.py") if "cli" not in f.relative_to(ROOT).parts
           for line, name in _imports(f) if _package_of(name) == "cli"]
    assert not bad


def test_the_cli_starts_without_duckdb_arrow_or_model_sdks() -> None:
    """``cotscope --help`` stays fast: loading the CLI pulls in none of the heavy libraries (commands import
    them when they run)."""
    code = ("import sys, cotscope.cli; "
            "print(sorted(m for m in ('duckdb', 'pyarrow', 'pandas', 'torch', 'openai', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
