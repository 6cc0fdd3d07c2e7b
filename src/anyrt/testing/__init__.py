"""anyrt's testing kit: a pytest plugin and a conformance suite for any backend.

* The plugin (registered as the ``pytest11`` entry point ``anyrt``) provides a
  ``runtime`` fixture parametrised over every installed backend, runs ``async def``
  tests that take it on that runtime, and adds ``--anyrt-backend NAME[:k=v,...]``.
* ``pytest --pyargs anyrt.testing.conformance --anyrt-backend NAME`` checks that a
  backend keeps the contract.
"""
