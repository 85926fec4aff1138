"""How CLI commands are declared: ``@command`` and ``group`` record them in plain lists, and
``main.build_app`` turns those into the Typer app only when a command line needs parsing.

The command modules annotate their parameters with ``typer.Option`` and ``typer.Argument``
as usual, but cannot import Typer (importing the CLI must stay cheap), so the annotations
stay strings (``from __future__ import annotations``) and each module imports ``typer``
under ``TYPE_CHECKING`` only. ``resolve_annotations`` evaluates them when the app is built,
in the command's module globals plus ``annotation_names()``: ``typer`` itself and the
parameter types several commands share (``Names``, ``StopTimeout``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TypeVar, get_type_hints

if TYPE_CHECKING:
    import typer  # noqa: F401 - for the commands' annotations

    # What the shared parameter types are to a type checker; annotation_names() makes them
    # Annotated[..., typer.Argument/Option(...)] for Typer.
    Names = list[str]
    StopTimeout = float

F = TypeVar("F", bound=Callable[..., Any])


class Command(NamedTuple):
    group: str  # "" is the top level
    name: str
    options: dict[str, Any]  # more keyword arguments of Typer's ``command``
    function: Callable[..., Any]


COMMANDS: list[Command] = []
GROUPS: dict[str, str] = {}  # group name -> its help text


def command(name: str | None = None, group: str = "", **options: Any) -> Callable[[F], F]:
    """Register a CLI command. Its parameters are annotated with ``typer.Option`` and
    ``typer.Argument`` as usual; the annotations are strings until ``build_app`` imports
    Typer and they are resolved (``resolve_annotations``)."""
    def register(f: F) -> F:
        COMMANDS.append(Command(group, name or f.__name__, options, f))
        return f
    return register


def group(name: str, help_text: str) -> None:
    """Declare a command group, ``vmkit NAME ...``; its commands say ``group=NAME``."""
    GROUPS[name] = help_text


def annotation_names() -> dict[str, Any]:
    """What the commands' string annotations name besides their own module's globals."""
    import typer

    from .common import complete_vm

    names = Annotated[list[str], typer.Argument(metavar="NAME", help="One or more VMs.",
                                                show_default=False,
                                                autocompletion=complete_vm)]
    stop_timeout = Annotated[float, typer.Option(
        "--timeout", "-t", metavar="SECONDS",
        help="How long to wait for a clean shutdown before forcing the VM off.")]
    return {"typer": typer, "Names": names, "StopTimeout": stop_timeout}


def resolve_annotations(f: F, names: dict[str, Any]) -> F:
    """Evaluate the string annotations of ``f`` (see the module's docstring) in place, so
    that Typer finds objects there. Resolving twice is harmless."""
    namespace = {**f.__globals__, **names}
    f.__annotations__ = get_type_hints(f, globalns=namespace, include_extras=True)
    return f


def help_text(f: Callable[..., Any]) -> str:
    """A command's help from its docstring, wrapping like prose: the lines of each paragraph
    are joined, but indented ones (examples) stay as written. Typer's Rich help would keep
    every newline of the docstring otherwise."""
    import inspect

    return prose(inspect.cleandoc(f.__doc__ or ""))


def prose(text: str) -> str:
    paragraphs = text.split("\n\n")
    # Typer dedents the help text again; an empty markup tag at the start of each example
    # line renders as nothing but keeps its indentation.
    return "\n\n".join(
        "\n".join("[dim][/dim]" + line for line in p.split("\n")) if p.startswith(" ")
        else p.replace("\n", " ") for p in paragraphs)
