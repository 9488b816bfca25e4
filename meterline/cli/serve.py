"""`meterline serve`: settings in, uvicorn out; `--workers N` serves one port from N processes."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meterline.costing import ConfigError, Settings

from .common import ConfigOption, fail, open_ledger, settings

if TYPE_CHECKING:
    from fastapi import FastAPI

# How a `--workers` process finds the config its parent was given (workers are new interpreters).
_CONFIG_ENV = "METERLINE_SERVE_CONFIG"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    workers: Annotated[
        int, typer.Option(min=1, help="processes serving the port, each with its own spool folder")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the proxy."""
    import uvicorn

    from meterline.proxy.http_server import uvicorn_options

    s = settings(config)
    if s.server.spool_url:
        _check_broker(s)
    else:
        _check_spool_root(s.server.spool_dir)
    _check_database(s)
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT)
    for line in unset_keys(s):
        logging.getLogger("meterline.serve").warning(line)
    options: dict[str, Any] = dict(
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="auto",
        timeout_graceful_shutdown=30,
        **uvicorn_options(s.server),  # header size and time, keep-alive, connections (docs/security.md)
    )
    if workers > 1:
        # uvicorn's supervisor starts the workers, replaces one that dies (its spool folder is
        # then adopted by the others) and drains them all on SIGTERM. A worker is a new
        # interpreter that imports the whole stack (litellm too, when configured): its health
        # check waits longer than uvicorn's 5 s, or a busy host would see workers killed while
        # they import.
        os.environ[_CONFIG_ENV] = str(config.resolve()) if config else ""
        uvicorn.run(
            "meterline.cli.serve:worker_app", factory=True, workers=workers, timeout_worker_healthcheck=60, **options
        )
        return
    # uvicorn re-raises the SIGTERM it drained for once it is done; by then every in-flight call
    # has finished and the ledger is flushed, which is a clean exit, not a death by signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(_app(s), **options)


def worker_app() -> FastAPI:
    """The app of one `--workers` process (uvicorn calls this in each new process)."""
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    path = os.environ.get(_CONFIG_ENV) or None
    return _app(settings(Path(path) if path else None))


def _app(s: Settings) -> FastAPI:
    from meterline.proxy.app import create_app

    app = create_app(s)
    # The modules and the app live as long as the process: keep their ~115k objects out of the
    # collector's full passes, which otherwise walk them all (tens of ms, a stall for every
    # request in flight) every few seconds under load. Here, not in create_app: a test process
    # that builds many apps must still collect them.
    gc.collect()
    gc.freeze()
    return app


def _check_broker(s: Settings) -> None:
    """One line now if the spool's NATS broker cannot be reached (or has no JetStream), rather
    than a traceback from inside uvicorn's start-up; the stream and its consumer are made here."""
    import asyncio

    from meterline.costing.jetstream import connect

    async def check(url: str) -> None:
        nc, _ = await connect(url, s.server.jetstream, name="meterline-serve-check")
        await nc.close()

    assert s.server.spool_url is not None
    try:
        asyncio.run(check(s.server.spool_url))
    except ConfigError as e:
        fail(str(e))


def _check_database(s: Settings) -> None:
    """One line now if the ledger cannot be opened, rather than a traceback from inside uvicorn's
    start-up. Its schema is brought up to date here too, once, before any worker starts.

    A database that is down at start is refused, not served around: keys are read from it, so
    no call could be authenticated. One that goes down later is served around (the spool holds
    the calls, `/healthz` says `database unavailable`)."""
    open_ledger(s).dispose()


def _check_spool_root(root: str) -> None:
    """One line now, rather than a traceback from inside uvicorn's start-up."""
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"server.spool_dir: cannot create {path}: {e.strerror or e}")
    if not os.access(path, os.W_OK | os.X_OK):
        fail(f"server.spool_dir: {path} is not writable by this user")
