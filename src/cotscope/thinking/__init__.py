"""Decoding strategies over the reasoning: normal, ZeroThink, LessThink, MoreThink, no-think, think-budget,
prefill.

``thinking`` builds on ``cotscope.models`` (never the reverse): a strategy is a
:class:`cotscope.models.DecodingStrategy`, and the prefill helpers the backends share
(``merge_prefill``, ``finish_output``, ``strategy_strings``) live in ``models`` and are re-exported here.
"""

from cotscope.models._prefill import finish_output, merge_prefill, strategy_strings
from cotscope.thinking._strategies import (
    MoreThink,
    Strategy,
    ThinkBudget,
    ThinkRounds,
    get_strategy,
    prefill_spans,
    strategy,
    strategy_names,
)

__all__ = [
    "MoreThink",
    "Strategy",
    "ThinkBudget",
    "ThinkRounds",
    "finish_output",
    "get_strategy",
    "merge_prefill",
    "prefill_spans",
    "strategy",
    "strategy_names",
    "strategy_strings",
]
