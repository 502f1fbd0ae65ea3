"""The layout of ARCHITECTURE.md holds: the import contracts of .importlinter (apps in layers, no circles, the
session host and providers below the features, neonize only in providers), whatsapp/ regrouped by feature, and
function-level imports only where a comment says why."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("config", "core", "audit", "tenants", "billing", "accounts", "whatsapp", "analytics", "backups")
WHATSAPP_TOP_LEVEL = {"__init__", "apps", "models", "urls", "tasks", "live", "conftest"}


def test_import_contracts_are_kept():
    # A process of its own: import-linter builds its graph from the source files, not from what pytest imported.
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_whatsapp_is_grouped_by_feature():
    modules = {path.stem for path in (ROOT / "whatsapp").glob("*.py")}
    assert modules <= WHATSAPP_TOP_LEVEL, f"put these in a feature package: {sorted(modules - WHATSAPP_TOP_LEVEL)}"


def _app_sources():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in sorted(set(listed)):
        path = ROOT / name
        parts = Path(name).parts
        if (path.exists() and parts[0] in APPS and "tests" not in parts and "migrations" not in parts
                and path.name != "conftest.py"):
            yield name, path.read_text()


def unexplained_function_level_imports(name, source):
    """Imports of our own modules inside functions, in blocks of consecutive imports with no comment on or just
    above the block."""
    lines = source.split("\n")
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        block = []
        for statement in [*function.body, None]:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                block.append(statement)
                continue
            ours = [s for s in block if _is_ours(s)]
            if ours:
                first, last = block[0].lineno, block[-1].end_lineno
                explained = any("#" in line for line in lines[first - 2:last])
                if not explained:
                    found += [f"{name}:{s.lineno}: {lines[s.lineno - 1].strip()}" for s in ours]
            block = []
    return found


def _is_ours(statement):
    if isinstance(statement, ast.ImportFrom):
        return bool(statement.level) or (statement.module or "").split(".")[0] in APPS
    return any(alias.name.split(".")[0] in APPS for alias in statement.names)


def test_function_level_imports_say_why():
    found = [line for name, source in _app_sources() for line in unexplained_function_level_imports(name, source)]
    assert not found, "import at module level, or say in a comment why not:\n" + "\n".join(found)


def test_the_import_check_finds_an_unexplained_one():
    source = "def f():\n    from core import rows\n    return rows\n\n\ndef g():\n    # late: why\n    from core import db\n"
    assert unexplained_function_level_imports("x.py", source) == ["x.py:2: from core import rows"]
