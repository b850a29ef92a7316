"""The README's code snippets, by name (`<!-- snippet: NAME -->` before each fenced Python block)."""

from __future__ import annotations

import re
import runpy
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
_SNIPPET = re.compile(r"<!-- snippet: ([\w-]+) -->\n```python\n(.*?)```", re.S)


def python_blocks() -> int:
    return README.read_text(encoding="utf-8").count("```python\n")


def snippets() -> dict[str, str]:
    return {name: code for name, code in _SNIPPET.findall(README.read_text(encoding="utf-8"))}


def run_snippet(name: str) -> dict:
    """Execute one snippet as pasted (in the current folder); returns the names it defined.

    It runs from a real file, as a user's script would: TensorFlow's autograph reads the source of
    the functions it converts."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / f"readme_{name.replace('-', '_')}.py"
        script.write_text(snippets()[name], encoding="utf-8")
        return runpy.run_path(str(script), run_name=script.stem)
