"""Fixtures shared by the project's own tests."""

import importlib.util

# The TLS certificates of the conformance suite's TLS tests (a test CA from `trustme`),
# for tests/test_tls.py too: one definition of the test certificates. Where trustme
# cannot be installed (free-threaded builds: no cryptography wheel), the TLS tests skip
# themselves, saying why.
if importlib.util.find_spec("trustme") is not None:
    from anyrt.testing.conformance.test_tls import (  # noqa: F401 - pytest fixtures
        ca,
        client_context,
        server_context,
    )
