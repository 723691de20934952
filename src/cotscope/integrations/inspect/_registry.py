"""The ``inspect_ai`` entry point of ``cotscope[inspect]``: importing it registers cotscope's tasks, solvers,
scorers and metrics with Inspect under the ``cotscope/`` prefix (``inspect eval cotscope/thought_crime``)."""

from cotscope.integrations.inspect import _cuaharm, _metrics, _scorers, _solvers, _tasks  # noqa: F401
