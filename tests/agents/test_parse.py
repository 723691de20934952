"""Parity with the paper's parsers (CUAHarm at bdaf585: ``parse_code_from_terminal_string`` of
``mm_agents/agent.py`` and ``parse_responses`` of ``evals/command_analysis.py``).

Each expected value is what the paper's function returns for the input (checked against it when these
cases were written), quirks included: the language-tag group also eats a one-line fence's first word,
indentation inside fences is lost, and an empty fence is an empty action.
"""

from __future__ import annotations

import pytest

from cotscope.agents._parse import log_blocks, parse_actions, runtime_log, strip_fences

CASES = [
    ("DONE", ["DONE"]),
    ("  WAIT \n", ["WAIT"]),
    ("\n\nFAIL\n\n", ["FAIL"]),
    ("```bash\nls -la\n```", ["ls -la"]),
    ("```\nls\n```", ["ls"]),
    ("```bash ls -la```", ["ls -la"]),
    # a one-line fence without a tag: the command's first word is taken for the tag
    ("```ls -la```", ["-la"]),
    # several fences, with and without a language tag, prose around them
    ("First:\n```bash\ncd /tmp\n```\nthen\n```python\nprint(1)\n```", ["cd /tmp", "print(1)"]),
    ("```bash\nls\n``` and ```DONE```", ["ls", "DONE"]),
    # a trailing control-code line is split off as its own action
    ("```bash\necho hi\nDONE\n```", ["echo hi", "DONE"]),
    ("```bash\nls\n  DONE  \n```", ["ls", "DONE"]),
    # ...but not a leading one
    ("```bash\nDONE\nls\n```", ["DONE\nls"]),
    ("```DONE```", ["DONE"]),
    ("```\nFAIL\n```", ["FAIL"]),
    # every line is stripped, blank lines dropped
    ("```bash\nfor i in 1 2; do\n    echo $i\n\ndone\n```", ["for i in 1 2; do\necho $i\ndone"]),
    ("```bash\r\nls\r\n```", ["ls"]),
    # no fence, no action; an unclosed fence is no fence
    ("I can't help with that.", []),
    ("```bash\nls", []),
    ("WAIT\nDONE", []),
    ("I can't help. ```FAIL```", ["FAIL"]),
    # empty fences are empty actions
    ("```bash\n```", [""]),
    ("``````", [""]),
]


@pytest.mark.parametrize(("response", "expected"), CASES)
def test_parse_actions_matches_the_paper(response: str, expected: list[str]) -> None:
    assert parse_actions(response) == expected


def test_runtime_log_is_one_response_record_per_step() -> None:
    assert runtime_log([]) == ""
    assert runtime_log(["a", "```bash\nls\n```"]) == "RESPONSE: a\nRESPONSE: ```bash\nls\n```\n"


@pytest.mark.parametrize(("log", "expected"), [
    ("preamble RESPONSE: ```bash\nls\n```\nRESPONSE: DONE\n", ["ls", "DONE"]),
    # what precedes the first RESPONSE: is not read
    ("```bash\nrm -rf /\n```\nRESPONSE: hi", []),
    # the split is on every RESPONSE:, also inside a response
    ("RESPONSE: say RESPONSE: ```bash\nid\n```\n", ["id"]),
    ("RESPONSE: \nRESPONSE:    \n", []),
])
def test_log_blocks_matches_parse_responses(log: str, expected: list[str]) -> None:
    assert log_blocks(log) == expected


def test_log_blocks_of_a_rebuilt_log_are_the_actions_of_each_response() -> None:
    responses = ["I will look.\n```bash\nls\n```", "```bash\ncat a\nDONE\n```"]
    assert log_blocks(runtime_log(responses)) == [a for r in responses for a in parse_actions(r)]


def test_strip_fences_keeps_the_prose() -> None:
    text = "I will list the files.\n\n```bash\nls\n```\n\n\n\nThen stop.\n```DONE```"
    assert strip_fences(text) == "I will list the files.\n\nThen stop."
