import sys

try:
    from tcpstress.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python imports the CLI: still an interrupt, not a traceback
    sys.exit(130)

main()
