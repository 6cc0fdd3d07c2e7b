"""anyrt on trio (work in progress)."""
