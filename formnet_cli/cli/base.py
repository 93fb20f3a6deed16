"""How every ``formnet`` command parses, shows its help and reports an error.

Typer's public extension points only: the app is a :class:`FormnetGroup` (``cls=`` of
``typer.Typer``) and each command a :class:`FormnetCommand` (``cls=`` of ``app.command``);
no class of typer or click is changed. Written against typer 0.29 (it vendors click as
``typer._click``, whose ``UsageError`` is the base of every parsing error; typer exports only
its subclass ``BadParameter``).

Errors: a :class:`~formnet_cli.errors.FormnetError` from any command prints one line,
``error: <message>``, on standard error and exits with 1; an
:class:`~formnet_cli.errors.InvalidOptionError` (a value found wrong after parsing) and a
usage error (an unknown flag, a bad value) print ``error: <message> (see '<command> -h')`` and
exit with 2. ``FORMNET_DEBUG=1`` prints the traceback of a ``FormnetError`` instead of its line;
the exit code is the same.
"""

from __future__ import annotations

import os
import traceback
from typing import Any, NoReturn

import typer
from typer._click.exceptions import UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from formnet_cli.errors import FormnetError, InvalidOptionError

DEBUG_VARIABLE = "FORMNET_DEBUG"


def debug_enabled() -> bool:
    """True when ``FORMNET_DEBUG`` asks for tracebacks (any value but empty, 0, false, no)."""
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


# -- how parameters show in help -------------------------------------------------------------
class FormnetOption(TyperOption):
    """An option whose help shows its metavar as its value (``INT``, ``auto|fp32|...``) and a
    flag nothing (typer would add its own type names: ``<bool>`` beside ``--help``)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return self.metavar or None


class FormnetArgument(TyperArgument):
    """An argument shown by its name alone: in help, without typer's type column
    (``<list[Path]>`` beside ``INPUT``), and in the usage line as click and man pages write it,
    ``INPUT...`` or ``[NAME]...`` when optional (typer writes ``{INPUT}...``)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return [name + ("..." if self.nargs != 1 else "")]


_SHOWN_AS = {TyperOption: FormnetOption, TyperArgument: FormnetArgument}


def _shown_as_formnet(parameter: Any) -> Any:
    """``parameter``, built by typer from a command's signature, as one of the subclasses
    above. Typer takes no parameter class, so the object it built for this command is given
    the subclass, which adds no state and only changes how the parameter is displayed."""
    shown = _SHOWN_AS.get(type(parameter))
    if shown is not None:
        parameter.__class__ = shown
    return parameter


class _FormnetParameters:
    """What :class:`FormnetGroup` and :class:`FormnetCommand` share: parameters shown as
    formnet shows them, the help option included."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params = [_shown_as_formnet(parameter) for parameter in self.params]

    def get_help_option(self, ctx: Any) -> Any:
        return _shown_as_formnet(super().get_help_option(ctx))  # type: ignore[misc]


# -- the group and its commands ---------------------------------------------------------------
class FormnetGroup(_FormnetParameters, TyperGroup):
    """The ``formnet`` app: turns a :class:`FormnetError` from any command and a usage error
    into the one line of the module docstring, with its exit code."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as error:
            _usage_error(error)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as error:  # raised while parsing a command's options
            _usage_error(error)
        except FormnetError as error:
            _known_error(error, ctx)


class FormnetCommand(_FormnetParameters, TyperCommand):
    """A ``formnet`` command (``app.command(cls=FormnetCommand)``)."""


def _usage_error(error: Any) -> NoReturn:
    if not error.format_message().strip():  # e.g. bare `formnet`: the help was the message
        raise error
    message = " ".join(error.format_message().split()).replace(": Value error, ", ": ")
    message = message.removesuffix(".")
    where = f" (see '{error.ctx.command_path} -h')" if error.ctx is not None else ""
    typer.echo(f"error: {message}{where}", err=True)
    raise typer.Exit(2) from None


def _known_error(error: FormnetError, ctx: Any) -> NoReturn:
    """``error: <message>``, exit 1; an :class:`InvalidOptionError` names the command's help
    and exits with 2. With ``FORMNET_DEBUG`` the traceback instead of the line, same code: the
    error propagates (Typer prints it and exits with 1), a usage error's is printed here."""
    usage = isinstance(error, InvalidOptionError)
    if debug_enabled():
        if not usage:
            raise error
        traceback.print_exception(error)
        raise typer.Exit(2) from None
    message = " ".join(str(error).split()) or type(error).__name__
    if usage:
        command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
        message += f" (see '{command} -h')"
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2 if usage else 1) from None
