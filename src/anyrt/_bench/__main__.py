"""The child process of ``anyrt bench``: ``python -m anyrt._bench --child W R SIZE``."""

import sys

from .runner import child_main

sys.exit(child_main())
