"""``python -m anyrt``: the same as the ``anyrt`` command."""

from anyrt._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
