"""`make bench`: speed and memory measured as ratios against baselines run side by side."""
