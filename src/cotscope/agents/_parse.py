"""The paper's parsing of agent responses: actions from one response, code blocks from a runtime log.

Both follow CUAHarm (db-ol/CUAHarm at commit bdaf585) exactly, quirks included, so that scores computed
here match the paper's:

- :func:`parse_actions` is ``parse_code_from_terminal_string`` of ``mm_agents/agent.py`` (the terminal
  action space's parser, used by ``PromptAgent.parse_actions``); ``evals/command_analysis.py`` carries a
  copy with the same behaviour.
- :func:`log_blocks` is ``parse_responses`` of ``evals/command_analysis.py``.
- :func:`runtime_log` rebuilds the part of the paper's ``runtime.log`` those checks read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["CONTROL_CODES", "log_blocks", "parse_actions", "runtime_log", "strip_fences"]

#: The special codes of the terminal action space; each is an action of its own.
CONTROL_CODES = ("WAIT", "DONE", "FAIL")

#: The paper's fence pattern: three backticks, an optional word followed by whitespace (the language tag;
#: note that in a one-line fence such as ```` ```ls -la``` ```` the *command's* first word is taken for the
#: tag, as in the paper), the body (non-greedy, across lines), three backticks.
FENCE = re.compile(r"```(?:\w+\s+)?(.*?)```", re.DOTALL)

_RESPONSE_SPLIT = re.compile(r"RESPONSE:")


def parse_actions(response: str) -> list[str]:
    """The actions of one response, as the paper's terminal agent takes them.

    ``parse_code_from_terminal_string`` (``mm_agents/agent.py``):

    1. every line is stripped and blank lines are dropped (so indentation inside fences is lost);
    2. a response that is then exactly ``WAIT``, ``DONE`` or ``FAIL`` is that one action;
    3. otherwise each fence (:data:`FENCE`) is one action after stripping, except that a fence whose last
       line is a control code gives two actions: the lines before it, then the code (a fence that is only
       the code gives the code). Text outside fences is ignored; a response without fences has no actions.

    Args:
        response: the model's raw response.

    Returns:
        The commands and control codes in order (possibly empty; an empty fence gives ``""``).
    """
    text = "\n".join(line.strip() for line in response.splitlines() if line.strip())
    if text.strip() in CONTROL_CODES:
        return [text.strip()]
    codes: list[str] = []
    for match in FENCE.findall(text):
        body = match.strip()
        lines = body.split("\n")
        if body in CONTROL_CODES:
            codes.append(body)
        elif lines[-1] in CONTROL_CODES:
            if len(lines) > 1:
                codes.append("\n".join(lines[:-1]))
            codes.append(lines[-1])
        else:
            codes.append(body)
    return codes


def runtime_log(responses: Sequence[str]) -> str:
    """The paper's ``runtime.log`` as far as its checks can see it: one ``RESPONSE: <response>`` record per step.

    In the paper, ``lib_run_single.setup_logger`` attaches a ``logging.FileHandler`` (default format: the
    message alone, then a newline) for ``<result_dir>/runtime.log`` to a per-task logger, and
    ``run_single_example`` hands that logger to the agent (``agent.reset(runtime_logger)``). The agent's
    ``predict`` (``mm_agents/agent.py``) then logs ``"RESPONSE: %s"`` with the raw response once per step,
    so each response appears verbatim (newlines included) after ``RESPONSE: `` and before a newline.
    Terminal observations are not logged there (the prompt log line is commented out), so command
    outputs never reach the log.

    Left out: the other records the same logger may receive, which depend on the backend and not on what
    the agent did: ``Generating content with ... model: <name>`` (some backends), and ``Failed to call
    <model>, Error: ...`` when a call fails (the paper then logs an empty response, as here a step with
    ``""``). Model names can contain substrings that the paper's raw-text rules look for; leaving them
    out makes those rules depend on the agent only.

    Args:
        responses: the agent's raw responses, one per step, in order.

    Returns:
        ``"".join(f"RESPONSE: {r}\\n" for r in responses)``.
    """
    return "".join(f"RESPONSE: {r}\n" for r in responses)


def log_blocks(log: str) -> list[str]:
    """The code blocks of a runtime log: ``parse_responses`` of ``evals/command_analysis.py``.

    The log is split on ``RESPONSE:`` (a regex split, so the text of a response that itself contains
    ``RESPONSE:`` is split there too) and the part before the first one is dropped; each remaining part is
    stripped, and every non-empty one is parsed with :func:`parse_actions`. Control codes are blocks too.

    Args:
        log: the runtime log (:func:`runtime_log`).

    Returns:
        All code blocks of all responses, in order.
    """
    blocks: list[str] = []
    for part in _RESPONSE_SPLIT.split(log)[1:]:
        part = part.strip()
        if part:
            blocks.extend(parse_actions(part))
    return blocks


def strip_fences(response: str) -> str:
    """A response without its code fences: what the agent says around its actions.

    Fences are found with the paper's pattern (:data:`FENCE`) on the raw text; what remains keeps its
    line breaks, with runs of blank lines collapsed and the ends stripped.
    """
    text = FENCE.sub("", response)
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text).strip()
