"""Every code example of the README that a fresh install can run, runs as written: each
```python block, and each ```bash block marked `<!-- runs as written -->` on the line before
it, in a fresh folder (so the examples must make or fetch their own inputs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- runs as written -->"
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S)


def blocks() -> list[tuple[str, str, int]]:
    """(language, code, line number) of every python block and every marked bash block."""
    text = README.read_text()
    found = []
    for m in _BLOCK.finditer(text):
        lang = m["lang"]
        if lang == "python" or (lang == "bash" and m["before"].strip() == MARK):
            found.append((lang, m["code"], text[:m.start("code")].count("\n") + 1))
    return found


def test_the_readme_has_examples_to_run():
    kinds = [lang for lang, _, _ in blocks()]
    assert "python" in kinds and "bash" in kinds


@pytest.mark.parametrize("lang, code, line", blocks(), ids=lambda v: str(v)[:30])
def test_readme_example_runs_as_written(lang, code, line, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail",
                                                                 "-c", code]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"README.md line {line}:\n{code}\n--- stderr:\n{r.stderr[-3000:]}"
