"""Option types shared by the ``formnet`` commands (``cli.py`` and the ``cli_*.py`` modules).

A module of its own, so that every command module can import it without importing ``cli``
(which imports the command modules to register them).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Optional

import typer

class TaskName(str, Enum):
    denoise = "denoise"
    jpeg = "jpeg"
    sr = "sr"


class BackendName(str, Enum):
    auto = "auto"
    torch = "torch"
    onnxruntime = "onnxruntime"
    openvino = "openvino"


class PrecisionName(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


def parse_sigma(value: str) -> float | str:
    """``auto`` or a number (0-255 scale); the range is checked against the model later."""
    if isinstance(value, (int, float)):
        return float(value)
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number or 'auto'") from None


def parse_quality(value: str) -> int | str:
    """``auto``, ``blind`` or an integer JPEG quality."""
    if isinstance(value, int):
        return value
    text = value.strip().lower()
    if text in ("auto", "blind"):
        return text
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an integer, 'auto' or 'blind'") from None


def parse_tile(value: str) -> int | str | None:
    """``auto``, ``none`` (one untiled pass) or a positive number of pixels
    (:func:`formnet_cli.config.parse_tile`, as a usage error)."""
    from formnet_cli.config import parse_tile as parse
    from formnet_cli.errors import InvalidOptionError

    try:
        return parse(value)
    except InvalidOptionError:
        raise typer.BadParameter(f"{value!r} is not 'auto', 'none' or a positive integer") from None


ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="NAME|PATH",
    help="Model name (see `formnet models`) or checkpoint folder; default: the task's model.")]
DeviceOption = Annotated[str, typer.Option(
    "--device", metavar="DEVICE", help="Where to run the model: auto, cpu, cuda, cuda:N or mps.")]
PrecisionOption = Annotated[PrecisionName, typer.Option(
    "--precision", metavar="auto|fp32|fp16|bf16", help="Compute precision; auto is fp16 on CUDA, fp32 elsewhere.")]
BackendOption = Annotated[BackendName, typer.Option(
    "--backend", metavar="auto|torch|onnxruntime|openvino",
    help="What runs the network: torch, or its ONNX graph (exported once, cached) under "
         "onnxruntime or OpenVINO on the CPU; auto: the fastest installed for the device "
         "(env FORMNET_BACKEND).")]
TileOption = Annotated[str, typer.Option(
    "--tile", metavar="auto|INT|none", parser=parse_tile,
    help="Tile side in pixels, the model's context margin included (raised to the smallest "
         "useful one: 560 for the bundled denoisers); auto sizes tiles from free memory; none "
         "runs untiled.")]
TileOverlapOption = Annotated[Optional[int], typer.Option(
    "--tile-overlap", min=0, metavar="INT",
    help="Pixels over which neighbouring tiles are blended (default 16).")]
BatchSizeOption = Annotated[int, typer.Option(
    "--batch-size", min=1, metavar="INT", help="Tiles per forward pass.")]
ThreadsOption = Annotated[Optional[int], typer.Option(
    "--threads", min=1, metavar="N", help="CPU threads to use (default: one per core).")]
EnsembleOption = Annotated[str, typer.Option(
    "--ensemble", metavar="auto|1|2|4|8",
    help="Average this many flipped/rotated passes (slower, slightly better); auto: the "
         "number the model card recommends.")]
TaskOption = Annotated[Optional[TaskName], typer.Option(
    "--task", "-t", metavar="denoise|jpeg|sr", show_default=False,
    help="What to restore: noise, JPEG artifacts or low resolution (default: the --model's task; "
         "else sr with --scale, jpeg with --quality, denoise otherwise).")]
SigmaOption = Annotated[Optional[str], typer.Option(
    "--sigma", "-s", metavar="FLOAT|auto", parser=parse_sigma,
    help="Noise level on the 0-255 scale (denoise), or auto to estimate it, per pixel where the "
         "noise varies with brightness as camera noise does (default: auto).")]
QualityOption = Annotated[Optional[str], typer.Option(
    "--quality", "-q", metavar="INT|auto|blind", parser=parse_quality,
    help="JPEG quality of the input (jpeg): auto reads it from JPEG files, else blind "
         "(default: auto).")]
ScaleOption = Annotated[Optional[int], typer.Option(
    "--scale", metavar="2|3|4", help="Upscaling factor (sr).")]


def task_for(task: str | None, models: Sequence[str], *, scale: bool, quality: bool) -> str:
    """The task a command runs: ``--task``; else the task of the ``--model`` given (all of them
    the same); else the one a level option implies (``--scale``: sr, ``--quality``: jpeg); else
    denoise."""
    if task is not None:
        return task
    if models:
        from formnet_cli.api import model_task
        from formnet_cli.errors import InvalidOptionError

        tasks = {model_task(model) for model in models}
        if len(tasks) > 1:
            raise InvalidOptionError(f"the models given restore different tasks ({', '.join(sorted(tasks))}); "
                                     "give --task")
        return tasks.pop()
    if scale and quality:
        from formnet_cli.errors import InvalidOptionError

        raise InvalidOptionError("--scale (sr) and --quality (jpeg) are both given; give --task")
    return "sr" if scale else "jpeg" if quality else "denoise"
