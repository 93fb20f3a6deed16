"""The options of the ``formnet`` commands, each defined once and reused by every command
that takes it (``TaskOption``, ``ModelOption``, ``EnsembleOption``, ...).

A module of its own, so that every command module can import it without importing
:mod:`formnet_cli.cli.app` (which imports the command modules to register them). The values
are read by the parsers of :mod:`formnet_cli.options`, which the API uses too: a value they
cannot read is a usage error naming the flag (``Invalid value for '--sigma' / '-s': 'loud' is
not a number or 'auto'``); one out of range, found when the command builds its
:class:`~formnet_cli.options.RestoreOptions`, is an ``InvalidOptionError`` (exit 2 either way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any, Optional, TypeVar

import typer

from formnet_cli.config import Task
from formnet_cli.options import (AUTO, Backend, UnreadableOptionError, read_quality, read_sigma,
                                 read_tasks, read_tile)

Value = TypeVar("Value")


class PrecisionName(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


def read_with(read: Callable[[Any], Value]) -> Callable[[str], Value]:
    """A Typer ``parser=`` reading a flag's value with ``read``; a value it cannot read is a
    usage error that names the flag."""
    def parser(value: str) -> Value:
        try:
            return read(value)
        except UnreadableOptionError as error:
            raise typer.BadParameter(error.usage) from None

    return parser


def _model_option(help: str) -> Any:
    return typer.Option("--model", "-m", metavar="NAME|PATH", help=help)


TaskOption = Annotated[Optional[Task], typer.Option(
    "--task", "-t", metavar="denoise|jpeg|sr", show_default=False,
    help="What to restore: noise, JPEG artifacts or low resolution (default: the --model's task; "
         "else sr with --scale, jpeg with --quality, denoise otherwise).")]


def _checked_tasks(value: str) -> str:
    """``--task`` as spelled, once :func:`~formnet_cli.options.read_tasks` can read it."""
    read_tasks(value)
    return value


RestoreTaskOption = Annotated[Optional[str], typer.Option(
    "--task", "-t", metavar="auto|denoise|jpeg|sr|TASK,TASK...", show_default=False,
    parser=read_with(_checked_tasks),
    help="What to restore: auto finds JPEG artifacts and noise in each image and removes what "
         "it finds (nothing: the image is written unchanged); denoise, jpeg or sr runs that "
         "task; several joined by commas run in that order (jpeg,denoise,sr). Default: the "
         "--model's task; else the tasks the levels given imply, in the order jpeg, denoise, "
         "sr (--sigma 25 --scale 2: denoise, then x2); else auto.")]
ModelOption = Annotated[Optional[str], _model_option(
    "Model name (see `formnet models`) or checkpoint folder; default: the task's model.")]
ModelsOption = Annotated[Optional[list[str]], _model_option(
    "Model name (see `formnet models`) or checkpoint folder (repeat to compare several); "
    "default: the task's model.")]
DeviceOption = Annotated[str, typer.Option(
    "--device", metavar="DEVICE", help="Where to run the model: auto, cpu, cuda, cuda:N or mps.")]
PrecisionOption = Annotated[PrecisionName, typer.Option(
    "--precision", metavar="auto|fp32|fp16|bf16", help="Compute precision; auto is fp16 on CUDA, fp32 elsewhere.")]
BackendOption = Annotated[Backend, typer.Option(
    "--backend", metavar="auto|torch|onnxruntime|openvino",
    help="What runs the network: torch, or its ONNX graph (exported once, cached) under "
         "onnxruntime or OpenVINO on the CPU; auto: the fastest installed for the device "
         "(env FORMNET_BACKEND).")]
TileOption = Annotated[str, typer.Option(
    "--tile", metavar="auto|INT|none", parser=read_with(read_tile),
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
SigmaOption = Annotated[Optional[str], typer.Option(
    "--sigma", "-s", metavar="FLOAT|auto", parser=read_with(read_sigma),
    help="Noise level on the 0-255 scale (denoise), or auto to estimate it, per pixel where the "
         "noise varies with brightness as camera noise does (default: auto).")]
QualityOption = Annotated[Optional[str], typer.Option(
    "--quality", "-q", metavar="INT|auto|blind", parser=read_with(read_quality),
    help="JPEG quality of the input (jpeg): auto reads it from JPEG files, else blind "
         "(default: auto).")]
StrengthOption = Annotated[float, typer.Option(
    "--strength", metavar="0..1",
    help="How much of the restoration to apply: 0 writes the input (bicubic-upscaled for sr), "
         "1 the restoration; in between, the two blended linearly.")]
FormatterOption = Annotated[Optional[str], typer.Option(
    "--formatter", metavar="none|cnn|bm3d",
    help="Pick the task's model with this formatting stage: none (DiffResNet, the fastest), "
         "bm3d (BM3D first, then the residual network; slower), cnn; see 'formnet models'.")]
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


def restore_task_for(task: str | None, model: str | None) -> str:
    """The task ``formnet restore`` runs: ``--task``; else the ``--model``'s task; else auto
    (the tasks the levels given imply, or per image what it needs:
    :class:`~formnet_cli.options.RestoreOptions`)."""
    if task is not None:
        return task
    if model is not None:
        from formnet_cli.api import model_task

        return model_task(model)
    return AUTO
