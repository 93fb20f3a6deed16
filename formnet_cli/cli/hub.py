"""``formnet download-weights`` and ``formnet models``: thin commands over hub and registry.

Known errors (:class:`~formnet_cli.errors.FormnetError`) propagate to the app's
``FormnetGroup`` (:mod:`formnet_cli.cli.base`), which prints ``error: <message>`` and exits with 1.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from formnet_cli.cli.base import FormnetCommand

RepoOption = Annotated[Optional[str], typer.Option(
    "--repo", metavar="OWNER/NAME", help="Hub repository to download from "
                   "(default: the manifest's; env FORMNET_HUB_REPO).")]
RevisionOption = Annotated[Optional[str], typer.Option(
    "--revision", metavar="COMMIT", help="Commit to download "
                       "(default: the manifest's pinned one; env FORMNET_HUB_REVISION).")]
DestOption = Annotated[Optional[Path], typer.Option(
    "--dest", metavar="DIR", help="Weights folder holding <name>/ model folders instead of the hub cache "
                   "(env FORMNET_WEIGHTS_DIR).")]


def register(app: typer.Typer) -> None:
    """Add ``download-weights`` and ``models`` to ``app``."""
    app.command("download-weights", cls=FormnetCommand)(download_weights)
    app.command("models", cls=FormnetCommand)(models)


def download_weights(
    names: Annotated[Optional[list[str]], typer.Argument(
        metavar="NAME", help="Models to download (default: every model in the manifest).",
        show_default=False)] = None,
    repo: RepoOption = None,
    revision: RevisionOption = None,
    dest: DestOption = None,
) -> None:
    """Download published models from the hub; the bundled ones need no download.

    The bundled models ('formnet models': source bundled) ship inside formnet
    and work offline. This command is for models published on the Hugging Face
    hub (or a mirror: --repo), at the revision formnet's manifest pins, each
    file sha256-verified. No model is published yet: each says so, and nothing
    is requested.
    """
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TransferSpeedColumn)

    from formnet_cli.hub.download import download_models
    from formnet_cli.hub.manifest import load_manifest

    console = Console(stderr=True)
    manifest = load_manifest()
    if not names and not manifest.models:
        console.print("the weights manifest lists no models yet; nothing to download",
                      highlight=False)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn())
    # huggingface_hub logs each connection retry; the failure, if any, is our one line.
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        with Progress(*columns, console=console, transient=True,
                      disable=not console.is_terminal) as progress:
            results = download_models(names or [], repo=repo, revision=revision, dest=dest,
                                      manifest=manifest, progress=progress)
    finally:
        hub_logger.setLevel(level)
    for result in results:
        if result.status == "bundled":
            line = (f"{result.name}: not published on the hub yet; it is bundled with "
                    f"formnet ({result.path}), nothing to download")
        elif result.status == "present":
            line = f"{result.name}: already downloaded and verified ({result.path})"
        else:
            line = (f"{result.name}: downloaded {len(result.files_downloaded)} file(s), "
                    f"sha256 verified -> {result.path}")
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def models(dest: DestOption = None) -> None:
    """List the models: task, channels, parameters, where each loads from, and card scores."""
    from rich.console import Console
    from rich.table import Table

    from formnet_cli.hub.registry import channels_label, list_models

    console = Console()
    listings = list_models(weights_dir=dest)
    if not listings:
        console.print("no models yet: train one with 'formnet train' and pass --model PATH")
        return
    table = Table(caption="* default for its task and channels")
    for column in ("name", "task", "channels", "formatter", "parameters", "source"):
        table.add_column(column, no_wrap=True, justify="right" if column == "parameters" else "left")
    for listing in listings:
        table.add_row(
            listing.name + (" *" if listing.default else ""),
            listing.task,
            channels_label(listing.channels),
            listing.formatter or "-",
            f"{listing.parameters:,}" if listing.parameters is not None else "-",
            listing.source,
        )
    console.print(table)
    scored = [listing for listing in listings if listing.scores]
    if scored:
        console.print("PSNR (dB) measured on each model card:", highlight=False)
        width = max(len(listing.name) for listing in scored)
        for listing in scored:
            for number, line in enumerate(score_lines(listing.scores)):
                console.print(f"  {listing.name if number == 0 else '':<{width}}  {line}",
                              highlight=False, soft_wrap=True)


def score_lines(scores: dict[str, float]) -> list[str]:
    """Card scores grouped by what precedes their last word, one line per group:
    ``{"Set5 x2": 37.57, "Set5 x3": 33.8}`` gives ``["Set5 x2/x3: 37.57 / 33.80"]``."""
    groups: dict[str, list[tuple[str, float]]] = {}
    for key, value in scores.items():
        head, _, level = key.rpartition(" ")
        groups.setdefault(head, []).append((level, value))
    return [f"{head} {'/'.join(level for level, _ in items)}: "
            f"{' / '.join(f'{value:.2f}' for _, value in items)}".lstrip()
            for head, items in groups.items()]
