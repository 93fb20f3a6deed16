"""Which files a batch restores and where their results go: the plan, checked before any work.

Inputs are files, directories and glob patterns. A directory contributes its images (all
of its tree with ``recursive``), mirrored under the output directory; files go straight into
it, and glob matches mirror the folders below the pattern's first wildcard
(``scans/*/*.tif`` writes ``box1/0001.tif``). With a single input file the output may be a file path.
``-`` (:data:`STREAM`) as the one input reads the image from standard input, as the output
writes it to standard output (in the input's format, or ``ext``).

An input path that does not exist is a usage error before any work (a typo); other inputs
that cannot be restored (not an image, a FIFO, a link to nothing, a glob matching nothing, two
inputs writing one output) are settled, skipped or failed, in the plan and the summary. The
same file met twice (a folder and a glob, a link) runs once; hidden files (named among the
skipped where they are images), hidden folders, links to folders in a recursive walk and
earlier outputs inside the output folder are left out.
:func:`dry_run` shows the plan with every check that :func:`~formnet_cli.batch.run.run_batch`
makes before its first file (:func:`check_before_any_file`).
"""

from __future__ import annotations

import errno
import functools
import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from formnet_cli import api, auto
from formnet_cli.batch.summary import BatchSummary, FileResult
from formnet_cli.errors import InvalidOptionError
from formnet_cli import io as imageio
from formnet_cli.options import RestoreOptions

STREAM = Path("-")
"""An input or output named ``-``: standard input or standard output."""


@dataclass(frozen=True)
class BatchOptions:
    """How to restore every file of a batch (the ``formnet restore`` options)."""

    restore: RestoreOptions = field(default_factory=RestoreOptions)
    """How each image is restored, parsed once for the whole batch."""
    skip_existing: bool = False
    skip_clean: bool = False
    """Where ``--task auto`` finds nothing to restore, write nothing (instead of the input as
    it is)."""
    ext: str | None = None
    """Output format by extension (``png``); ``None`` keeps each input's extension."""
    jpeg_quality: int | None = None
    """Quality of JPEG outputs; ``None`` uses imageio's default."""


@dataclass(frozen=True)
class Job:
    """One image to restore and where its result goes."""

    input: Path
    output: Path


@dataclass
class BatchPlan:
    """The jobs to run, and inputs already settled (non-images, missing files, clashes)."""

    jobs: list[Job] = field(default_factory=list)
    settled: list[FileResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _inputs: dict[Path, Path] = field(default_factory=dict, repr=False)
    """Resolved input -> the path it was planned as."""
    _outputs: dict[Path, Path] = field(default_factory=dict, repr=False)
    """Resolved output -> the input writing it."""
    _skipped: set[Path] = field(default_factory=set, repr=False)


DEFAULT_SUFFIX = "_restored"
"""What the name of an output written beside its input ends with (before its extension)."""


def plan_batch(inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str] | None = None,
               *, recursive: bool = False, ext: str | None = None,
               suffix: str = DEFAULT_SUFFIX) -> BatchPlan:
    """Expand ``inputs`` into jobs writing under (or to) ``output``, or, without ``output``,
    beside each input, its name ending in ``suffix`` (``photo.jpg``: ``photo_restored.jpg``;
    files whose name ends so already, earlier outputs, are left out of folders and globs).

    With a single input file, ``output`` is the output file when it has an extension (and is
    not an existing folder or written with a trailing ``/``); otherwise ``output`` is a folder.
    An input path with nothing there, and an output that would overwrite an input of the batch,
    are usage errors (:class:`InvalidOptionError`); inputs that are not images are settled as skipped
    (failed when named alone), links to nothing and globs that match nothing as failed; the same
    file given twice runs once; two inputs that would write the same output are settled as
    failed.
    """
    if not inputs:
        raise InvalidOptionError("no inputs given")
    _refuse_missing_inputs(inputs)
    extension = normalise_ext(ext)
    if output is None:
        return _plan_beside(inputs, _Naming(extension, _checked_suffix(suffix)), recursive)
    output_text = os.fspath(output)
    output = Path(output_text)
    plan = BatchPlan()
    names_file = (not output.is_dir() and not output_text.endswith(("/", os.sep))
                  and output.suffix != "")
    if output == STREAM or STREAM in map(Path, inputs):
        return _plan_stream(plan, [Path(item) for item in inputs], output, names_file, extension)
    single = Path(inputs[0])
    if (len(inputs) == 1 and names_file and not single.is_file() and not single.is_dir()
            and not glob.has_magic(os.fspath(inputs[0]))):
        plan.settled.append(FileResult(single, None, "failed", _not_a_file(single)))
        return plan
    if len(inputs) == 1 and single.is_file() and names_file:
        _check_output_file(output, extension)
        _plan_file(plan, single, output, named=True)
        return plan
    if names_file and imageio.is_image_path(output):
        raise InvalidOptionError(f"{output}: with several inputs or a folder, -o must be a "
                                 "folder")
    if output.exists() and not output.is_dir():
        raise InvalidOptionError(f"{output}: exists and is not a folder; with several inputs "
                                 "or a folder, -o must be a folder")

    _plan_inputs(plan, inputs, output, _Naming(extension), recursive)
    return plan


def _plan_beside(inputs: Sequence[str | os.PathLike[str]], naming: _Naming,
                 recursive: bool) -> BatchPlan:
    """:func:`plan_batch` without an output: each result beside its input."""
    if STREAM in map(Path, inputs):
        raise InvalidOptionError("an image on standard input needs -o: an output file, or - "
                                 "for standard output")
    plan = BatchPlan()
    _plan_inputs(plan, inputs, None, naming, recursive)
    return plan


def _plan_inputs(plan: BatchPlan, inputs: Sequence[str | os.PathLike[str]], output: Path | None,
                 naming: _Naming, recursive: bool) -> None:
    """Plan the files, folders and globs of ``inputs`` under the folder ``output``, or beside
    themselves (``None``), named by ``naming``; then refuse outputs onto inputs."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            _plan_directory(plan, path, output or path, recursive, naming)
        elif path.is_file():
            # One file named alone was asked for; among several (a shell's scans/*), a
            # Thumbs.db is skipped as in a folder.
            _plan_file(plan, path, (output or path.parent) / naming.name(Path(path.name)),
                       named=len(inputs) == 1)
        elif glob.has_magic(os.fspath(item)):
            base = _glob_base(path)
            try:
                matches = sorted(_glob_matches(path, base, recursive), key=_real_first_below(base))
            except OSError as error:  # e.g. a path past the system's limit deep in the tree
                plan.settled.append(FileResult(path, None, "failed",
                                               f"cannot search ({error.strerror or error})"))
                continue
            if "**" in Path(item).parts and not recursive:
                plan.notes.append(f"{item}: ** matches one folder level without --recursive")
            if not matches:
                plan.settled.append(FileResult(path, None, "failed", "no files match"))
            root = output or base
            is_earlier_output = naming.earlier_outputs(base, root)
            for match in map(Path, matches):
                relative = match.relative_to(base)
                if is_earlier_output(match):
                    continue  # 'scans/*' with -o scans/restored
                if match.is_dir():
                    _plan_directory(plan, match, root / relative, recursive, naming)
                elif match.is_file():
                    _plan_file(plan, match, root / naming.name(relative))
                else:
                    _skip(plan, match, _not_a_file(match))
        else:
            plan.settled.append(FileResult(path, None, "failed", _not_a_file(path)))
    if not plan.jobs and not plan.settled:
        raise InvalidOptionError(f"no files to restore in {', '.join(map(os.fspath, inputs))}"
                                 + "".join(f"; {note}" for note in plan.notes))
    _refuse_outputs_onto_inputs(plan)


@dataclass(frozen=True)
class _Naming:
    """How an input's path below the folder it was found in becomes its output's: ``ext``
    replaces its extension; with a ``suffix`` (outputs beside their inputs), its name ends in
    it, and files whose name ends in it already (earlier outputs) are not inputs."""

    extension: str | None
    suffix: str | None = None

    def name(self, relative: Path) -> Path:
        named = _with_ext(relative, self.extension)
        return named if self.suffix is None else named.with_name(named.stem + self.suffix + named.suffix)

    def earlier_outputs(self, searched: Path, output: Path) -> Callable[[Path], bool]:
        if self.suffix is None:
            return _earlier_outputs(searched, output)
        suffix = self.suffix
        return lambda path: path.is_file() and path.stem.endswith(suffix)


def _checked_suffix(suffix: str) -> str:
    if not suffix or suffix.strip(".") == "" or any(sep in suffix for sep in ("/", os.sep)):
        raise InvalidOptionError(f"--suffix must be a part of a file name (such as _restored), "
                                 f"got {suffix!r}")
    return suffix


def _refuse_missing_inputs(inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Raise :class:`InvalidOptionError` naming the input paths with nothing there (no file,
    folder or link): a mistyped name is an error of the command, found before any work. A glob
    is a pattern, not a path: one that matches nothing is a failed input of the batch."""
    missing = [os.fspath(item) for item in inputs
               if Path(item) != STREAM and not glob.has_magic(os.fspath(item))
               and not os.path.lexists(item)]
    if missing:
        raise InvalidOptionError(f"{', '.join(missing)}: no such file or directory")


def _refuse_outputs_onto_inputs(plan: BatchPlan) -> None:
    """Raise :class:`InvalidOptionError` for a job whose output is another input of the batch
    (``a.jpg a.png -o . --ext png``: a.jpg's result would replace a.png): a usage error, found
    before any work."""
    inputs = {result.input.resolve(): result.input for result in plan.settled
              if result.input.is_file()}
    inputs.update(plan._inputs)
    folded = {_case_folded(key): source for key, source in inputs.items()}
    for job in plan.jobs:
        output = job.output.resolve()
        other = (folded.get(_case_folded(output)) if _ignores_case(output.parent)
                 else inputs.get(output))
        if other is not None:
            raise InvalidOptionError(f"{job.input}: its output {job.output} would overwrite the "
                                     f"input {other}; choose another -o or --ext")


def _check_output_file(output: Path, extension: str | None) -> None:
    """Raise for an output file formnet cannot write, or whose format ``--ext`` contradicts."""
    if not imageio.is_image_path(output):
        raise InvalidOptionError(f"{output}: unsupported output format {output.suffix!r} "
                                 "(end the path with / to name a folder)")
    if extension is not None and (imageio.output_format(output)
                                  != imageio.output_format(output.with_suffix(extension))):
        raise InvalidOptionError(f"--ext applies to folder outputs; {output} is written as "
                                 f"{output.suffix} (name it {output.with_suffix(extension).name})")


def _plan_stream(plan: BatchPlan, inputs: list[Path], output: Path, names_file: bool,
                 extension: str | None) -> BatchPlan:
    """One image through standard input or output: ``-`` is the only input, or ``-o -``."""
    if len(inputs) != 1:
        raise InvalidOptionError("'-' (standard input or output) takes one image: give one "
                                 "input, not several")
    source = inputs[0]
    if source == STREAM:
        if output != STREAM and not names_file:
            raise InvalidOptionError("an image on standard input needs an output file (-o "
                                     "out.png) or standard output (-o -), not a folder")
        if output != STREAM:
            _check_output_file(output, extension)
        plan.jobs.append(Job(STREAM, output))
    elif source.is_dir() or glob.has_magic(os.fspath(source)):
        raise InvalidOptionError(f"{source}: -o - writes one image to standard output; give "
                                 "one file")
    elif not source.exists():  # a link to nothing
        plan.settled.append(FileResult(source, None, "failed", _not_a_file(source)))
    else:
        _plan_file(plan, source, STREAM, named=True)
    return plan


def _real_first_below(base: Path) -> Callable[[str | Path], tuple[bool, Path]]:
    """Sort key for paths under ``base``: those with no link below ``base`` first, so that a
    file reached both directly and through a link is planned (and mirrored) under its own name.
    One ``lstat`` per file and per folder (cached)."""
    @functools.lru_cache(maxsize=None)
    def folder_is_linked(folder: Path) -> bool:
        if folder == base or folder == folder.parent:
            return False
        return folder.is_symlink() or folder_is_linked(folder.parent)

    def key(path: str | Path) -> tuple[bool, Path]:
        path = Path(path)
        return path.is_symlink() or folder_is_linked(path.parent), path

    return key


def _glob_matches(pattern: Path, base: Path, recursive: bool) -> list[str]:
    """What a glob pattern matches, hidden names only where the pattern names them (a hidden
    folder only by its own name). With ``recursive``, ``**`` spans folders without following
    links to folders (``glob.glob`` follows them, and a link loop makes it run for ever)."""
    if not (recursive and "**" in pattern.parts):
        return glob.glob(os.fspath(pattern), recursive=recursive)
    rest = pattern.relative_to(base)
    named = {part for part in rest.parts if part.startswith(".") and not glob.has_magic(part)}
    hidden_files_wanted = rest.parts[-1].startswith(".")

    def shown(match: Path) -> bool:
        *folders, name = match.relative_to(base).parts
        return (all(not part.startswith(".") or part in named for part in folders)
                and (not name.startswith(".") or hidden_files_wanted or name in named))

    return [os.fspath(match) for match in base.glob(os.fspath(rest)) if shown(match)]


def _glob_base(pattern: Path) -> Path:
    """The folder a glob pattern starts from: its parts before the first wildcard."""
    parts = pattern.parts
    literal = next(index for index, part in enumerate(parts) if glob.has_magic(part))
    return Path(*parts[:literal]) if literal else Path()


def _plan_directory(plan: BatchPlan, folder: Path, output: Path, recursive: bool,
                    naming: _Naming) -> None:
    if naming.suffix is None and folder.resolve() == output.resolve():
        raise InvalidOptionError(f"{folder}: the output folder is the input folder (the results "
                                 f"would replace the originals); choose another -o, e.g. "
                                 f"{folder / 'restored'}")
    skipped_folders = 0
    is_earlier_output = naming.earlier_outputs(folder, output)
    try:
        candidates = sorted(folder.rglob("*") if recursive else folder.iterdir(),
                            key=_real_first_below(folder))
    except OSError as error:  # e.g. a path past the system's limit deep in the tree
        plan.settled.append(FileResult(folder, None, "failed",
                                       f"cannot list this folder ({error.strerror or error})"))
        return
    for path in candidates:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            if (not any(part.startswith(".") for part in relative.parts[:-1])
                    and imageio.is_image_path(path)):  # a hidden image, named in the summary
                _skip(plan, path, "a hidden file (its name starts with '.')")
            continue  # hidden folders, and temporary files of interrupted writes
        if is_earlier_output(path):
            continue
        if path.is_dir():
            skipped_folders += not recursive
            if recursive and path.is_symlink():  # rglob does not follow links
                _skip(plan, path, "a link to a folder (not followed)")
            continue
        if path.is_file():
            _plan_file(plan, path, output / naming.name(relative))
        else:
            _skip(plan, path, _not_a_file(path))
    if skipped_folders:
        plan.notes.append(f"{folder}: {skipped_folders} subfolder(s) not entered "
                          "(use --recursive)")


def _plan_file(plan: BatchPlan, source: Path, target: Path, *, named: bool = False) -> None:
    """Plan ``source``, unless its type is not one formnet reads: a file named alone on the
    command line then fails (the user asked for it); one of several, or one found in a folder
    or by a glob, is skipped with a note."""
    if not imageio.is_image_path(source):
        reason = _unsupported_type(source)
        if named:
            plan.settled.append(FileResult(source, None, "failed", reason))
        else:
            _skip(plan, source, reason)
        return
    _add_job(plan, source, target)


def _add_job(plan: BatchPlan, source: Path, target: Path) -> None:
    if target == STREAM:
        plan.jobs.append(Job(source, target))
        return
    source_key, target_key = source.resolve(), target.resolve()
    if source_key in plan._inputs:  # the same file given twice (a folder and a glob, a link)
        if plan._inputs[source_key] != source:
            _skip(plan, source, f"the same file as {plan._inputs[source_key]}")
        return
    plan._inputs[source_key] = source  # met again (a folder and a glob), it is settled once
    if _ignores_case(target_key.parent):  # A.png and a.png are one file there
        source_key, target_key = _case_folded(source_key), _case_folded(target_key)
    if source_key == target_key:
        raise InvalidOptionError(f"{source}: the output would overwrite the input; choose "
                                 "another -o")
    if target_key in plan._outputs:
        plan.settled.append(FileResult(
            source, target, "failed",
            f"output clashes with the output of {plan._outputs[target_key]}"))
        return
    plan._outputs[target_key] = source
    plan.jobs.append(Job(source, target))


def _case_folded(path: Path) -> Path:
    """``path`` with its name in lower case: the key under which a file system that ignores case
    (exFAT, NTFS, macOS's default) files it, so that ``A.png`` and ``a.png`` written from a
    case-sensitive source clash instead of one silently replacing the other."""
    return path.with_name(path.name.lower())


def _ignores_case(folder: Path) -> bool:
    """Whether the file system of ``folder`` (or of its nearest existing parent) ignores case;
    False where it cannot tell (an over-long path, no name with letters to look up)."""
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    except OSError:
        return False
    return _folder_ignores_case(folder)


@functools.lru_cache(maxsize=4096)
def _folder_ignores_case(folder: Path) -> bool:
    """Looked up, not written (a dry run writes nothing): a name in ``folder`` with letters,
    asked for in the other case, is the same file where case is ignored."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                other = entry.name.swapcase()
                if other != entry.name:
                    try:
                        return os.path.samefile(entry.path, os.path.join(folder, other))
                    except OSError:  # no such file: the case tells files apart
                        return False
    except OSError:
        pass
    return False


def _skip(plan: BatchPlan, path: Path, reason: str) -> None:
    """Settle ``path`` as skipped (counted, and listed by ``--json``), with a note saying why;
    once, however often it is met (a folder and a glob over it)."""
    if path in plan._skipped:
        return
    plan._skipped.add(path)
    plan.settled.append(FileResult(path, None, "skipped", reason))
    plan.notes.append(f"skipped {path}: {reason}")


def _not_a_file(path: Path) -> str:
    """Why ``path``, which is neither a regular file nor a folder, is not read."""
    if not path.exists():
        if not path.is_symlink():
            return "no such file or directory"
        try:
            os.stat(path)
        except OSError as error:
            if error.errno == errno.ELOOP:
                return "a link loop (its links lead back to themselves)"
        return "a link to nothing"
    kind = "a FIFO" if path.is_fifo() else "a device" if path.is_block_device() or path.is_char_device() \
        else "a socket" if path.is_socket() else "not a regular file"
    return f"{kind}, not an image file"


def _unsupported_type(path: Path) -> str:
    kind = f"{path.suffix!r} files" if path.suffix else "files without an extension"
    return f"{kind} are not read (formats: {', '.join(sorted(imageio.IMAGE_EXTENSIONS))})"


def normalise_ext(ext: str | None) -> str | None:
    if ext is None:
        return None
    extension = "." + ext.strip().lstrip(".").lower()
    if not imageio.is_image_path(Path("image" + extension)):
        raise InvalidOptionError(f"cannot write images with extension {extension!r}")
    return extension


def _with_ext(path: Path, extension: str | None) -> Path:
    return path if extension is None else path.with_suffix(extension)


def _earlier_outputs(searched: Path, output: Path) -> Callable[[Path], bool]:
    """Whether a path found under ``searched`` lies in the output folder ``output`` and that
    folder is inside ``searched`` (``scans/`` with ``-o scans/restored``): an earlier run's
    result, not an input. An output folder at or above ``searched`` (``-o .``) hides nothing."""
    output = output.resolve()
    if searched.resolve() not in output.parents:
        return lambda path: False
    return lambda path: _is_within(path.resolve(), output)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# -- checks before any work ---------------------------------------------------------------------
def dry_run(plan: BatchPlan, options: BatchOptions) -> BatchSummary:
    """What :func:`~formnet_cli.batch.run.run_batch` would do with ``plan``, reading and writing
    nothing: the options, the model and the output folders are checked as it checks them (not
    the images: a file that cannot be read still shows as ``planned``), and each job is
    ``planned`` (or ``skipped`` where its output exists and ``skip_existing`` is set)."""
    check_before_any_file(plan, options)
    results = list(plan.settled)
    for job in plan.jobs:
        results.append(FileResult(job.input, job.output, "skipped", "output exists")
                       if left_as_is(job, options) else FileResult(job.input, job.output, "planned"))
    return BatchSummary(results=results, dry_run=True)


def left_as_is(job: Job, options: BatchOptions) -> bool:
    """Whether ``--skip-existing`` leaves ``job`` alone: its output is there already."""
    return options.skip_existing and job.output != STREAM and job.output.exists()


def check_before_any_file(plan: BatchPlan, options: BatchOptions) -> None:
    """Raise for what would fail every file: a device that is not there or cannot compute in
    the precision asked; a model for another task, unloadable, with a level outside its range
    or a precision it cannot run in; an output folder that cannot be written; a bad
    ``FORMNET_MAX_MEGAPIXELS`` or ``jpeg_quality``."""
    restore = options.restore
    api.check_device(restore)
    imageio.max_pixels()  # a bad FORMNET_MAX_MEGAPIXELS is one error, not one per file
    if options.jpeg_quality is not None and not 1 <= options.jpeg_quality <= 100:
        raise InvalidOptionError(f"--jpeg-quality must be in [1, 100], got {options.jpeg_quality}")
    if plan.jobs and restore.formatter is not None:  # a model in that form for a step at least
        api.formatted_tasks(restore.tasks or auto.STEPS, restore.formatter)
    if plan.jobs and restore.model is not None:
        loaded = api.load_options_model(restore)
        api.check_model_options(loaded, sigma=restore.sigma, scale=restore.scale,
                                precision=restore.precision, device=restore.device)
    _check_output_folders_writable([job for job in plan.jobs if not left_as_is(job, options)])


def _check_output_folders_writable(jobs: Sequence[Job]) -> None:
    """Raise :class:`~formnet_cli.errors.ImageWriteError` when an output folder cannot be
    written: every image going there would be restored for nothing."""
    for folder in sorted({job.output.parent for job in jobs if job.output != STREAM}):
        imageio.check_writable_folder(folder)
