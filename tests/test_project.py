"""The project keeps its promises to a new user: the README's test command is what CI runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    """The commands of the README's Quickstart section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_has_a_run_and_a_test_command() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("dcf serve")  # the bundled demo model, on CPU
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _readme_commands()[1] in ci.splitlines()


def test_mypy_sees_every_package_under_its_installed_name(tmp_path: Path) -> None:
    """A type error across packages is reported: server/ (dcf.server) assigning a str constant of
    export/ (dcf.export) to an int. mypy checks a changed copy of dcf.server's ``__init__`` in place
    of the file (``--shadow-file``), so the tree is not touched."""
    source = ROOT / "dcf" / "server" / "__init__.py"  # through the link: the name mypy knows it by
    planted = tmp_path / "planted.py"
    if (ROOT / ".mypy_cache").is_dir():  # warm (CI has just run mypy): only what changed is checked
        shutil.copytree(ROOT / ".mypy_cache", tmp_path / "cache")
    planted.write_text(
        source.read_text()
        + "\nfrom dcf.export.names import CORRELATION_OP\n\nplanted: int = CORRELATION_OP\n"
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
            "--shadow-file", str(source.relative_to(ROOT)), str(planted),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        'Incompatible types in assignment (expression has type "str", variable has type "int")'
        in result.stdout
    )
    assert result.stdout.count(": error:") == 1, result.stdout


def _imported_modules(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_benchmarks_and_the_product_import_nothing_from_tests() -> None:
    """The tests may use the benches' and the product's code, never the other way round."""
    files = [*ROOT.glob("bench/**/*.py"), *ROOT.glob("dcf/**/*.py"), *ROOT.glob("export/**/*.py")]
    files += [*ROOT.glob("server/**/*.py")]
    assert len(files) > 50
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.split(".")[0] == "tests")
        for path in files
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_tests_mirror_the_source_tree() -> None:
    """Every test folder is named after a source package (or holds the tests' support code)."""
    sources = {p.name for p in (ROOT / "dcf").iterdir() if (p / "__init__.py").is_file()}
    sources |= {"trt"}  # trt_plugins/, the TensorRT plugin library
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders - {"support"} <= sources, folders - sources
