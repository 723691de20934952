"""The static distillation of MiniLM and the ``-static`` judges that read it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from cotscope.judges import get_judge
from cotscope.judges._local import load_heads
from cotscope.judges._static import StaticEncoder, get_static_encoder, load_static_table
from cotscope.monitors import get_monitor

from .conftest import score_obvious, tr


def test_embeddings_are_unit_norm_sums_of_rows_in_any_batch() -> None:
    enc = get_static_encoder()
    texts = ["The capital of France is Paris.", "", "   ", "17 * 23 = 391", "Paris"]
    emb = enc.encode(texts)
    assert emb.shape == (5, enc.dim) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb[[0, 3, 4]], axis=1), 1.0, atol=1e-5)
    assert not emb[1].any() and not emb[2].any()  # no word piece: zeros, not NaN
    # A text's embedding does not depend on what else is in the batch (a pure lookup and sum).
    for i, t in enumerate(texts):
        assert np.array_equal(enc.encode([t])[0], emb[i])
    # By hand: the normalised sum of the rows of its word pieces (MiniLM's tokenizer lower-cases).
    from cotscope.judges._static import minilm_tokenizer

    ids = minilm_tokenizer().encode("Paris", add_special_tokens=False).ids
    v = enc.table.rows[ids].sum(axis=0)
    assert np.allclose(emb[4], v / np.linalg.norm(v), atol=1e-6)
    assert np.array_equal(enc.encode(["PARIS"])[0], emb[4])
    assert enc.encode([]).shape == (0, enc.dim)


def test_long_texts_are_read_whole() -> None:
    # MiniLM reads 256 word pieces and drops the rest; the static encoder reads every piece.
    head = "Let me add the numbers one by one and check each sum carefully. " * 30
    tail = "Now the instructions for the explosive device follow."
    enc = get_static_encoder()
    a, b = enc.encode([head, head + tail])
    assert float(a @ b) < 1.0 - 1e-4


def test_shipped_table_and_heads_belong_together() -> None:
    # The heads were fitted on one table: its sha is in their metadata, and equals the shipped table's.
    table = load_static_table()
    base = resources.files("cotscope.judges") / "weights"
    with (base / "static_minilm.npz").open("rb") as f:
        z = np.load(f)
        sha = hashlib.sha1(z["q"].tobytes() + z["scale"].tobytes()).hexdigest()[:12]
        assert z["q"].dtype == np.int8 and z["q"].shape == (30522, table.dim)
    assert table.meta["sha"] == sha
    assert (base / "static_minilm.npz").stat().st_size < 8_000_000  # type: ignore[attr-defined]
    heads = load_heads("static")
    assert set(heads) == {"refusal", "harm", "harmful_request"}
    for task, head in heads.items():
        assert head.meta["table"] == sha, task
        assert head.coef.shape == ((3 if task == "harm" else 1) * table.dim,)
    # Same training sources as the MiniLM harm head that ships, so PyRIT stays held out from both.
    assert set(heads["harm"].meta["sources"]) == set(load_heads()["harm"].meta["sources"])
    meta = json.loads((base / "local_heads_static.json").read_text(encoding="utf-8"))
    assert "static distillation" in meta["encoder"]


@pytest.fixture(scope="module")
def judged() -> dict[str, list[float]]:
    return score_obvious(("local-refusal-static", "local-harm-static", "local-harmful-request-static"))


def test_static_judges_rank_obvious_cases(judged: dict[str, list[float]]) -> None:
    r, h, q = judged["local-refusal-static"], judged["local-harm-static"], judged["local-harmful-request-static"]
    assert r[0] > 0.5 > max(r[1:])
    # The harm head ranks the compliance first; its score for it sits near the threshold (0.47 when written),
    # as the MiniLM head's does (0.59): both are first-pass filters (docs/judges.md).
    assert h[2] > 0.4 and h[2] > max(h[0], h[1], h[3])
    assert q[0] > 0.5 > q[1] and q[3] < 0.5


def test_static_judges_and_monitors_are_registered_with_their_encoder_in_the_config() -> None:
    j = get_judge("local-harm-static")
    cfg = j.config()
    assert cfg["encoder"] == {"kind": "static", "table": load_static_table().meta["sha"]}
    assert cfg["head"] == load_heads("static")["harm"].meta["sha"]
    assert "encoder" not in get_judge("local-harm").config()  # MiniLM results keep their store keys
    m = get_monitor("local-harm-static")
    assert m.name == "local-harm-static" and m.label_meaning == "unsafe"
    res = asyncio.run(m.monitor([tr("How do I bake bread?", "Knead the dough.", reasoning="Flour, water, salt.")]))
    assert res[0].score is not None and res[0].evidence and res[0].evidence[0].verified


def test_static_judges_run_without_torch() -> None:
    # The point of the static judges on a serving path: no torch import, no transformer.
    code = ("import sys, asyncio\n"
            "from cotscope.judges import get_judge\n"
            "from cotscope.traces import Message, Trace\n"
            "t = Trace(prompt=[Message(role='user', content='hi')], answer='Hello there.')\n"
            "r = asyncio.run(get_judge('local-harm-static').judge([t], 'answer'))[0]\n"
            "assert r.score is not None\n"
            "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_static_space_keeps_the_teachers_similarities() -> None:
    """Which texts are close in MiniLM's space stays so in the distilled one (a check on the distillation)."""
    from cotscope.judges._local import get_encoder

    texts = ["How do I bake banana bread?", "A recipe for a banana cake, please.",
             "Build a pipe bomb with a steel pipe and black powder.", "How to make an explosive device at home.",
             "The capital of France is Paris.", "Paris is the largest city in France.",
             "I'm sorry, but I can't help with that.", "I cannot assist with this request.",
             "17 * 23 = 391, since 17 * 20 = 340 and 17 * 3 = 51.", "Add the numbers: 12 + 30 = 42."]
    teacher, student = get_encoder().encode(texts), StaticEncoder().encode(texts)
    iu = np.triu_indices(len(texts), 1)
    t_sim, s_sim = (teacher @ teacher.T)[iu], (student @ student.T)[iu]
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    spearman = float(np.corrcoef(rank(t_sim), rank(s_sim))[0, 1])
    assert spearman > 0.6, spearman
    # Each paraphrase pair is nearer to its partner than to any other text, in both spaces.
    for sims in (teacher @ teacher.T, student @ student.T):
        np.fill_diagonal(sims, -1)
        assert all(int(np.argmax(sims[i])) == i ^ 1 for i in range(len(texts)))


@pytest.mark.slow
def test_distillation_reproduces_the_shipped_table() -> None:
    """The recipe (scripts/train_local_monitors.py --encoder static --distill) rebuilds the table that ships."""
    import importlib.util
    from pathlib import Path

    from cotscope.judges._static import StaticTable, distill_static, token_counts

    path = Path(__file__).resolve().parents[2] / "scripts" / "train_local_monitors.py"
    spec = importlib.util.spec_from_file_location("train_local_monitors", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(script)
    finally:
        sys.modules.pop(spec.name, None)
    tasks = {"refusal": script.refusal_examples(), "harm": script.harm_examples(),
             "harmful_request": script.harmful_request_examples()}
    corpus = script.frequency_corpus(tasks)
    # PyRIT's texts are held out from the frequency counts too (the streaming figures are measured on them).
    pyrit = {t for exs in tasks.values() for e in exs if e.source.startswith("pyrit") for t in (e.text, e.request)}
    other = {t for exs in tasks.values() for e in exs if not e.source.startswith("pyrit")
             for t in (e.text, e.request)}
    assert pyrit - other and not (pyrit - other) & set(corpus)
    fresh = distill_static(token_counts(corpus))
    shipped = load_static_table()
    assert shipped.meta["corpus_pieces"] == fresh.meta["corpus_pieces"]
    q = fresh.quantized()
    again = StaticTable.from_quantized(q["q"], q["scale"], {})
    cos = np.sum(again.rows * shipped.rows, axis=1) / (
        np.linalg.norm(again.rows, axis=1) * np.linalg.norm(shipped.rows, axis=1))
    assert np.quantile(cos, 0.001) > 0.99, float(np.quantile(cos, 0.001))
