"""`birdgrab chunk`: build the training dataset from the verified audio cache, incrementally.

dataset/<Genus_species>/<source>-<id>_<nnnn>.wav (mono 16-bit PCM, exactly chunk_s long),
metadata.csv (a row per chunk), classes.json (stable ids), dataset.json (how it was made),
ATTRIBUTION.md and CREDITS.csv.

In parts, each replaceable on its own:
- `plan`: a pure function of the manifests: usable files, near-duplicate decisions, splits,
  class ids, which recordings to cut again.
- `runner`: the process pool, the disk guard and the chunk ledger (manifests/chunks.json): a second
  run with the same options rewrites nothing; a changed option or a re-downloaded file rebuilds just
  that recording; a recording that left the selection takes its chunks and rows with it.
- `cutting` and `windows`: decoded mono samples -> the windows to write (the windowing seam).
- `writers` and `credits`: metadata.csv, classes.json, dataset.json, CREDITS.csv, ATTRIBUTION.md.
Class ids live in manifests/class_ids.json, never renumbered.
"""

from birdgrab.dataset.build import run_chunk
from birdgrab.dataset.options import ChunkOptions, parse_split
from birdgrab.dataset.plan import better_copy_rank, file_stem
from birdgrab.dataset.report import ChunkReport

__all__ = ["ChunkOptions", "ChunkReport", "better_copy_rank", "file_stem", "parse_split", "run_chunk"]
