"""anyrt on asyncio (work in progress)."""
