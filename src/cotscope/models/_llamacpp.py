"""The llama.cpp backend: ``llamacpp/PATH.gguf`` (or ``llamacpp/smollm2``) in-process via llama-cpp-python.

The GGUF's own chat template (its ``tokenizer.chat_template`` metadata) is rendered with Jinja here, so
the prefill can be appended to the prompt text and generation continues it with ``create_completion``.
llama.cpp runs one sequence at a time per context, so requests run one after another on one dedicated
thread. The thread must stay the same for the life of the context: ggml's OpenMP pool belongs to the
thread that calls it, and a second calling thread adds a second pool that spins against the first
(measured on 2 cores: 123 tok/s from one thread, 77-85 tok/s once two threads had called the same model).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cotscope.models._local import resolve_gguf
from cotscope.models._prefill import finish_output, merge_prefill
from cotscope.models._protocol import GenerateRequest, ModelOutput, modelapi


class _GGUFTemplate:
    """A chat template from GGUF metadata, rendered like transformers does (Jinja, sandboxed)."""

    def __init__(self, template: str | None, bos: str, eos: str) -> None:
        self.chat_template = template
        self.bos_token, self.eos_token = bos, eos
        self._compiled: Any = None

    def apply_chat_template(
        self, messages: list[dict[str, Any]], tokenize: bool = False, add_generation_prompt: bool = True, **kw: Any
    ) -> str:
        if self._compiled is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

            def raise_exception(msg: str) -> None:
                raise ValueError(msg)

            env.globals["raise_exception"] = raise_exception
            self._compiled = env.from_string(self.chat_template or "")
        return str(self._compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=self.bos_token, eos_token=self.eos_token, **kw))


class LlamaCppModel:
    """A GGUF model run by llama.cpp in this process.

    Args:
        model: a ``.gguf`` path or ``smollm2``.
        n_ctx: context length.
        n_threads: CPU threads (default: llama.cpp's choice).
        n_gpu_layers: layers offloaded to a GPU build (0 on CPU builds).
        seed: the context's seed when a request gives none.
        name: the name on outputs and cache keys (default ``llamacpp/<model>``).
    """

    batch_size = 1
    max_concurrency = 1

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ImportError("the llamacpp backend needs llama-cpp-python: pip install 'cotscope[llamacpp]'") from None
        path = resolve_gguf(model) or Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{model}: no such GGUF file")
        self.path = path
        self.name = name or f"llamacpp/{model}"
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cotscope-llamacpp")
        self.llm = self._thread.submit(
            Llama, model_path=str(path), n_ctx=int(n_ctx), n_threads=n_threads, n_gpu_layers=int(n_gpu_layers),
            seed=int(seed), verbose=False,
        ).result()
        meta = self.llm.metadata or {}
        vocab = self.llm

        def tok_text(key: str) -> str:
            tid = meta.get(key)
            if tid is None:
                return ""
            return vocab.detokenize([int(tid)], special=True).decode("utf-8", "replace")

        self.template = _GGUFTemplate(meta.get("tokenizer.chat_template"), tok_text("tokenizer.ggml.bos_token_id"),
                                      tok_text("tokenizer.ggml.eos_token_id"))
        self._lock = threading.Lock()

    def render(self, request: GenerateRequest) -> tuple[str, str]:
        """``(prompt_text, recorded_prefix)`` of a request: chat template, then the prefill."""
        from cotscope.models._render import render_chat

        return merge_prefill(render_chat(self.template, request.messages, request.template_kwargs), request.prefill)

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """Generate each request in turn (llama.cpp serves one sequence per context)."""
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(self._thread, self._one, r) for r in requests]

    def complete(self, prompt: str, **kwargs: Any) -> Any:
        """``create_completion`` on the model's own thread (for callers outside the async API)."""
        return self._thread.submit(self.llm.create_completion, prompt, **kwargs).result()

    def _one(self, request: GenerateRequest) -> ModelOutput:
        cfg = request.config
        try:
            prompt, prefix = self.render(request)
            t0 = time.perf_counter()
            with self._lock:
                res: Any = self.llm.create_completion(
                    prompt, max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                    stop=list(cfg.stop) or None, seed=cfg.seed,
                )
            choice = res["choices"][0]
            usage = res.get("usage") or {}
            out = ModelOutput(text=choice.get("text") or "", finish_reason=choice.get("finish_reason"),
                              prompt_tokens=usage.get("prompt_tokens"),
                              completion_tokens=usage.get("completion_tokens"),
                              model=self.name, latency_s=time.perf_counter() - t0,
                              prefill_applied="rendered" if request.prefill else "none")
            return finish_output(prefix, out)
        except Exception as e:  # a context overflow or a template error ends this request, not the run
            return ModelOutput(error=f"{type(e).__name__}: {e}")

    async def aclose(self) -> None:
        """Free the llama.cpp context (on its own thread) and stop the thread."""
        close = getattr(self.llm, "close", None)
        if close is not None:
            self._thread.submit(close).result()
        self._thread.shutdown(wait=True)


@modelapi("llamacpp")
def llamacpp_model(model: str, base_url: str | None = None, **model_args: Any) -> LlamaCppModel:
    """``llamacpp/PATH.gguf`` or ``llamacpp/smollm2``: llama.cpp in-process."""
    model_args.pop("max_connections", None)
    for k in ("n_ctx", "n_threads", "n_gpu_layers", "seed"):
        if k in model_args and model_args[k] is not None:
            model_args[k] = int(model_args[k])
    return LlamaCppModel(model, **model_args)
