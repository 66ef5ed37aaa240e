"""``python -m citywatch``: the command line (:mod:`citywatch.app.cli`)."""

from citywatch.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
