"""``python -m bilevel_lib``: the command line of :mod:`bilevel_lib.experiments.cli`."""

from .experiments.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
