"""``python -m spread``: the same as the ``spread`` command (see spread/cli.py)."""

from spread.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
