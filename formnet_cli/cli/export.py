"""``formnet export``: a model as an ONNX graph for other tools (a thin layer over
:func:`formnet_cli.inference.onnx_export.export_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from formnet_cli.cli.base import FormnetCommand
from formnet_cli.cli.options import read_with
from formnet_cli.options import read_quality


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export", cls=FormnetCommand)(export)


def export(
    model: Annotated[str, typer.Argument(
        metavar="MODEL", show_default=False,
        help="Model name (see `formnet models`) or checkpoint folder.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE.onnx", show_default=False, help="Where to write the graph.")],
    sigma: Annotated[Optional[float], typer.Option(
        "--sigma", "-s", metavar="FLOAT", min=0,
        help="Bake this noise level (0-255 scale) into a one-input graph (denoise models).")] = None,
    quality: Annotated[Optional[str], typer.Option(
        "--quality", "-q", metavar="INT|blind", parser=read_with(read_quality),
        help="Bake this JPEG quality into a one-input graph (jpeg models).")] = None,
    scale: Annotated[Optional[int], typer.Option(
        "--scale", metavar="2|3|4",
        help="Bake this factor into a one-input graph that enlarges (bicubic) and restores "
             "(sr models).")] = None,
) -> None:
    """Export a model to ONNX, for onnxruntime, OpenCV's dnn module, chaiNNer and the like.

    \b
    Without a level: the two-input graph, restored = graph(image, level), image N x C x H x W
    in [0, 1] with H and W multiples of the model's size multiple, level N x 1 x H x W (the
    normalised level at every pixel: sigma / 255, quality / 100 or -1 for blind, scale / 4).
    With --sigma, --quality or --scale: a one-input graph at that level that pads, restores
    and crops inside the graph, so it runs on an image of any size.

    \b
    formnet export denoise-gray -o denoise-gray.onnx
    formnet export denoise-color -o denoise-color-s25.onnx --sigma 25
    formnet export sr-y -o sr-y-x2.onnx --scale 2      # input: the small gray (Y) image
    """
    from formnet_cli.inference.onnx_export import export_model

    info = export_model(model, output, sigma=sigma, quality=quality, scale=scale)
    channels = f"N x {info.descriptor.channels} x H x W"
    if info.level is None:
        typer.echo(f"wrote {output}: inputs image ({channels}) and level (N x 1 x H x W), "
                   f"H and W multiples of {info.descriptor.size_multiple}")
    else:
        name, value = next((name, value) for name, value in
                           (("sigma", sigma), ("quality", quality), ("scale", scale))
                           if value is not None)
        typer.echo(f"wrote {output}: input image ({channels}, any size), {name} {value} baked in")
