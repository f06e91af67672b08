"""The repository's own rules: one version, the licence, declared dependencies, the demo's
output directory, the git hooks, and a README that names what exists."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import backtest
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
README = (REPO / "README.md").read_text()
FIRST_PARTY = {"data", "backtest", "strategies", "reports"}

#: Unguarded imports of optional packages still to be guarded (module path -> top-level modules).
#: Empty it when the module wraps its import in ``try: ... except ImportError`` with a clear error.
PENDING_GUARDS: dict[str, set[str]] = {}


def _dist_name(requirement: str) -> str:
    """``"dask[distributed]>=2024.1"`` -> ``"dask"``, normalised as in PEP 503."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert m, f"pyproject.toml: cannot read the requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


# --------------------------------------------------------------------------- version, licence
def test_the_version_has_one_source_and_everything_agrees(capsys):
    from backtest.app.cli import main

    assert "version" not in PROJECT and "version" in PROJECT["dynamic"], "pyproject.toml reads the version"
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "backtest.__version__"}
    assert importlib.metadata.version("carry") == backtest.__version__
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"carry {backtest.__version__}"


def test_the_licence_file_is_the_declared_one():
    text = (REPO / "LICENSE").read_text()
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the carry authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


# --------------------------------------------------------------------------- dependencies
def _third_party_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(top-level module, line, guarded)`` of every absolute import in ``path`` outside the
    standard library and carry; guarded: inside a ``try`` that catches ImportError."""

    def catches_import_error(handler: ast.ExceptHandler) -> bool:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        return any(isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError") for t in types)

    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try):
            inner = guarded or any(catches_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, inner)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                found.append((top, node.lineno, guarded))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def test_every_third_party_import_is_declared():
    required = {_dist_name(r) for r in PROJECT["dependencies"]}
    optional = {_dist_name(r) for extra in PROJECT["optional-dependencies"].values() for r in extra}
    dists = importlib.metadata.packages_distributions()
    problems, seen = [], set()
    for package in sorted(FIRST_PARTY):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            imports = _third_party_imports(path)
            guarded_here = {m for m, _, g in imports if g}  # later imports run after the guarded one
            for module, line, guarded in imports:
                seen.add(module)
                names = {_dist_name(d) for d in dists.get(module, [module])}
                optional_here = guarded or module in guarded_here or module in PENDING_GUARDS.get(rel, set())
                allowed = required | optional if optional_here else required
                if not names & allowed:
                    what = "an optional extra or the dependencies" if optional_here else "the dependencies"
                    problems.append(f"{rel}:{line}: import {module} ({', '.join(sorted(names))}) is not in {what}")
    assert not problems, "undeclared imports:\n" + "\n".join(problems)
    assert {"numpy", "pandas", "pyarrow", "numba", "plotly"} <= seen  # the scan sees the imports


def test_every_declared_dependency_says_why():
    text = (REPO / "pyproject.toml").read_text()
    for table in ("dependencies", *(f"{name} =" for name in PROJECT["optional-dependencies"])):
        block = text.split(f"\n{table}", 1)[1].split("\n]\n", 1)[0]
        for line in block.splitlines()[1:]:
            if line.strip() and not line.strip().startswith(("#", '"carry[')):
                assert "#" in line, f"pyproject.toml {table}: no comment saying why on {line.strip()!r}"
    table = README.split("\n## Dependencies\n", 1)[1].split("\n## ", 1)[0]
    for requirement in PROJECT["dependencies"]:
        assert f"| `{_dist_name(requirement)}` |" in table, f"README Dependencies: {requirement} missing"
    for extra, requirements in PROJECT["optional-dependencies"].items():
        row = next((r for r in table.splitlines() if r.startswith(f"| extra `{extra}`")), None)
        assert row, f"README Dependencies: extra {extra} missing"
        for requirement in requirements:
            name = _dist_name(requirement)
            assert f"`{name}`" in row or name == "carry", f"README Dependencies: {name} of extra {extra} missing"


# --------------------------------------------------------------------------- the demo
def test_demo_refuses_an_existing_output_directory_unless_overwrite(tmp_path, capsys):
    from backtest.app.cli import main

    data, out = tmp_path / "data", tmp_path / "reports"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["demo", "--data", str(data), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"carry: error: output directory {out} already exists; pass --overwrite to replace it"
    assert (out / "keep.txt").read_text() == "mine" and not data.exists()  # refused before any work

    assert main(["demo", "--data", str(data), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists()  # replaced as a whole
    assert sorted(p.name for p in out.iterdir()) == [
        "components.parquet",
        "config.toml",
        "equity.parquet",
        "events.parquet",
        "report.html",
        "summary.json",
        "trades.parquet",
    ]


def test_generated_roots_are_git_ignored_so_a_fresh_clone_has_no_demo_outputs():
    ignore = (REPO / ".gitignore").read_text().splitlines()
    assert "data/*" in ignore and "reports/*" in ignore
    assert "!data/README.md" in ignore and "!reports/README.md" in ignore


# --------------------------------------------------------------------------- hooks
def test_pre_commit_runs_the_projects_own_checks():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "lint-imports"} <= set(hooks)
    for hook in hooks.values():
        assert hook["language"] == "system", f"{hook['id']}: the project's own tool versions"
    assert "--fix" not in hooks["ruff"]["entry"].replace("--no-fix", "")
    assert "--check" in hooks["ruff-format"]["entry"]
    assert hooks["mypy"]["pass_filenames"] is False and hooks["lint-imports"]["pass_filenames"] is False
    assert "pre-commit install" in README


# --------------------------------------------------------------------------- the README
def _shell_blocks(text: str) -> list[str]:
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        block = block.replace("\\\n", " ")
        lines += [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_every_carry_command_in_the_readme_parses():
    from backtest.app.cli import build_parser

    parser = build_parser()
    commands = []
    for line in _shell_blocks(README):
        for part in line.split("&&"):
            words = shlex.split(part)
            if not words or "..." in words:
                continue  # elided examples ("carry sweep ... --scheduler")
            if Path(words[0]).name == "carry":
                commands.append(words[1:])
    assert len(commands) >= 10
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's usage error
            raise AssertionError(f"README: `carry {' '.join(argv)}` does not parse") from exc


def test_every_module_and_path_the_readme_names_exists():
    modules = set(re.findall(r"python -m ([A-Za-z_][\w.]*)", README))
    assert "backtest.app.bench" in modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"README: python -m {module}: no such module"
    generated = ("data/demo", "data/catalog", "reports/demo")
    for path in set(re.findall(r"`((?:data|backtest|strategies|reports|tests)/[\w/.]*)`", README)):
        if path.startswith(generated) or (path.startswith("reports/") and not path.endswith(".py")):
            continue
        assert (REPO / path).exists(), f"README names {path}, which does not exist"
    for imported in re.findall(r"from (backtest[\w.]*|data[\w.]*|strategies[\w.]*|reports[\w.]*) import", README):
        assert importlib.util.find_spec(imported) is not None, f"README: from {imported} import: no such module"


def test_no_file_refers_to_a_document_outside_the_repository():
    """The rules the code follows are written here (README, docstrings); tests may read the real
    data in ../shared/data, but no file points at a document outside the repository."""
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    suffixes = (".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", "run")
    problems = []
    for rel in tracked.split():
        if not rel.endswith(suffixes) or rel == "tests/test_repo.py" or not (REPO / rel).is_file():
            continue
        for n, line in enumerate((REPO / rel).read_text().splitlines(), 1):
            for outside in ("SPEC", "STYLE.md", "seeds/", "shared/data/README"):
                if outside in line:
                    problems.append(f"{rel}:{n}: {outside!r}")
    assert not problems, "references to documents outside the repository:\n" + "\n".join(problems)


def test_the_readme_run_config_is_valid_for_backtest_and_sweep():
    from backtest.config import BacktestConfig

    (block,) = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    cfg = tomllib.loads(block)
    BacktestConfig.from_dict(cfg["engine"])
    fixed, swept = set(cfg["strategy"]["params"]), set(cfg["sweep"]["grid"])
    assert not fixed & swept, (
        f"README run config: {sorted(fixed & swept)} both fixed and swept (carry sweep refuses it)"
    )
