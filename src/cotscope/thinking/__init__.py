"""Decoding strategies over the reasoning: normal, ZeroThink, LessThink, MoreThink, no-think, prefill."""

from cotscope.thinking._strategies import (
    MoreThink,
    Strategy,
    finish_output,
    get_strategy,
    merge_prefill,
    strategy,
    strategy_names,
    strategy_strings,
)

__all__ = [
    "MoreThink",
    "Strategy",
    "finish_output",
    "get_strategy",
    "merge_prefill",
    "strategy",
    "strategy_names",
    "strategy_strings",
]
