"""``python -m citywatch``: the command line (:mod:`citywatch.app.cli`)."""

from citywatch.app.cli import entry

if __name__ == "__main__":
    entry()
