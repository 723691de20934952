"""The OpenAI-compatible backend asks for and returns the first tokens' top log-probabilities (em-alignment)."""

from __future__ import annotations

import math

from openai.types.chat import ChatCompletion

from cotscope.models import GenerateConfig, GenerateRequest
from cotscope.models._openai import OpenAIModel, _chat_output


def _completion(logprobs: object) -> ChatCompletion:
    return ChatCompletion.model_validate({
        "id": "x", "object": "chat.completion", "created": 0, "model": "judge",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                     "message": {"role": "assistant", "content": "90"}}]})


def test_top_logprobs_of_the_first_tokens_are_returned() -> None:
    top = [{"token": "90", "logprob": math.log(.5), "bytes": None},
           {"token": "80", "logprob": math.log(.3), "bytes": None}]
    resp = _completion({"content": [{"token": "90", "logprob": math.log(.5), "bytes": None, "top_logprobs": top}]})
    out = _chat_output("", resp)
    assert out.answer == "90" and out.top_logprobs == [{"90": math.log(.5), "80": math.log(.3)}]
    # A server that ignores the request: no logprobs, and the judge falls back to the parsed number.
    assert _chat_output("", _completion(None)).top_logprobs is None


def test_logprob_request_fields_reach_the_server() -> None:
    m = OpenAIModel("judge", "http://127.0.0.1:9/v1")
    req = GenerateRequest(messages=[{"role": "user", "content": "q"}],
                          config=GenerateConfig(max_tokens=16, extra={"logprobs": True, "top_logprobs": 20}))
    p = m._params(req)
    assert (p["logprobs"], p["top_logprobs"], p["max_tokens"]) == (True, 20, 16)
