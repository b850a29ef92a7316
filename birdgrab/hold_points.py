"""Hold points: a test hook that stops a run at a named moment, so a test can act on it there.

The crash tests kill a run at moments that make no request (a catalog run's listings merged into
the catalogue but not committed; every download journaled but downloads.json not yet rewritten; a
recording's chunks recorded while others are still being cut), so the sandbox cannot hold it there the way it holds a request. With
`BIRDGRAB_HOLD_AT=<point>:<fifo>` in the environment, a run reaching `<point>` writes the point's
name into the named pipe `<fifo>` (the write waits until the test reads), then waits to read the
pipe: it stays where it is until the test writes to it, or kills it. Without the variable a hold
point costs one environment lookup.

    BIRDGRAB_HOLD_AT=downloads-journaled:/tmp/held birdgrab refresh ...   # then: cat /tmp/held
"""

from __future__ import annotations

import os

HOLD_VARIABLE = "BIRDGRAB_HOLD_AT"
# Every point in the code, and the moment each one is.
POINTS = {
    "catalog-merged": "catalog: every listing merged into the catalogue, the transaction not yet committed",
    "downloads-journaled": "fetch: every download done and in downloads.journal, downloads.json not yet rewritten",
    "chunk-recorded": "chunk: one recording's chunks written and journaled, the others still to settle",
}


def hold_point(name: str) -> None:
    """Stop here while `BIRDGRAB_HOLD_AT` names this point (see the module docstring)."""
    wanted = os.environ.get(HOLD_VARIABLE)
    if not wanted:
        return
    point, _, fifo = wanted.partition(":")
    if point != name:
        return
    with open(fifo, "w") as announce:  # waits for the test to open the pipe
        announce.write(f"{name} {os.getpid()}\n")
    with open(fifo) as release:  # waits for the test to write to it (or to kill us)
        release.read()
