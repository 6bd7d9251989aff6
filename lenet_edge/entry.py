"""The `lenet-edge` program: Ctrl-C while the command line is still being imported is an interrupt
like any other (one line, exit 130), not a traceback. Standard library only, so that almost
nothing runs before the handler is in place."""

import sys

INTERRUPTED = 130


def main() -> None:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; earlier artefacts are left as they were\n")
        sys.exit(INTERRUPTED)
    cli_main()
