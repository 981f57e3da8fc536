"""The console script's and ``python -m resnet_deploy``'s entry point: imports the command line
inside a handler, so a Ctrl-C in the first tenth of a second (typer and rich importing) is one
``error: interrupted`` line and exit 130, not a traceback."""

import os
import sys


def main() -> None:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.stderr.flush()
        os._exit(130)  # nothing is open yet; and sys.exit could turn into death by SIGINT under -m
    cli_main()
