"""`meterline serve`: settings in, uvicorn out."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from typing import Annotated

import typer

from meterline.costing import Settings

from .common import ConfigOption, settings


def unset_keys(s: Settings) -> list[str]:
    """One line per provider whose `api_key_env` names a variable that is not set."""
    return [
        f"provider {name!r}: ${p.api_key_env} is not set, so its calls go upstream without a key "
        "(and the provider will likely refuse them)"
        for name, p in s.providers.items()
        if p.api_key_env and p.api_key is None
    ]


def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 4000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the proxy."""
    import uvicorn

    from meterline.proxy.app import create_app
    from meterline.proxy.http_server import uvicorn_options

    s = settings(config)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for line in unset_keys(s):
        logging.getLogger("meterline.serve").warning(line)
    # uvicorn re-raises the SIGTERM it drained for once it is done; by then every in-flight call
    # has finished and the ledger is flushed, which is a clean exit, not a death by signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = create_app(s)
    # The modules and the app live as long as the process: keep their ~115k objects out of the
    # collector's full passes, which otherwise walk them all (tens of ms, a stall for every
    # request in flight) every few seconds under load. Here, not in create_app: a test process
    # that builds many apps must still collect them.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="auto",
        timeout_graceful_shutdown=30,
        **uvicorn_options(s.server),  # header size and time, keep-alive, connections (docs/security.md)
    )
