"""``anyrt bench``: the benchmark workloads, the runtimes they run on, and the runner.

* ``common`` - sizes, inputs and metric helpers every version of a workload shares;
* ``workloads`` - each workload written once against `anyrt.Runtime`, and its
  description (`WORKLOADS`);
* ``peer_asyncio``, ``peer_trio``, ``peer_anyio`` - the raw peers' idiomatic versions;
* ``runtimes`` - the table of runtimes: installed anyrt backends and raw peers;
* ``runner`` - each run of a case in a fresh child process, interleaved rounds;
* ``progress`` - the progress bar and the estimate of the time left;
* ``report`` - the tables, the JSON report and the chart;
* ``cli`` - the ``anyrt bench`` command line.

Private: the command line is the interface.
"""
