"""`python -m devstack up|down|env|build [--components ...]`: the local stack's CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack import stack
from devstack.procs import StackError


def _components(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """Accept both `--components postgres kafka` and `--components postgres,kafka`."""
    if not values:
        return None
    return tuple(part for value in values for part in value.split(",") if part)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Start and stop the local stack: PostgreSQL, Kafka, Kubernetes control plane.",
    )
    parser.add_argument(
        "command",
        choices=("up", "down", "env", "build"),
        help="up: start (or reuse) and write .stack/env; down: stop by pid; "
        "env: print the export lines; build: fill the cache without starting",
    )
    parser.add_argument(
        "--components",
        nargs="+",
        metavar="NAME",
        help=f"some of {', '.join(stack.COMPONENTS)} (default: all)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="default: $LABELOPS_STACK_DIR or <repo>/.stack",
    )
    return parser


def _env(state_dir: Path) -> None:
    path = stack.env_file(state_dir)
    if not path.is_file():
        raise StackError(f"no stack is up ({path} is missing); start one with: make stack-up")
    sys.stdout.write(path.read_text())


def run(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    state_dir = (args.state_dir or stack.default_state_dir()).resolve()
    components = _components(args.components)
    if args.command == "up":
        stack.up(state_dir, components or stack.COMPONENTS)
    elif args.command == "down":
        stack.down(state_dir, components)
        print(f"stack in {state_dir} stopped")
    elif args.command == "env":
        _env(state_dir)
    else:
        stack.build(components=components or stack.COMPONENTS, log_dir=state_dir)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(argv)
    except StackError as exc:
        # Expected failures (a missing tool, a component that would not start) need no trace.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
