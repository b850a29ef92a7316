"""The README's code snippets, by name (`<!-- snippet: NAME -->` before each fenced Python block)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
_SNIPPET = re.compile(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)```", re.S)


def python_blocks() -> int:
    return README.read_text(encoding="utf-8").count("```python\n")


def snippets() -> dict[str, str]:
    return {name: code for name, code in _SNIPPET.findall(README.read_text(encoding="utf-8"))}


def run_snippet(name: str) -> dict:
    """Execute one snippet as pasted (in the current folder); returns the names it defined."""
    namespace: dict = {"__name__": f"readme_{name.replace('-', '_')}"}
    exec(compile(snippets()[name], f"README.md:{name}", "exec"), namespace)
    return namespace
