"""anyrt's testing kit: deterministic simulation, a pytest plugin, a conformance suite.

* `simulate` runs an async test once per seed on a simulated world: a
  `single-threaded` runtime on virtual time whose schedule, network delays and faults
  and `buggify` fault points are all decided by the seed, so a failing seed replays
  exactly. `Simulation` is one such run; `current_simulation` gives the running one
  (its hosts, partitions and links) to the test.
* `buggify` is a fault point for production code: random under simulation, False
  everywhere else.
* The plugin (registered as the ``pytest11`` entry point ``anyrt``) provides a
  ``runtime`` fixture parametrised over every installed backend (and a
  ``virtual_runtime`` fixture, over those with virtual time), runs ``async def`` tests
  that take one on that runtime, adds ``--anyrt-backend NAME[:k=v,...]``, and runs tests
  marked ``@pytest.mark.anyrt_simulate(seeds=N)`` once per seed.
* ``pytest --pyargs anyrt.testing.conformance --anyrt-backend NAME`` checks that a
  backend keeps the contract. A registered backend that cannot be imported is skipped,
  with the reason; `backend_params` gives the same choice to tests that make their own
  runtimes.
"""

from .._sim import (
    SimHost,
    Simulation,
    StepLimitExceeded,
    TraceEntry,
    buggify,
    current_simulation,
)
from .._simnet import Link, SimListener, SimStream
from .._simulate import SimulationFailure, SimulationStats, simulate
from ._params import backend_params, each_backend

__all__ = (
    "Link",
    "SimHost",
    "SimListener",
    "SimStream",
    "Simulation",
    "SimulationFailure",
    "SimulationStats",
    "StepLimitExceeded",
    "TraceEntry",
    "backend_params",
    "buggify",
    "current_simulation",
    "each_backend",
    "simulate",
)
