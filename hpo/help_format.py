"""How every ``--help`` of ``hpo`` and ``hpo-report`` looks: defaults shown, examples kept as written.

:class:`HelpFormatter` is argparse's :class:`~argparse.ArgumentDefaultsHelpFormatter` that says
``(default: X)`` only where there is a value to say (not for ``None`` or an off switch) and the
help text does not already say what the default is (``default: the space's max budget``), and
that keeps the line breaks of a description or an epilog (each unindented line wrapped on its own,
indented lines as written), so an ``Example:`` block stays as written. :class:`HelpParser` makes it the default of every subcommand
and says a usage error in one line.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any, NoReturn


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults as ``(default: X)`` where they say something; descriptions and epilogs keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == []
        if nothing or action.default is argparse.SUPPRESS or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in textwrap.dedent(text).strip("\n").splitlines():
            if line[:1].isspace() or not line.strip():  # an example's command: as written, to copy
                lines.append(indent + line if line.strip() else "")
            else:
                lines.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent,
                                           break_on_hyphens=False))
        return "\n".join(lines)


class HelpParser(argparse.ArgumentParser):
    """An ArgumentParser whose help uses :class:`HelpFormatter` unless told otherwise (for subparsers),
    and whose usage errors are one line (what is wrong, and where the help is), exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def example(*commands: str) -> str:
    """An epilog: ``Example:`` and the commands, one per line."""
    return "Example:\n" + "\n".join(f"  {command}" for command in commands)
