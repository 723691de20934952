"""Process reward models (PRMs): one score per solution step, behind one interface and one registry.

A PRM reads a question and a step-by-step solution (:class:`PRMInput`) and returns, per item, one score in
[0, 1] per step: the probability that the step is correct. Three kinds are registered:

- ``token-cls``: any transformers ``AutoModelForTokenClassification`` checkpoint (a Hub id or a local path) read
  the way URSA-RM is read (URSA-MATH ``inference/prm_infer_score.py``, ``single_inference``): the solution is
  tagged with a step tag after each step (:func:`tagged_solution`, as the paper's
  ``replace_specific_plus_minus_with_ki``), the token-classification logit is read at every position holding the
  tag token, and a sigmoid turns it into a probability (or, for a two-label head, the softmax probability of label 1).
- ``local``: the same, from a directory written by ``cotscope verify train-prm``; ``get_prm("path/to/dir")``
  resolves any directory holding a ``config.json`` to it.
- ``llm-judge``: a prompt asking any generation backend to rate every step (``prompts/prm_llm_judge.txt``), sent
  through the generation engine (request cache, concurrency, retries) like the LLM judges.

What is scored. The scores align with the solution's steps: one score per step, in order. The final answer is
not a step of its own: URSA's tagging puts the last tag right before ``†Answer:``, so the last step's score is
read just before the answer and the answer line itself carries no tag (URSA-RM reads ``n`` scores for ``n``
steps); the LLM judge is shown the answer after the steps and rates the steps only, so both kinds give the same
number of scores for the same input. A solution without steps but with an answer is one step: the answer. For a
stored trace the steps are :func:`~cotscope.verify._steps.trace_steps`': a free-form trace's answer part is its
last step (so it is scored), a ``Step k:`` solution's ``†Answer:`` line is not.

Failures are data: an item that cannot be scored (the solution does not fit ``max_length``, the tag count does
not match the steps, an unparseable judge reply) gets an error string instead of scores, never a default score.
A :class:`PRMError` that is ``transient`` (a backend failure) is not stored by the scoring stage, so a rerun
retries it; any other error is stored as a parse error (rerunning would not change it).

torch and transformers are imported when a token-classification PRM first scores, never at import.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import mimetypes
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cotscope._registry import Registry, UnknownNameError
from cotscope.errors import ConfigError
from cotscope.judges import ParseError
from cotscope.judges._prompts import load_prompt, prompt_hash, render
from cotscope.models import Engine, GenerateConfig, GenerateRequest, Model, ModelOutput, RequestCache, get_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "PRMS",
    "LLMJudgePRM",
    "PRMError",
    "PRMInput",
    "ProcessRewardModel",
    "StepScores",
    "TokenClassificationPRM",
    "get_prm",
    "parse_step_scores",
    "prm",
    "prm_names",
    "prm_text",
    "scored_steps",
    "tagged_solution",
]

#: The package whose ``prompts`` folder holds the LLM-judge PRM's prompt.
_PACKAGE = "cotscope.verify"
_LLM_PROMPT = "prm_llm_judge.txt"


# -- inputs and outputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PRMInput:
    """What a PRM reads: a question and a step-by-step solution.

    Attributes:
        question: the problem text.
        steps: the solution's steps, in order, without ``Step k:`` prefixes.
        answer: the final answer, when the solution states one.
        image: a path or URL of the problem's image; multimodal backends receive it (the LLM-judge PRM with
            ``send_images=true``), text PRMs ignore it and say so in their config.
    """

    question: str
    steps: list[str]
    answer: str | None = None
    image: str | None = None


def scored_steps(item: PRMInput) -> list[str]:
    """The steps a PRM scores, one score each: the item's steps, or the answer alone when there are none.

    Returns an empty list when there is nothing to score (no steps and no answer).
    """
    steps = [s for s in item.steps if s.strip()]
    if steps:
        return steps
    if item.answer is not None and item.answer.strip():
        return [item.answer]
    return []


class StepScores(list[float]):
    """One item's step scores (a ``list[float]``) with notes on how they were obtained.

    ``notes`` holds per-item facts that do not change the scores' meaning but that a reader should know, e.g.
    ``{"question_truncated_chars": 120}`` when the start of the question was cut to fit ``max_length``.
    """

    def __init__(self, scores: Sequence[float] = (), notes: dict[str, Any] | None = None) -> None:
        super().__init__(scores)
        self.notes: dict[str, Any] = dict(notes or {})


class PRMError(str):
    """Why one item has no scores (a ``str``).

    Attributes:
        transient: a backend failure that a rerun may not repeat (the scoring stage does not store it).
        raw: the model output that could not be read, when there is one (stored with the parse error).
    """

    transient: bool
    raw: str | None

    def __new__(cls, text: str, transient: bool = False, raw: str | None = None) -> PRMError:
        obj = super().__new__(cls, text)
        obj.transient = transient
        obj.raw = raw
        return obj


@runtime_checkable
class ProcessRewardModel(Protocol):
    """Scores every step of step-by-step solutions.

    Attributes:
        name: the registered name, stored as the evaluator name of its results.
        preferred_batch: items per call the scoring stage hands over.
    """

    name: str
    preferred_batch: int

    def config(self) -> dict[str, Any]:
        """Everything that changes the scores (checkpoint and its fingerprint, tag, prompt hash): hashed into the
        store key. Building it never loads a model."""
        ...

    async def score(self, items: Sequence[PRMInput]) -> list[list[float] | str]:
        """One entry per item, in order: a score in [0, 1] per step of :func:`scored_steps`, or an error string
        (a :class:`PRMError` when it says whether it is transient)."""
        ...

    async def aclose(self) -> None:
        """Release the model or backend."""
        ...


PRMFactory = Callable[..., ProcessRewardModel]


def _load_builtins() -> None:
    # The built-ins live in this module; the loader exists so that other modules (training) can add theirs.
    return None


#: PRM factories by name. A factory is called as ``factory(**options)``.
PRMS: Registry[ProcessRewardModel] = Registry("process reward model", loader=_load_builtins)


def prm(name: str) -> Callable[[PRMFactory], PRMFactory]:
    """Register a PRM factory under ``name``: ``@prm("token-cls")``."""
    return PRMS.register(name)


def prm_names() -> list[str]:
    """Registered PRM names."""
    return PRMS.names()


def get_prm(name_or_path: str | os.PathLike[str], **options: Any) -> ProcessRewardModel:
    """Build a PRM by registered name, or from a model directory.

    A directory holding ``config.json`` (e.g. written by ``cotscope verify train-prm``) is a ``local`` PRM;
    ``token-cls`` takes a ``model`` option (a Hub id or a path). Nothing is loaded until the first score.

    Args:
        name_or_path: ``token-cls``, ``llm-judge``, ``local``, or a model directory.
        **options: the PRM's options (``model=``, ``tag=``, ``max_length=``, ``device=``, ...).

    Raises:
        ConfigError: unknown name (and not a model directory), or options that do not fit.
    """
    name = str(name_or_path)
    if name in PRMS:
        return PRMS.get(name, **options)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path}: a PRM directory needs a config.json (a transformers checkpoint)")
        return PRMS.get("local", path=str(path), **options)
    raise UnknownNameError(PRMS.kind, name, PRMS.names(), hint=", or a model directory with a config.json")


# -- token classification (URSA-RM's reading) -------------------------------------------------------------
def _answer_of(item: PRMInput) -> str | None:
    """The answer line of an item's solution: its answer, unless the answer is the only step."""
    if item.answer is None or not any(s.strip() for s in item.steps):
        return None
    return item.answer


def tagged_solution(steps: Sequence[str], answer: str | None, tag: str | None = None) -> str:
    """A solution in URSA's format with the step tag at the end of every step.

    ``Step k: <step><tag>`` lines, then ``†Answer: <answer>`` when there is an answer. This is the text of
    ``tag_steps(format_steps(steps, answer), tag)`` (URSA's ``replace_specific_plus_minus_with_ki``) whenever the
    steps mention no ``Step k`` of their own and there is an answer, and differs only where URSA's tagging would
    not give one tag per step: a reference such as ``from Step 2`` inside a step gets no tag (URSA's pattern
    tags it, and its min/mean then include a score read mid-step; 6 of the 200 URSA-8B MathVista responses in
    ``verify/data/ursa`` have one), and without an answer the last step still gets its tag (URSA's leaves it
    untagged and unscored).

    Args:
        steps: the steps' texts (stripped here).
        answer: the final answer, or None.
        tag: the step tag (default :data:`~cotscope.verify._steps.STEP_TAG`).
    """
    from cotscope.verify._steps import STEP_TAG

    t = STEP_TAG if tag is None else tag
    lines = [f"Step {i}: {s.strip()}{t}" for i, s in enumerate(steps, 1)]
    if answer is not None:
        lines.append(f"†Answer: {answer.strip()}")
    return "\n".join(lines)


def prm_text(item: PRMInput, tag: str | None = None) -> str:
    """The whole text a token-classification PRM reads for an item: URSA's instruction, the question, a newline
    and :func:`tagged_solution` of :func:`scored_steps` (``prepare_input`` of URSA's ``prm_infer_score.py``, with
    the tagging of :func:`tagged_solution`)."""
    from cotscope.verify._steps import prm_prompt

    return prm_prompt() + item.question + "\n" + tagged_solution(scored_steps(item), _answer_of(item), tag)


def _fingerprint(model: str) -> str | None:
    """A cheap content fingerprint of a local checkpoint directory (names, sizes, config and the ends of the
    weight files), so retraining into the same directory changes the store key; ``None`` for a Hub id."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        size = f.stat().st_size
        h.update(f"{rel}\x1f{size}\x1e".encode())
        with f.open("rb") as fh:
            if size <= 2 << 20:
                h.update(fh.read())
            else:  # large weight files: their first and last MiB
                h.update(fh.read(1 << 20))
                fh.seek(size - (1 << 20))
                h.update(fh.read(1 << 20))
    return h.hexdigest()


@dataclass
class _Encoded:
    """One item's tokens, or why it has none."""

    ids: list[int] | None = None
    error: str | None = None
    n_steps: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


class TokenClassificationPRM:
    """A token-classification checkpoint scoring each step at its step tag, as URSA-RM does.

    The input is the paper's ``prepare_input`` (:func:`prm_text`): the PRM prompt, the question, a newline, then
    the solution as ``Step k: ...`` lines and ``†Answer: ...`` with the step tag at the end of each step
    (:func:`tagged_solution`; the same text as URSA's ``tag_steps`` whenever neither the question nor a step
    mentions a ``Step k`` of its own and there is an answer). The model's logits
    are read at every position whose token is the tag token, in order; a one-label head gives ``sigmoid(logit)``,
    a two-label head the softmax probability of label 1.

    When the text is longer than ``max_length`` tokens, the start of the question is cut (the end of the
    question, next to the solution, is kept) and the item's notes say how many characters went; when even the
    prompt and the solution alone do not fit, the item is an error, never scored on a cut solution. An item
    whose tag positions do not number its steps (the tag also occurs inside a step, or the tokenizer merges
    it with a neighbour) is an error naming both counts.

    Args:
        model: a Hub id or a local checkpoint path (``HF_HUB_OFFLINE`` is respected by transformers).
        tag: the step tag; the tokenizer must encode it as one token.
        num_labels: 1 (sigmoid) or 2 (softmax, label 1 = correct); default: the checkpoint's ``num_labels``.
        max_length: most tokens per input (default: the tokenizer's limit, capped at 4096).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available).
        dtype: ``float32``, ``bfloat16`` or ``float16`` (``auto``: bfloat16 on cuda, float32 on cpu).
        batch_size: items per forward pass (padded to the longest of the batch).
        chat_template: wrap the input in the tokenizer's chat template as one user turn after the system prompt
            ``You are a helpful assistant.`` (URSA-RM's ``single_inference``); off for encoders.
        tagging: ``per-step`` (default: one tag after every step, :func:`tagged_solution`, so scores line up with
            the steps) or ``paper`` (URSA's ``prepare_input`` exactly: ``tag_steps`` over the whole instruction,
            so a ``Step k`` mentioned inside a step or the question is tagged too and a solution without an answer
            leaves its last step untagged; the scores are every tag read, in order, and need not number the
            steps; the question is never cut, an over-long item is an error).
    """

    name = "token-cls"
    preferred_batch = 256

    def __init__(
        self,
        model: str | None = None,
        *,
        tag: str | None = None,
        num_labels: int | None = None,
        max_length: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        chat_template: bool = False,
        tagging: str = "per-step",
    ) -> None:
        from cotscope.verify._steps import STEP_TAG

        if tagging not in ("per-step", "paper"):
            raise ConfigError(f"PRM token-cls: tagging must be per-step or paper, got {tagging!r}")
        self.tagging = tagging
        if not model:
            raise ConfigError(f"PRM {self.name} needs a checkpoint: model=<Hub id or path>")
        if num_labels not in (None, 1, 2):
            raise ConfigError(f"PRM {self.name}: num_labels must be 1 (sigmoid) or 2 (softmax), got {num_labels!r}")
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"PRM {self.name}: dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        if max_length is not None and max_length < 8:
            raise ConfigError(f"PRM {self.name}: max_length must be at least 8, got {max_length}")
        if batch_size < 1:
            raise ConfigError(f"PRM {self.name}: batch_size must be at least 1, got {batch_size}")
        self.model_name = str(model)
        self.tag = STEP_TAG if tag is None else str(tag)
        if not self.tag.strip():
            raise ConfigError(f"PRM {self.name}: the step tag must contain a visible character, got {self.tag!r}")
        self.num_labels = num_labels
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.chat_template = bool(chat_template)
        self._fingerprint = _fingerprint(self.model_name)
        self._model: Any = None
        self._tok: PreTrainedTokenizerBase | None = None
        self._tag_id: int = -1
        self._limit = 0
        self._labels = 1
        self._torch_device = "cpu"
        self._lock = threading.Lock()

    def config(self) -> dict[str, Any]:
        """Checkpoint, its fingerprint, tag, head and length: what the store key hashes (not device or batch)."""
        return {
            "prm": self.name,
            "model": self.model_name,
            "fingerprint": self._fingerprint,
            "tag": self.tag,
            "num_labels": self.num_labels,
            "max_length": self.max_length,
            "chat_template": self.chat_template,
            "tagging": self.tagging,
            "image": "ignored (text model)",
        }

    # -- loading ----------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch
                from transformers import AutoModelForTokenClassification, AutoTokenizer
            except ImportError as e:  # pragma: no cover - the local extra is missing
                raise ConfigError(
                    f"PRM {self.name} needs torch and transformers (pip install cotscope[local]): {e}"
                ) from None
            try:
                tok = AutoTokenizer.from_pretrained(self.model_name)
                model = AutoModelForTokenClassification.from_pretrained(self.model_name)
            except OSError as e:
                raise ConfigError(f"PRM {self.name}: cannot load {self.model_name!r}: {e}") from None
            ids = tok.encode(self.tag, add_special_tokens=False)
            if len(ids) != 1:
                pieces = tok.convert_ids_to_tokens(ids)
                raise ConfigError(
                    f"PRM {self.name}: the step tag {self.tag!r} is {len(ids)} tokens {pieces} for the tokenizer of "
                    f"{self.model_name!r} ({type(tok).__name__}); it must be exactly one token: choose another tag= "
                    "or add it to the tokenizer"
                )
            labels = int(model.config.num_labels)
            if self.num_labels is not None and self.num_labels != labels:
                raise ConfigError(
                    f"PRM {self.name}: num_labels={self.num_labels} but {self.model_name!r} has a {labels}-label head"
                )
            if labels not in (1, 2):
                raise ConfigError(
                    f"PRM {self.name}: {self.model_name!r} has a {labels}-label head; a PRM head has "
                    "1 (sigmoid) or 2 (softmax) labels"
                )
            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = self.dtype
            if dtype == "auto":
                dtype = "bfloat16" if device.startswith("cuda") else "float32"
            model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
            limit = self.max_length or min(int(getattr(tok, "model_max_length", 4096) or 4096), 4096)
            pos = getattr(model.config, "max_position_embeddings", None)
            if isinstance(pos, int) and pos > 0:
                limit = min(limit, pos)
            self._tok, self._tag_id, self._limit, self._labels = tok, ids[0], limit, labels
            self._torch_device = device
            self._model = model

    # -- building inputs --------------------------------------------------------------------------------
    def _parts(self, item: PRMInput) -> tuple[str, str, str, int]:
        """``(head, question, tail, n_steps)``: the text is ``head + question + tail``."""
        from cotscope.verify._steps import prm_prompt

        steps = scored_steps(item)
        if self.tagging == "paper":
            from cotscope.verify._steps import format_steps, prm_input

            # The whole instruction is tagged as URSA does; the tag count is whatever that gives (-1: unchecked).
            head, question, tail = prm_input(item.question, format_steps(steps, _answer_of(item)), tag=self.tag), "", ""
            n = -1 if steps else 0
        else:
            head, question = prm_prompt(), item.question
            tail = "\n" + tagged_solution(steps, _answer_of(item), self.tag)
            n = len(steps)
        if self.chat_template:
            assert self._tok is not None
            marker = "\x00Q\x00"
            conv = [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": head + marker + tail},
            ]
            full = str(self._tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True))
            head, tail = full.split(marker, 1)
        return head, question, tail, n

    def _ids(self, texts: list[str], special: bool) -> list[list[int]]:
        assert self._tok is not None
        return list(self._tok(texts, add_special_tokens=special, verbose=False)["input_ids"])

    def _encode_all(self, items: Sequence[PRMInput]) -> list[_Encoded]:
        """Every item's token ids (one batched tokenizer call; over-long items are then cut one by one)."""
        parts = [self._parts(it) for it in items]
        special = not self.chat_template
        all_ids = self._ids([h + q + t for h, q, t, _ in parts], special) if parts else []
        return [self._check(p, ids, special) for p, ids in zip(parts, all_ids, strict=True)]

    def _check(self, parts: tuple[str, str, str, int], ids: list[int], special: bool) -> _Encoded:
        head, question, tail, n_steps = parts
        if n_steps == 0:
            return _Encoded(error="nothing to score: no steps and no answer")
        notes: dict[str, Any] = {}
        if len(ids) > self._limit and n_steps < 0:
            return _Encoded(error=f"{len(ids)} tokens, max_length is {self._limit} (the paper's tagging never cuts)")
        if len(ids) > self._limit:
            bare = len(self._ids([head + tail], special)[0])
            if bare > self._limit:
                return _Encoded(
                    error=f"the solution does not fit: the prompt and solution alone are {bare} tokens, "
                    f"max_length is {self._limit}"
                )
            cut = self._cut_question(head, question, tail, special)
            if cut is None:
                return _Encoded(error=f"the solution does not fit in {self._limit} tokens even without the question")
            notes["question_truncated_chars"] = cut
            ids = self._ids([head + question[cut:] + tail], special)[0]
        found = sum(1 for i in ids if i == self._tag_id)
        if n_steps < 0:  # the paper's tagging: every tag read is a score
            return _Encoded(ids=ids, n_steps=found, notes=notes) if found else _Encoded(error="no step tag to read")
        if found != n_steps:
            return _Encoded(
                error=f"{found} step-tag tokens ({self.tag!r}) for {n_steps} steps: the tag occurs inside "
                "the question or a step, or the tokenizer merges it with a neighbour"
            )
        return _Encoded(ids=ids, n_steps=n_steps, notes=notes)

    def _cut_question(self, head: str, question: str, tail: str, special: bool) -> int | None:
        """The fewest leading characters of the question to drop so that the text fits (binary search over
        character cuts; the tokenizer is called O(log n) times, only for over-long items)."""

        def fits(cut: int) -> bool:
            return len(self._ids([head + question[cut:] + tail], special)[0]) <= self._limit

        lo, hi = 1, len(question)
        if not fits(hi):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    # -- scoring ----------------------------------------------------------------------------------------
    def score_sync(self, items: Sequence[PRMInput]) -> list[list[float] | str]:
        """:meth:`score` without the event loop (scripts, benchmarks)."""
        import torch

        self._load()
        assert self._tok is not None
        enc = self._encode_all(items)
        out: list[list[float] | str] = [PRMError(e.error) if e.error else [] for e in enc]
        todo = sorted((i for i, e in enumerate(enc) if e.ids is not None), key=lambda i: len(enc[i].ids or ()))
        pad = int(self._tok.pad_token_id)
        for b in range(0, len(todo), self.batch_size):
            chunk = todo[b : b + self.batch_size]
            width = max(len(enc[i].ids or ()) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                row = enc[i].ids or []
                ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[r, : len(row)] = 1
            with torch.inference_mode():
                logits = self._model(
                    input_ids=ids.to(self._torch_device), attention_mask=mask.to(self._torch_device)
                ).logits.float()
            probs = torch.sigmoid(logits[..., 0]) if self._labels == 1 else torch.softmax(logits, dim=-1)[..., 1]
            at = (ids == self._tag_id) & (mask == 1)
            probs = probs.cpu()
            for r, i in enumerate(chunk):
                vals = [float(v) for v in probs[r][at[r]].tolist()]
                if any(not math.isfinite(v) for v in vals):
                    out[i] = PRMError("the model returned a non-finite score")
                else:
                    out[i] = StepScores(vals, enc[i].notes)
        return out

    async def score(self, items: Sequence[PRMInput]) -> list[list[float] | str]:
        """One score per step of each item (the forward passes run on a worker thread)."""
        return await asyncio.to_thread(self.score_sync, items)

    async def aclose(self) -> None:
        """Drop the model."""
        self._model = None
        self._tok = None


@prm("token-cls")
def _token_cls(model: str | None = None, **options: Any) -> TokenClassificationPRM:
    return TokenClassificationPRM(model, **options)


@prm("local")
def _local(path: str | None = None, **options: Any) -> TokenClassificationPRM:
    if not path:
        raise ConfigError("PRM local needs path=<directory written by cotscope verify train-prm>")
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"PRM local: {p} holds no config.json (a transformers checkpoint directory)")
    m = TokenClassificationPRM(str(p), **options)
    m.name = "local"
    return m


# -- LLM judge ----------------------------------------------------------------------------------------------
def _image_block(image: str) -> dict[str, Any]:
    """An OpenAI-style image block: URLs pass as they are, local files become data URLs."""
    if image.startswith(("http://", "https://", "data:")):
        return {"type": "image_url", "image_url": {"url": image}}
    p = Path(image).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"image {image!r} does not exist")
    mime = mimetypes.guess_type(p.name)[0] or "image/png"
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{mime};base64,{base64.b64encode(p.read_bytes()).decode()}"},
    }


_LABELS = {"correct": 1.0, "incorrect": 0.0, "true": 1.0, "false": 0.0, "+": 1.0, "-": 0.0, "yes": 1.0, "no": 0.0}


def parse_step_scores(raw: str, n_steps: int) -> list[float]:
    """The per-step probabilities in a judge reply: ``{"steps": [p1, ...]}`` (or a bare JSON list).

    Each entry is a number in [0, 1] or a label (``correct``/``incorrect``, ``true``/``false``, ``+``/``-``,
    ``yes``/``no``); the count must equal ``n_steps``.

    Raises:
        ParseError: no such list, a wrong count, or an entry that is neither.
    """
    import json

    from cotscope.judges import parse_json_object

    text = raw.rsplit("</think>", 1)[1] if "</think>" in raw else raw
    text = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    values: Any
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list):
        obj = values if isinstance(values, dict) else parse_json_object(text)
        values = next((obj[k] for k in ("steps", "scores", "step_scores") if k in obj), None)
        if not isinstance(values, list):
            raise ParseError('no "steps" list in the reply')
    if len(values) != n_steps:
        raise ParseError(f"{len(values)} step ratings for {n_steps} steps")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, dict):  # {"step": 1, "score": 0.9} or {"label": "correct"}
            v = next((v[k] for k in ("score", "p", "probability", "label", "correct") if k in v), None)
        if isinstance(v, bool):
            out.append(1.0 if v else 0.0)
        elif isinstance(v, int | float) and math.isfinite(v) and 0.0 <= v <= 1.0:
            out.append(float(v))
        elif isinstance(v, str) and v.strip().lower() in _LABELS:
            out.append(_LABELS[v.strip().lower()])
        else:
            raise ParseError(f"step {i + 1}: {v!r} is neither a probability in [0, 1] nor a correct/incorrect label")
    return out


class LLMJudgePRM:
    """Any generation backend asked to rate every step (``prompts/prm_llm_judge.txt``), through the engine.

    The whole batch goes to the generation engine in one run, so the judge calls share its concurrency limit,
    request cache and fault handling. A reply that cannot be parsed (no list, a wrong number of ratings, a rating
    outside [0, 1]) is an error for that item, never a score; a backend failure is a transient error.

    Args:
        model: ``provider/model`` of the grader model.
        base_url: an OpenAI-compatible server URL.
        max_tokens: the reply budget.
        temperature: sampling temperature (0 for reproducible ratings).
        cache: use the engine's request cache.
        send_images: send an item's image with the prompt (multimodal backends); off: the image is ignored.
    """

    name = "llm-judge"
    preferred_batch = 64

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        cache: bool = True,
        send_images: bool = False,
    ) -> None:
        if not model:
            raise ConfigError(f"PRM {self.name} needs a grader model: model=provider/model")
        self.model_name = model
        self.base_url = base_url
        self.gen = GenerateConfig(temperature=temperature, max_tokens=max_tokens)
        self.use_cache = bool(cache)
        self.send_images = bool(send_images)
        self._model: Model | None = None

    def config(self) -> dict[str, Any]:
        """Grader model, prompt hash, sampling and whether images are sent."""
        return {
            "prm": self.name,
            "model": self.model_name,
            "prompt": prompt_hash(_LLM_PROMPT, package=_PACKAGE),
            "gen": self.gen.model_dump(),
            "image": "sent" if self.send_images else "ignored",
        }

    def messages(self, item: PRMInput) -> list[dict[str, Any]]:
        """The filled prompt as one user message (with the image block when images are sent)."""
        steps = scored_steps(item)
        lines = [f"Step {i}: {s.strip()}" for i, s in enumerate(steps, 1)]
        if item.answer is not None and item.answer.strip() and item.steps and any(s.strip() for s in item.steps):
            lines.append(f"Final answer (not a step; do not rate it): {item.answer.strip()}")
        text = render(
            load_prompt(_LLM_PROMPT, _PACKAGE), question=item.question, steps="\n".join(lines), n_steps=str(len(steps))
        )
        if self.send_images and item.image:
            return [{"role": "user", "content": [{"type": "text", "text": text}, _image_block(item.image)]}]
        return [{"role": "user", "content": text}]

    def backend(self) -> Model:
        """The generation backend, built on first use."""
        if self._model is None:
            self._model = get_model(self.model_name, base_url=self.base_url)
        return self._model

    async def score(self, items: Sequence[PRMInput]) -> list[list[float] | str]:
        """One rating per step of each item; the batch goes to the backend in a single engine run."""
        out: list[list[float] | str] = [PRMError("nothing to score: no steps and no answer")] * len(items)
        todo: list[int] = []
        reqs: list[GenerateRequest] = []
        for i, it in enumerate(items):
            if not scored_steps(it):
                continue
            try:
                msgs = self.messages(it)
            except FileNotFoundError as e:
                out[i] = PRMError(str(e))
                continue
            todo.append(i)
            reqs.append(GenerateRequest(messages=msgs, config=self.gen))
        if not reqs:
            return out
        engine = Engine(self.backend(), None, RequestCache() if self.use_cache else None)
        outs = await engine.run(reqs)
        if len(outs) != len(reqs):
            raise RuntimeError(f"backend returned {len(outs)} outputs for {len(reqs)} requests")
        for i, o in zip(todo, outs, strict=True):
            out[i] = self._parse(o, len(scored_steps(items[i])))
        return out

    @staticmethod
    def _parse(o: ModelOutput, n_steps: int) -> list[float] | str:
        if o.error:
            return PRMError(f"backend error: {o.error}", transient=True)
        reply = o.answer if (o.answer or o.reasoning) else o.text
        try:
            return StepScores(parse_step_scores(reply, n_steps), {"raw": o.text or reply})
        except ParseError as e:
            return PRMError(f"unparseable rating: {e}", raw=o.text or reply)

    async def aclose(self) -> None:
        """Close the backend if one was built."""
        if self._model is not None:
            await self._model.aclose()
            self._model = None


@prm("llm-judge")
def _llm_judge(model: str | None = None, **options: Any) -> LLMJudgePRM:
    return LLMJudgePRM(model, **options)
