"""Kept so that ``uv run python bench/run.py ARGS`` still works: it is ``anyrt bench ARGS``."""

import sys

from anyrt._cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
