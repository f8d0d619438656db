"""Start-up cost of every `jingzhun` process: importing the CLI must not import the heavy
libraries that only some commands use (scikit-learn, scipy, statsmodels, splink, pypinyin:
~2.8 s of CPU together), nor the web stack or Spark. Each module imports them inside the
functions that use them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "statsmodels", "splink", "pypinyin", "pyspark", "lightgbm", "matplotlib",
         "mlxtend", "fastapi", "starlette", "uvicorn", "httpx")


def imported_at_start(module: str) -> set[str]:
    """The HEAVY libraries in sys.modules after importing `module` in a fresh interpreter."""
    code = (f"import json, sys, {module}; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_importing_the_cli_imports_no_heavy_library() -> None:
    assert imported_at_start("jingzhun.cli") == set()
