"""The command line's parser: argparse, but a mistake is one line that names it and, for a
misspelt command, option or choice, the closest right one (`marrow-tui clam` -> "did you mean
claim?"), instead of the whole usage. `main` prints that line (and the failure object with
`--json`) and exits 2.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any, NoReturn

#: where each parser records itself while parsing, so the deepest one (the command's) is known
_PARSER_ATTR = "_marrow_parser"


class BadUsage(Exception):
    """The command line cannot be run: ``prog`` is the command it was for."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog
        self.message = message

    def sentence(self) -> str:
        """``claim: the following arguments are required: TASK_ID (see `marrow-tui claim
        --help`)``: the command, the mistake, where the usage is."""
        command = self.prog.partition(" ")[2]
        message = self.message.removeprefix("argument ")
        return f"{command + ': ' if command else ''}{message} (see `{self.prog} --help`)"


def closest(word: str, choices: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


class Parser(argparse.ArgumentParser):
    """Subparsers are made of this class too (`add_subparsers` uses the parent's class)."""

    def error(self, message: str) -> NoReturn:
        raise BadUsage(self.prog, message)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        namespace = namespace if namespace is not None else argparse.Namespace()
        # A subcommand's parser runs inside its parent's and copies its namespace up after
        # this line: the parser left in the attribute is the innermost.
        setattr(namespace, _PARSER_ATTR, self)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        command: Parser = getattr(parsed, _PARSER_ATTR, self)
        delattr(parsed, _PARSER_ATTR)
        if extras:
            command.error(command.unexpected(extras[0]))
        return parsed

    def unexpected(self, word: str) -> str:
        """What to say about the first argument nothing took."""
        if not word.startswith("-") or word == "-":
            return f"unexpected argument {word!r}"
        option = word.split("=", 1)[0]
        known = [s for action in self._actions for s in action.option_strings
                 if action.help != argparse.SUPPRESS]
        match = closest(option, known)
        hint = f"; did you mean {match}?" if match else ""
        return f"unknown option {option}{hint}"

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(c) for c in choices]
        match = closest(str(value), names)
        hint = f"; did you mean {match}?" if match else ""
        if isinstance(action, argparse._SubParsersAction):  # the commands: --help lists them
            message = f"unknown command {value!r}{hint}"
        elif action.option_strings:
            message = f"{action.option_strings[-1]} {value!r} is not one of {', '.join(names)}"
            message += hint
        else:
            message = f"unknown {action.metavar or action.dest} {value!r}"
            message += hint or f" (one of {', '.join(names)})"
        raise argparse.ArgumentError(None, message)
