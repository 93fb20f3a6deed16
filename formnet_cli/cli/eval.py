"""``formnet eval`` and ``formnet compare``: thin commands over :mod:`formnet_cli.evaluation`.

Several levels go to one option in any of three spellings, all equivalent::

    formnet eval BSD68 --task denoise --sigma 15 25 50
    formnet eval BSD68 --task denoise --sigma 15,25,50
    formnet eval BSD68 --task denoise --sigma 15 --sigma 25 --sigma 50

(click has no options with a variable number of values, so :class:`MultiValueCommand`
rewrites the first spelling into the third before parsing: the words after ``--sigma``,
``--quality``, ``--scale`` or ``--baseline`` (or ``--sigma=15``, ``-s15``) that are numbers, or baseline
names, belong to it.)
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from formnet_cli.cli.base import FormnetCommand
from formnet_cli.cli.options import (BackendOption, DeviceOption, EnsembleOption,
                                     ModelsOption, PrecisionName, PrecisionOption, TaskOption,
                                     ThreadsOption, TileOption)
from formnet_cli.config import CONFIG_FILE, LEVEL_NAMES
from formnet_cli.errors import FormnetError, InvalidOptionError

BASELINES = ("bm3d", "dncnn", "none")
DEFAULT_LEVELS = {"denoise": (15, 25, 50), "jpeg": (10, 20, 30, 40), "sr": (2, 3, 4)}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_baseline(text: str) -> bool:
    return text.lower() in BASELINES


_MULTI_VALUE_OPTIONS: dict[str, Callable[[str], bool]] = {
    "--sigma": _is_number, "-s": _is_number, "--quality": _is_number, "-q": _is_number,
    "--scale": _is_number, "--baseline": _is_baseline, "-b": _is_baseline,
}


def expand_multi_values(args: list[str]) -> list[str]:
    """``--sigma 15 25 50`` -> ``--sigma 15 --sigma 25 --sigma 50`` (stops at ``--``).

    >>> expand_multi_values(["BSD68", "--sigma", "15", "25", "--baseline=bm3d", "dncnn", "x"])
    ['BSD68', '--sigma', '15', '--sigma', '25', '--baseline=bm3d', '--baseline', 'dncnn', 'x']
    >>> expand_multi_values(["BSD68", "-s15", "25"])
    ['BSD68', '-s15', '-s', '25']
    """
    out: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            out.extend(args[index:])
            break
        if token.startswith("--"):
            option, equals, _ = token.partition("=")
            attached = bool(equals)
        else:  # a short option, its value maybe attached: ``-s15``
            option, attached = token[:2], len(token) > 2
        accepts = _MULTI_VALUE_OPTIONS.get(option)
        out.append(token)
        index += 1
        if accepts is None:
            continue
        if not attached and index < len(args):
            out.append(args[index])  # the option's own value, whatever it is
            index += 1
        while index < len(args) and accepts(args[index]):
            out += [option, args[index]]
            index += 1
    return out


class MultiValueCommand(FormnetCommand):
    """A command whose level options take several values after one flag."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_values(list(args)))


def parse_levels(values: list[str] | None, task: str) -> list[float]:
    """Numbers from repeated and comma-separated values; the task's defaults when none."""
    if not values:
        return [float(v) for v in DEFAULT_LEVELS[task]]
    levels = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                levels.append(float(part))
            except ValueError:
                raise typer.BadParameter(f"{part!r} is not a number",
                                         param_hint=f"'--{LEVEL_NAMES[task]}'") from None
    return list(dict.fromkeys(levels))


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``compare`` to ``app``."""
    app.command("eval", cls=MultiValueCommand)(eval_command)
    app.command("compare", cls=FormnetCommand)(compare_command)


LevelOption = Optional[list[str]]


def eval_command(
    dataset: Annotated[str, typer.Argument(
        metavar="DATASET", help="Folder of clean images, or a set name under --data-root (e.g. BSD68).")],
    task: TaskOption = None,
    sigma: Annotated[LevelOption, typer.Option(
        "--sigma", "-s", metavar="FLOAT...", help="Noise levels (0-255), e.g. --sigma 15 25 50 "
        "(default 15 25 50).")] = None,
    quality: Annotated[LevelOption, typer.Option(
        "--quality", "-q", metavar="INT...", help="JPEG qualities (default 10 20 30 40).")] = None,
    scale: Annotated[LevelOption, typer.Option(
        "--scale", metavar="INT...", help="SR factors (default 2 3 4).")] = None,
    model: ModelsOption = None,
    baseline: Annotated[Optional[list[str]], typer.Option(
        "--baseline", "-b", metavar="bm3d|dncnn|none...",
        help="Extra methods: bm3d (BM3D/CBM3D, denoise), dncnn (the published DnCNN models, "
             "from --peers-root). The degraded input (bicubic for sr) is always scored.")] = None,
    channels: Annotated[Optional[str], typer.Option(
        "--channels", metavar="auto|gray|color",
        help="Image channels: auto keeps each file's (a folder may mix gray and colour: each "
             "image is scored in its own, by the task's default model for its channels, or by "
             "--model whatever its channels, as restore runs it); gray converts colour (Pillow "
             "L), color repeats gray. Default gray for jpeg (the protocol's L version), auto "
             "otherwise.")] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, metavar="N", help="Only the first N images.")] = None,
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", envvar="FORMNET_DATA", metavar="DIR",
        help="Folder holding the data sets (default: ../shared/data, from the current folder).")] = None,
    peers_root: Annotated[Optional[Path], typer.Option(
        "--peers-root", envvar="FORMNET_PEERS", metavar="DIR",
        help="Folder with the DnCNN .mat files (default: peers/ beside the data root).")] = None,
    save_images: Annotated[Optional[Path], typer.Option(
        "--save-images", metavar="DIR", help="Write restored images and comparison strips here.")] = None,
    json_path: Annotated[Optional[str], typer.Option(
        "--json", metavar="PATH|-", help="Write the full results (per image) as JSON; - for stdout.")] = None,
    markdown_path: Annotated[Optional[str], typer.Option(
        "--markdown", metavar="PATH|-", help="Write the results as a Markdown table; - for stdout.")] = None,
    per_image: Annotated[bool, typer.Option(
        "--per-image", metavar="", help="Also show every image's figures.")] = False,
    record_folder: Annotated[Optional[Path], typer.Option(
        "--record-scores", metavar="MODEL_FOLDER",
        help="Evaluate this checkpoint folder too and write its mean PSNRs into its config.json "
             "(the scores 'formnet models' shows).")] = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = PrecisionName.auto,
    tile: TileOption = "auto",
    ensemble: EnsembleOption = "auto",
    warmup: Annotated[bool, typer.Option("--warmup/--no-warmup", metavar="",
                                         help="Run each method once, untimed, before timing.")] = True,
    threads: ThreadsOption = None,
    backend: BackendOption = "auto",
) -> None:
    """Score formnet and baselines on a data set with the fixed-seed benchmark protocol.

    Times are the restore call's alone (model loaded and warmed up, no file I/O);
    MP/s is megapixels of input per second, as formnet restore counts them (over
    its whole run). A folder may mix gray and colour images (see --channels).

    \b
    formnet eval examples/images/test --sigma 15 25 50 --baseline bm3d
    formnet eval BSD68 --task denoise --sigma 15 25 50 --baseline bm3d
    formnet eval Classic5 --task jpeg --quality 10 20 30 40
    formnet eval Set5 --task sr --scale 2 3 4 --save-images out/
    formnet eval BSD68 --sigma 15 25 50 --record-scores runs/mine/model
    """
    from rich.console import Console

    from formnet_cli.cli.options import task_for
    from formnet_cli.evaluation.baselines import baseline_methods
    from formnet_cli.evaluation.datasets import read_dataset, resolve_dataset
    from formnet_cli.evaluation.evaluate import evaluate
    from formnet_cli.evaluation.methods import load_default_methods
    from formnet_cli.evaluation.protocol import Setting
    from formnet_cli.evaluation.report import environment
    from formnet_cli.evaluation.scores import record_scores
    from formnet_cli.inference.backends import cpu_threads  # torch's and the runtimes'
    from formnet_cli.options import parse_backend
    models = [*(model or []), *([str(record_folder)] if record_folder is not None else [])]
    task = task_for(task, models, scale=bool(scale), quality=bool(quality))
    if task not in DEFAULT_LEVELS:
        raise InvalidOptionError(f"unknown task {task!r}; choose denoise, jpeg or sr")
    raw_levels = {"denoise": sigma, "jpeg": quality, "sr": scale}
    for other, values in raw_levels.items():
        if other != task and values:
            raise InvalidOptionError(f"--{LEVEL_NAMES[other]} does not apply to --task {task}")
    settings = [Setting(task, level) for level in parse_levels(raw_levels[task], task)]
    if json_path == "-" and markdown_path == "-":
        raise InvalidOptionError("--json - and --markdown - would both print to standard output; "
                                 "write one of them to a file")
    for target in (json_path, markdown_path):
        if target and target != "-":  # fail now, not after the whole evaluation
            _check_writable_target(Path(target))
    if record_folder is not None:
        _check_recordable(record_folder, ensemble)
    mode = channels or ("gray" if task == "jpeg" else "auto")
    folder = resolve_dataset(dataset, data_root)
    images = read_dataset(folder, channels=mode, limit=limit)
    image_channels = _channel_counts(images)

    to_stdout = json_path == "-" or markdown_path == "-"
    console = Console(stderr=to_stdout)
    methods, notes = load_default_methods(task, image_channels, models=models, device=device,
                                          precision=precision.value, tile=tile, ensemble=ensemble,
                                          backend=parse_backend(backend, precision.value))
    if notes:
        console.print(f"[yellow]no formnet weights for {task} yet; scoring the baselines only[/]")
    wanted = [b.lower() for b in (baseline or []) if b.lower() != "none"]
    unknown = sorted(set(wanted) - set(BASELINES))
    if unknown:
        raise InvalidOptionError(f"unknown baseline {unknown[0]!r}; choose bm3d, dncnn or none")
    from formnet_cli.evaluation.peers import default_peers_root

    baselines, missing = baseline_methods(
        task, image_channels, [s.level for s in settings], bm3d="bm3d" in wanted,
        dncnn="dncnn" in wanted, peers_root=peers_root or default_peers_root())
    methods += baselines
    for note in missing:
        console.print(f"[yellow]{note}[/]")

    with cpu_threads(threads), console.status("evaluating") as status:
        report = evaluate(
            images, settings, methods, dataset=folder.name, warmup=warmup, save_dir=save_images,
            notes=notes, progress=lambda text: status.update(f"evaluating {text}"),
            env=environment(device=_device_label(device), precision=_precision_label(precision.value, device)))

    console.print(render_table(report, per_image=per_image))
    if json_path:
        _write_text(json_path, report.to_json())
    if markdown_path:
        _write_text(markdown_path, report.to_markdown(per_image=per_image))
    if save_images:
        console.print(f"images and comparison strips in {save_images}")
    if record_folder is not None:
        # A subset is named as one (BSD68[:12]): its mean is not the whole set's.
        subset = f"{folder.name}[:{limit}]" if limit is not None and len(images) == limit else None
        recorded = record_scores(record_folder, report.to_dict(), dataset=subset)
        console.print(f"recorded in {record_folder / CONFIG_FILE}: "
                      + ", ".join(f"{key} {value:.2f}" for key, value in recorded.items()),
                      markup=False, highlight=False, soft_wrap=True)


def _channel_counts(images: list[tuple[str, Any]]) -> list[int]:
    """The channel counts of the images: [1] gray, [3] colour, [1, 3] a folder mixing them."""
    return sorted({pixels.shape[2] for _, pixels in images})


def _device_label(device: str) -> str:
    from formnet_cli.inference.device import resolve_device

    return str(resolve_device(device))


def _precision_label(precision: str, device: str) -> str:
    """The report's precision: ``auto`` runs fp16 on CUDA only for models that support it (not
    the BM3D-formatted one), and the baselines always run in fp32."""
    if precision == "auto":
        precision = "fp16" if _device_label(device).startswith("cuda") else "fp32"
        return precision if precision == "fp32" else "fp16 for formnet models that support it, else fp32"
    return precision if precision == "fp32" else f"{precision} for formnet models, fp32 for the baselines"


def _check_recordable(folder: Path, ensemble: str) -> None:
    """Refuse, before any work, ``--record-scores`` into what is no writable checkpoint folder,
    or with another self-ensemble than the card's (its scores describe ``--ensemble auto``)."""
    from formnet_cli.hub.checkpoint import read_info

    info = read_info(folder)
    if ensemble.strip().lower() != "auto" and ensemble.strip() != str(info.ensemble):
        raise InvalidOptionError(f"--record-scores records what {folder}'s card runs, "
                                 f"{info.ensemble} self-ensemble pass(es): leave --ensemble auto")
    _check_writable_target(folder / CONFIG_FILE)


def _check_writable_target(path: Path) -> None:
    from formnet_cli.io import check_writable_folder

    if path.is_dir():
        raise InvalidOptionError(f"{path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FormnetError(f"{path}: cannot write ({error.strerror or error})") from None
    check_writable_folder(path.parent)


def _write_text(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        return
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise FormnetError(f"{path}: cannot write ({error.strerror or error})") from None


def render_table(report: Any, *, per_image: bool = False) -> Any:
    """A rich table: one row per setting and method (mean PSNR, SSIM, time, throughput)."""
    from rich.table import Table

    from formnet_cli.evaluation.report import describe_environment, format_number, format_psnr, format_ssim

    table = Table(title=f"{report.dataset} - {report.task} ({len(_images(report))} images)",
                  caption=describe_environment(report.environment))
    for column in ("setting", "method"):
        table.add_column(column)
    for column in ("PSNR (dB)", "SSIM", "s / image", "MP/s"):
        table.add_column(column, justify="right")
    table.add_column("note")
    previous = None
    for result in report.results:
        if previous is not None and result.setting != previous:
            table.add_section()
        previous = result.setting
        table.add_row(result.setting.label, result.method, format_psnr(result.mean_psnr),
                      format_ssim(result.mean_ssim), format_number(result.seconds_per_image),
                      format_number(result.megapixels_per_second), result.note)
        if per_image:
            for image in result.images:
                table.add_row("", f"  {image.image}", format_psnr(image.psnr), format_ssim(image.ssim),
                              format_number(image.seconds), "", "")
    return table


def _images(report: Any) -> set[str]:
    return {image.image for result in report.results for image in result.images}


def compare_command(
    images: Annotated[list[Path], typer.Argument(
        metavar="IMAGE", help="Images to show side by side, e.g. noisy.png restored.png.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="PATH", help="Strip to write (PNG).")],
    reference: Annotated[Optional[Path], typer.Option(
        "--reference", "-r", metavar="PATH",
        help="Clean image: shown last; PSNR/SSIM against it go in the labels.")] = None,
    label: Annotated[Optional[list[str]], typer.Option(
        "--label", "-l", metavar="TEXT", help="Panel labels in order (default: file names).")] = None,
    crop: Annotated[Optional[int], typer.Option(
        "--crop", min=4, metavar="INT", help="Side of the zoomed window (default: a quarter of the image).")] = None,
) -> None:
    """Write a labelled side-by-side strip with a zoom on the most detailed region.

    \b
    formnet compare noisy.png restored.png --reference clean.png -o side_by_side.png
    """
    from formnet_cli.evaluation.strips import compare_strip, write_png
    from formnet_cli.io import read_image, to_uint
    from formnet_cli.imaging.metrics import psnr, ssim

    labels = list(label or [])
    paths = list(images) + ([reference] if reference is not None else [])
    # samefile also catches links and case-insensitive file systems (photo.png vs Photo.PNG).
    if output.exists() and any(path.exists() and os.path.samefile(output, path) for path in paths):
        raise InvalidOptionError(f"{output}: the strip would overwrite an input; choose another -o")
    if labels and len(labels) != len(paths):
        raise InvalidOptionError(f"{len(labels)} labels for {len(paths)} images")
    _check_writable_target(output)
    pixels = [to_uint(read_image(path).pixels, 8) for path in paths]
    clean = pixels[-1] if reference is not None else None
    stems = [path.stem for path in paths]
    panels = []
    for index, (path, image) in enumerate(zip(paths, pixels)):
        # Default labels: file names, with their folder where two names are the same.
        text = labels[index] if labels else (
            path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}/{path.stem}")
        if clean is not None and index < len(images):
            if image.shape == clean.shape:
                value = psnr(clean, image)
                text += f" {'inf' if math.isinf(value) else f'{value:.2f}'} dB / {ssim(clean, image):.3f}"
            else:
                typer.echo(f"note: {path} is {image.shape[1]} x {image.shape[0]} x "
                           f"{image.shape[2]}, the reference {clean.shape[1]} x {clean.shape[0]} "
                           f"x {clean.shape[2]}: no PSNR/SSIM for it", err=True)
        panels.append((text, image))
    strip = compare_strip(panels, crop=crop)
    write_png(output, strip)
    typer.echo(f"wrote {output} ({strip.shape[1]} x {strip.shape[0]})")
