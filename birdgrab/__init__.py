"""birdgrab: machine-learning-ready bird-sound datasets from public archives."""

__version__ = "0.1.0"
