"""``formnet serve``: the web page and HTTP API of :mod:`formnet_cli.server` (the ``serve`` extra).

A thin command: it checks the options, warns when the server is reachable from other machines,
and runs the app under uvicorn until Ctrl-C.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Optional

import typer

from formnet_cli.cli.options import DeviceOption
from formnet_cli.errors import FormnetError

DEFAULT_HOST = "127.0.0.1"


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)


def serve(
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDRESS",
        help="Address to listen on; anything but loopback lets other machines use the server "
             "(no authentication).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, metavar="INT",
                                      help="Port to listen on.")] = 8000,
    device: DeviceOption = "auto",
    workers: Annotated[int, typer.Option(
        "--workers", min=1, metavar="N",
        help="Worker processes, each with the models loaded once (each restores one image at "
             "a time).")] = 1,
    queue: Annotated[int, typer.Option(
        "--queue", min=0, metavar="N",
        help="Requests that may wait for a worker; more are refused with 503 (busy).")] = 8,
    max_upload_mib: Annotated[float, typer.Option(
        "--max-upload-mib", min=0.001, metavar="MIB",
        help="Largest request accepted, in MiB (larger: 413).")] = 200.0,
    max_megapixels: Annotated[Optional[float], typer.Option(
        "--max-megapixels", min=0.001, metavar="MP",
        help="Largest image, checked from its header before decoding (larger: 413); default: "
             "$FORMNET_MAX_MEGAPIXELS or 1000.")] = None,
) -> None:
    """Serve a web page and an HTTP API that restore images, on this machine by default.

    \b
    formnet serve                          # then open http://127.0.0.1:8000
    formnet serve --workers 2 --port 8080
    curl -F image=@old.jpg -F task=jpeg http://127.0.0.1:8000/v1/restore -o old-restored.jpg
    """
    try:
        import uvicorn

        from formnet_cli.server.app import ServerSettings, create_app
    except ModuleNotFoundError as error:
        raise FormnetError(f"formnet serve needs the serve extra ({error.name} is not installed): "
                           "pip install 'formnet[serve]'") from None
    from formnet_cli.io import max_pixels

    if max_megapixels is None:
        max_pixels()  # a bad FORMNET_MAX_MEGAPIXELS is one error now
    app = create_app(ServerSettings(device=device, workers=workers, queue=queue,
                                    max_upload_mib=max_upload_mib, max_megapixels=max_megapixels))
    if not is_loopback(host):
        typer.echo(f"warning: listening on {host}: other machines can reach this server and use "
                   "it (no authentication, no encryption); use --host 127.0.0.1 to keep it local",
                   err=True)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"formnet serve: starting {workers} worker(s), then http://{shown}:{port}/ "
               "(Ctrl-C stops it)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address
