"""``fluxway bench``: the project's own load test (see bench/README.md and the team's performance
document, "Method"), kept out of the serving package ``fluxway``.

It starts a mock upstream answering instantly (nginx: a fixed ``chat.completion`` JSON, and a 5-chunk
SSE stream under ``/sse``), the minimal Python pass-through (``bench/passthrough.py``), Fluxway
(``python -m fluxway serve``) and, when installed in ``bench/.venv-litellm``, the LiteLLM proxy, all
against the same mock; drives them with wrk (closed loop, c=32 and c=1) and ``bench/loadgen.py``
(time to first byte; open loop at a fixed rate against the fault-injecting ``bench/mock_upstream.py``);
and prints one markdown table per scenario, also written to ``bench/results/<date>-<scenario>.md``
and ``.json``. Pinning: the server under test on core 0, load generator and mock on core 1.

Scenarios: ``json`` (throughput, latency, RSS), ``stream`` (SSE throughput, time to first byte),
``failover`` (issue 4: one of two targets failing a fraction of the time, or with a slow first byte).

Modules, one concept each. Pure, unit-tested: ``fixtures`` (what the mock answers, what the load sends),
``configs`` (nginx config, wrk scripts, gateway configs), ``stats`` (wrk output parsing, percentiles,
summaries), ``tables`` and ``plots`` (markdown tables, SVG bars), ``settings`` (the command line),
``report`` (headers, notes, saved files). Process handling: ``processes`` (services, CPU meter),
``machine`` (hardware and versions), ``harness`` (one run's services and bookkeeping), ``targets``
(the servers under test), ``load`` (wrk closed loop, ``loadgen.py`` open loop and TTFB), ``scenarios``
(json, stream, failover), ``cli`` (``main``). Timings are never asserted anywhere.
"""
