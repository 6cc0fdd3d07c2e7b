"""Fixtures shared by the project's own tests."""

# The TLS certificates of the conformance suite's TLS tests (a test CA from `trustme`),
# for tests/test_tls.py too: one definition of the test certificates.
from anyrt.testing.conformance.test_tls import (  # noqa: F401 - pytest fixtures
    ca,
    client_context,
    server_context,
)
