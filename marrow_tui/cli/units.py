"""`marrow-tui install-service`: marrow-tui's own service-manager files, which keep
`marrow-tui --no-ui` running: a systemd user unit and a launchd plist.

`render_units` only returns text; it never writes, installs or starts anything. Every value
is escaped for its format: systemd's quoting, `%` specifiers and `$` expansion in ExecStart=
(systemd.syntax(7), systemd.service(5)), and XML through plistlib for launchd.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from marrow_tui.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, PROG, SubParsers
from marrow_tui.cli.project import add_config_option, config_path, load_or_report

SYSTEMD_UNIT = "marrow-tui.service"
LAUNCHD_LABEL = "com.marrow-tui"
LAUNCHD_PLIST = f"{LAUNCHD_LABEL}.plist"
PLATFORMS = ("linux", "darwin", "both")

#: where each file goes, for the instructions printed after rendering
INSTALL_LOCATIONS = {
    SYSTEMD_UNIT: "~/.config/systemd/user/" + SYSTEMD_UNIT,
    LAUNCHD_PLIST: "~/Library/LaunchAgents/" + LAUNCHD_PLIST,
}
INSTALL_COMMANDS = {
    SYSTEMD_UNIT: f"systemctl --user daemon-reload && systemctl --user enable --now {SYSTEMD_UNIT}",
    LAUNCHD_PLIST: f"launchctl load -w ~/Library/LaunchAgents/{LAUNCHD_PLIST}",
}

#: seconds the service manager waits after SIGTERM (agents get up to stop_grace to stop)
STOP_TIMEOUT = 90
RESTART_DELAY = 5

_STANDARD_PATH = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")


def command_line(config_path: Path, *, executable: str | Sequence[str],
                 state_dir: Path | None = None) -> list[str]:
    """The argv both service files run.

    `executable` is the program (one path, spaces and all), or a command prefix such as
    `[sys.executable, "-m", "marrow_tui"]`; give absolute paths, service managers do not
    search the user's PATH for it.
    """
    prefix = [executable] if isinstance(executable, str) else list(executable)
    if not prefix or not prefix[0]:
        raise ValueError("no executable given")
    argv = [*prefix, "--no-ui", "--config", str(config_path.absolute())]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir.absolute())]
    return argv


def default_path(executable: str | Sequence[str], environ_path: str | None = None) -> str:
    """PATH for the service: the executable's folder, the current PATH, the usual folders.

    Service managers start with a bare PATH, and agents usually live in ~/.local/bin and
    the like, so the PATH of the shell that renders the units is kept.
    """
    current = os.environ.get("PATH", "") if environ_path is None else environ_path
    program = executable if isinstance(executable, str) else executable[0]
    parts: list[str] = []
    if os.path.isabs(program):
        parts.append(os.path.dirname(program))
    parts += current.split(os.pathsep)
    parts += _STANDARD_PATH
    return os.pathsep.join(_unique(p for p in parts if p))


def render_units(config_path: Path, *, executable: str | Sequence[str],
                 state_dir: Path | None = None, platform: str = "both",
                 log_dir: Path | None = None, path: str | None = None) -> list[tuple[str, str]]:
    """(file name, text) for `platform`: "linux" (systemd), "darwin" (launchd) or "both".

    The service runs `<executable> --no-ui --config <absolute config>` (and `--state-dir`;
    see `command_line` for `executable`) in the config's folder, restarted when it fails.
    Its stdout and stderr are appended to marrow-tui.stdout.log / marrow-tui.stderr.log in
    `log_dir` (default: `state_dir`, else the config's folder; the folder must exist when the
    service starts). `path` is the PATH
    to run with (default: `default_path(executable)`).
    """
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
    config_path = config_path.absolute()
    argv = command_line(config_path, executable=executable, state_dir=state_dir)
    logs = (log_dir or state_dir or config_path.parent).absolute()
    spec = _Spec(
        argv=argv,
        cwd=str(config_path.parent),
        path=default_path(executable) if path is None else path,
        stdout=str(logs / "marrow-tui.stdout.log"),
        stderr=str(logs / "marrow-tui.stderr.log"),
    )
    _check_representable(spec)
    units: list[tuple[str, str]] = []
    if platform in ("linux", "both"):
        units.append((SYSTEMD_UNIT, render_systemd(spec)))
    if platform in ("darwin", "both"):
        units.append((LAUNCHD_PLIST, render_launchd(spec)))
    return units


class _Spec:
    def __init__(self, *, argv: list[str], cwd: str, path: str, stdout: str,
                 stderr: str) -> None:
        self.argv = argv
        self.cwd = cwd
        self.path = path
        self.stdout = stdout
        self.stderr = stderr


def _check_representable(spec: _Spec) -> None:
    """Neither format can carry control characters (a newline ends a systemd setting)."""
    for value in (*spec.argv, spec.cwd, spec.path, spec.stdout, spec.stderr):
        if any(ord(c) < 0x20 or c == "\x7f" for c in value):
            raise ValueError(f"cannot put a control character in a service file: {value!r}")


# ---- systemd ----

def systemd_quote(word: str) -> str:
    """One ExecStart= argument: `%` -> `%%`, `$` -> `$$`, quoted with C escapes if needed."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_executable(path: str) -> str:
    """ExecStart='s first word. systemd expands specifiers there but not `$`, and refuses
    quotes and backslashes in it."""
    if any(c in path for c in "\"'\\"):
        raise ValueError(f"systemd refuses quotes or backslashes in the executable: {path!r}")
    escaped = path.replace("%", "%%")
    return f'"{escaped}"' if any(c in escaped for c in " \t;") else escaped


def _systemd_assignment(value: str) -> str:
    """An Environment= assignment: quoted, C escapes, `%` doubled ($ is literal there)."""
    escaped = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _systemd_path(value: str) -> str:
    """A path setting (WorkingDirectory=, append:): only specifiers are expanded there."""
    return value.replace("%", "%%")


def render_systemd(spec: _Spec) -> str:
    if spec.cwd != spec.cwd.rstrip():  # systemd strips the end of every line
        raise ValueError(f"systemd cannot express a folder ending in a space: {spec.cwd!r}")
    exec_start = " ".join([systemd_executable(spec.argv[0])]
                          + [systemd_quote(word) for word in spec.argv[1:]])
    return "\n".join([
        "# marrow-tui: the scheduler and hub without the console (rendered by marrow-tui).",
        f"# Install: copy to {INSTALL_LOCATIONS[SYSTEMD_UNIT]}, then",
        f"#   {INSTALL_COMMANDS[SYSTEMD_UNIT]}",
        "[Unit]",
        "Description=marrow-tui scheduler and hub (no console)",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={_systemd_path(spec.cwd)}",
        f"Environment={_systemd_assignment('PATH=' + spec.path)}",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY}",
        "# SIGTERM to marrow-tui only: it stops its agents (SIGTERM, stop_grace, SIGKILL)",
        "KillMode=mixed",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        f"StandardOutput=append:{_systemd_path(spec.stdout)}",
        f"StandardError=append:{_systemd_path(spec.stderr)}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


# ---- launchd ----

def render_launchd(spec: _Spec) -> str:
    plist = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": spec.argv,
        "WorkingDirectory": spec.cwd,
        "EnvironmentVariables": {"PATH": spec.path},
        "RunAtLoad": True,
        # restart when it exits with an error or a signal, like systemd's on-failure
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_DELAY,
        "ExitTimeOut": STOP_TIMEOUT,
        "ProcessType": "Background",
        "StandardOutPath": spec.stdout,
        "StandardErrorPath": spec.stderr,
    }
    import plistlib

    return plistlib.dumps(plist, sort_keys=False).decode("utf-8")


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def register(sub: SubParsers) -> None:
    p = sub.add_parser("install-service",
                       help="render a systemd user unit and a launchd plist for --no-ui",
                       description="Render the service files that run `marrow-tui --no-ui` "
                                   "with this config. They are printed, or written into "
                                   "--output-dir; nothing is installed or enabled.")
    add_config_option(p)
    p.add_argument("--output-dir", type=Path, default=None,
                   help="write the files here instead of printing them")
    p.add_argument("--platform", choices=PLATFORMS, default="both",
                   help="linux: the systemd unit, darwin: the launchd plist (default both)")
    p.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS,
                   help="pass --state-dir to the service (default: its own default, .marrow "
                        "beside the config); its logs go there too")
    p.set_defaults(func=cmd_install_service)


def cmd_install_service(args: argparse.Namespace) -> int:
    path = config_path(args, required=True)
    assert path is not None
    # The service would refuse an invalid config at every start: refuse it now.
    if load_or_report(path, what="no service file was rendered") is None:
        return EXIT_CONFIG
    import shutil

    found = shutil.which("marrow-tui")
    executable: str | list[str] = (os.path.abspath(found) if found
                                   else [sys.executable, "-m", "marrow_tui"])
    state_dir = getattr(args, "state_dir", None)
    try:
        units = render_units(path.resolve(), executable=executable,
                             state_dir=state_dir.resolve() if state_dir else None,
                             platform=args.platform)
    except ValueError as exc:
        print(f"{PROG}: cannot render the service files: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.output_dir is None:
        if len(units) == 1:  # bare, so `install-service --platform linux > FILE` works
            sys.stdout.write(units[0][1])
            return EXIT_OK
        for name, text in units:
            print(f"# ---- {name}")
            print(text)
        return EXIT_OK
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in units:
            (args.output_dir / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{PROG}: cannot write into {args.output_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILED
    for name, _text in units:
        target = args.output_dir / name
        where = INSTALL_LOCATIONS[name]
        print(f"wrote {target}\n  install: mkdir -p {os.path.dirname(where)} && "
              f"cp {shlex.quote(str(target))} {where} && {INSTALL_COMMANDS[name]}")
    return EXIT_OK
