"""What the evaluation's ``python -m`` tools (split_seeds, confirmed_split, split_bounds) share:
progress on stderr, a clear error and exit status 2 for bad input, the command line recorded
in the JSON and the Markdown they print."""
from __future__ import annotations

import shlex
import sys

from dmd3c_ros.core.io import write_json


def run_tool(prog: str, argv: list[str], compute, markdown, *, json_path=None,
             json_extra: dict | None = None) -> int:
    """Run one tool: ``compute(progress)`` gives the result (a dict); ``markdown(result,
    command)`` the text printed. An OSError or ValueError from ``compute`` is printed as
    ``PROG: error: ...`` and gives exit status 2. With ``json_path`` the result, ``json_extra``
    and the command line are written there as JSON."""
    try:
        result = compute(lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    except (OSError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    command = " ".join([prog] + [shlex.quote(a) for a in argv])
    if json_path:
        write_json(json_path, {**result, **(json_extra or {}), "command": command})
    print(markdown(result, command))
    return 0
