"""`birdgrab sandbox`: serve the bundled archive. A plugin command (entry point group
`birdgrab.commands`), so that the product itself never imports the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from birdgrab.cli import Common, common_options, run
from birdgrab.errors import UsageError


def add_command(app: typer.Typer) -> None:
    """Add `sandbox` to the birdgrab command line."""

    @app.command(epilog="Example: birdgrab sandbox --port 8765 --env-file sandbox.env")
    @common_options
    def sandbox(
        common: Common,
        host: Annotated[
            str, typer.Option("--host", help="Address to listen on (loopback only).")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one.")] = 0,
        env_file: Annotated[
            Path | None,
            typer.Option("--env-file", help="Write `export BIRDGRAB_...` lines here once listening."),
        ] = None,
        data_dir: Annotated[
            Path | None, typer.Option("--data-dir", help="Where rendered audio is cached.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic archive.")] = 0,
        hour_long: Annotated[
            bool, typer.Option("--hour-long/--no-hour-long", help="Include the hour-long recording.")
        ] = True,
    ) -> None:
        """Serve the bundled synthetic archive on loopback, speaking the xeno-canto, Europeana, iNaturalist
        and MediaWiki APIs."""
        from birdgrab.sandbox import SandboxConfig, serve

        def work() -> int:
            if not (host.startswith("127.") or host in ("localhost", "::1")):
                raise UsageError(f"--host {host}: the sandbox only listens on loopback addresses")
            serve(SandboxConfig(data_dir=data_dir, seed=seed, hour_long=hour_long), host, port, env_file)
            return 0

        run(work, common)
