"""`python -m tcpstress` and the `tcpstress` command (pyproject's script entry is `run`)."""

from tcpstress.exiting import caused_by_interrupt, exit_interrupted


def run() -> None:
    try:
        from tcpstress.cli import main
    except BaseException as e:  # Ctrl-C while Python imports the CLI: exit 130, not a traceback
        if isinstance(e, SystemExit) or not caused_by_interrupt(e):
            raise
        exit_interrupted()
    main()


if __name__ == "__main__":
    run()
