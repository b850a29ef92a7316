"""A local stand-in for xeno-canto, Europeana, iNaturalist and Wikipedia: the stage for end-to-end tests and `make demo`.

`Sandbox` serves a deterministic synthetic archive on a loopback port, speaking the real services'
contracts (docs/archives.md), with fault injection, latency and request counters::

    from birdgrab.sandbox import FaultRule, Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(hour_long=False)) as sandbox:
        env = sandbox.env()                  # BIRDGRAB_* variables pointing at it
        sandbox.set_faults([FaultRule("503", target="xc-api", times=2, retry_after=0.1)])
        ...
        sandbox.counts()["xc-api"]

`serve` runs one in the foreground (`birdgrab sandbox`, `make demo`).
"""

from birdgrab.sandbox.config import RealRecording, SandboxConfig
from birdgrab.sandbox.faults import FaultRule
from birdgrab.sandbox.server import Sandbox, serve
from birdgrab.sandbox.synth import AudioFile

__all__ = ["AudioFile", "FaultRule", "RealRecording", "Sandbox", "SandboxConfig", "serve"]
