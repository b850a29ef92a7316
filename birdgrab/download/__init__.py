"""`birdgrab fetch`, the download half, in parts (as pooch and pip split theirs):

- `transfer`: moves one file's bytes (a resumable, verified stream -> sha256 and size) and keeps
  the per-host limit;
- `cache`: where verified bytes live (by content address), partial files, eviction;
- `ledger`: downloads.json, and which key owns bytes shared by two keys;
- `run`: the orchestration (what to fetch, the workers, filing, the report): `run.run_downloads`.

Only the cache and the ledger are imported here: `chunk` and `stats` read them without loading
the HTTP stack.
"""

from birdgrab.download.cache import Cache
from birdgrab.download.ledger import DownloadLedger

__all__ = ["Cache", "DownloadLedger"]
