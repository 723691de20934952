"""Integrations with other tools, each an optional extra imported only when asked for.

- :mod:`cotscope.integrations.inspect` (``cotscope[inspect]``): cotscope's benchmarks as Inspect AI tasks, its
  thinking strategies as solvers, every judge and monitor as an Inspect scorer and its metrics as Inspect metrics,
  registered with Inspect through the ``inspect_ai`` entry point (``inspect eval cotscope/safechain_strongreject``).

This module imports nothing, so ``import cotscope`` never loads an integration's library.
"""
