"""URSA's annotation engines with scripted models: BEL finds a known first error in O(log n) prefix checks, MIE labels
a scripted rewrite; both resumable in the store, rollouts through the request cache."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import pytest

from cotscope.errors import ConfigError
from cotscope.models import GenerateRequest, ModelOutput
from cotscope.pipeline._annotate import (
    ANNOTATION_KIND,
    annotate,
    annotate_bel,
    annotate_mie,
    annotation_examples,
)
from cotscope.store import Store
from cotscope.traces import Message, Trace
from cotscope.verify._annotate import (
    AnnotateItem,
    BinaryErrorLocator,
    MisinterpretationInserter,
    bel_max_calls,
    labels_from_first_error,
)
from cotscope.verify._steps import format_steps

GOLD = "42"


def _prefix_steps(req: GenerateRequest) -> int:
    """How many complete steps a BEL completion request carries (prefill mode: the prefill ends with the next
    step's header; prompt mode: the prompt names the next step)."""
    if req.prefill:
        return len(re.findall(r"Step \d+:", req.prefill)) - 1
    m = re.search(r"Continue the solution from Step (\d+)", str(req.messages[-1]["content"]))
    assert m is not None
    return int(m.group(1)) - 1


def _reach_before(first_error: dict[str, int]) -> Any:
    """A policy that reaches the gold answer from a prefix only when the prefix ends before the solution's first
    error (a question's first error is looked up by a word of the question)."""

    def reply(req: GenerateRequest) -> str:
        text = " ".join(str(m["content"]) for m in req.messages)
        e = next(v for k, v in first_error.items() if k in text)
        k = _prefix_steps(req)
        # Half the rollouts reach it from a good prefix (index 1 and 3), so one hit among several is needed.
        good = k <= e and req.sample_index % 2 == 1
        return f"Step {k + 1}: then we are done.\n†Answer: {GOLD if good else '7'}"

    return reply


def _item(word: str, n: int, answer: str = "7") -> AnnotateItem:
    return AnnotateItem(question=f"Problem {word}: what is six times seven?", steps=[f"step {i} of {word}"
                        for i in range(1, n + 1)], answer=answer, gold=GOLD, key=word)


def test_labels_from_first_error() -> None:
    assert labels_from_first_error(4, None) == [1, 1, 1, 1]
    assert labels_from_first_error(4, 0) == [0, 0, 0, 0]
    assert labels_from_first_error(4, 2) == [1, 1, 0, 0]
    with pytest.raises(ValueError):
        labels_from_first_error(3, 3)
    assert [bel_max_calls(n, 8) for n in (1, 2, 3, 4, 5, 8, 9)] == [0, 8, 16, 16, 24, 24, 32]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_bel_finds_every_first_error_in_log_n_checks(fake: Any, n: int) -> None:
    cases = {f"w{e}z": e for e in range(n)}
    name = fake.model(f"bel{n}", _reach_before(cases))
    bel = BinaryErrorLocator(name, rollouts=4, cache=None)
    items = [_item(w, n) for w in cases]
    res = asyncio.run(bel.annotate(items))
    for a, (_, e) in zip(res, cases.items(), strict=True):
        assert a.parse_error is None and a.error is None
        assert a.first_error == e
        assert a.labels == [1] * e + [0] * (n - e)
        assert a.final_correct is False
        assert a.calls == 4 * len(a.checks) <= bel_max_calls(n, 4)
        assert len(a.checks) <= math.ceil(math.log2(n)) if n > 1 else not a.checks
    assert len(fake.calls(f"bel{n}")) == sum(a.calls for a in res)


def test_bel_right_answers_cost_nothing_and_unlabellable_items_say_why(fake: Any) -> None:
    name = fake.model("belr", lambda r: pytest.fail("no completion expected"))
    bel = BinaryErrorLocator(name, rollouts=3, cache=None)
    items = [_item("right", 4, answer="42"), AnnotateItem("q", [], "7", GOLD), AnnotateItem("q", ["s"], "7", None)]
    right, empty, nogold = asyncio.run(bel.annotate(items))
    assert right.labels == [1, 1, 1, 1] and right.first_error is None and right.calls == 0 and right.final_correct
    assert empty.parse_error == "no steps to label" and nogold.parse_error == "no gold answer"


def test_bel_requests_continue_the_prefix(fake: Any) -> None:
    item = _item("x", 3)
    item.messages = [{"role": "user", "content": "solve it"}]
    reqs = BinaryErrorLocator("fakejudge/none", rollouts=3, seed=10, cache=None).requests(item, 2)
    assert [r.sample_index for r in reqs] == [0, 1, 2] and [r.config.seed for r in reqs] == [10, 11, 12]
    assert reqs[0].messages == item.messages
    assert reqs[0].prefill == format_steps(item.steps[:2], None) + "\nStep 3:"
    prompt = BinaryErrorLocator("fakejudge/none", rollouts=1, mode="prompt", cache=None).requests(item, 2)[0]
    text = prompt.messages[0]["content"]
    assert prompt.prefill == "" and item.question in text and "Step 2: step 2 of x" in text and "Step 3" in text
    with pytest.raises(ConfigError):
        BinaryErrorLocator("fakejudge/none", mode="chat")
    with pytest.raises(ConfigError):
        BinaryErrorLocator("fakejudge/none", rollouts=0)


def test_bel_prompt_mode_finds_the_same_error(fake: Any) -> None:
    name = fake.model("belp", _reach_before({"wp": 3}))
    a = asyncio.run(BinaryErrorLocator(name, rollouts=2, mode="prompt", cache=None).annotate([_item("wp", 6)]))[0]
    assert a.first_error == 3 and all(r.prefill == "" for r in fake.calls("belp"))


def test_a_failed_rollout_is_an_error_not_a_label(fake: Any) -> None:
    name = fake.model("belf", lambda r: ModelOutput(error="HTTP 500"))
    a = asyncio.run(BinaryErrorLocator(name, rollouts=2, cache=None).annotate([_item("f", 4)]))[0]
    assert a.error and "HTTP 500" in a.error and a.labels == []


# -- the store --------------------------------------------------------------------------------------------------
def _trace(word: str, n: int, answer: str, sample: int = 0) -> Trace:
    steps = [f"{word} step {i}" for i in range(1, n + 1)]
    return Trace(prompt=[Message(role="user", content=f"Solve problem {word}.")],
                 answer=format_steps(steps, answer), model="m", strategy="normal", sample_index=sample,
                 metadata={"gold": GOLD})


def _store(tmp_path: Path, name: str = "s.duckdb") -> Store:
    st = Store(tmp_path / name)
    st.add_traces([_trace("alpha", 6, "7"), _trace("beta", 4, "7"), _trace("gamma", 3, GOLD),
                   Trace(prompt=[Message(role="user", content="Solve problem delta.")], answer="no steps at all",
                         model="m", strategy="normal")])
    return st


def test_bel_through_the_store_resumes_and_hits_the_cache(fake: Any, tmp_path: Path) -> None:
    name = fake.model("bels", _reach_before({"alpha": 2, "beta": 0, "gamma": 0, "delta": 0}))
    with _store(tmp_path) as st:
        s1 = asyncio.run(annotate_bel(st, name, rollouts=4))
        assert (s1.total, s1.stored, s1.labelled, s1.all_correct, s1.errors) == (4, 4, 3, 1, 0)
        assert s1.first_errors == {"3": 1, "1": 1}
        assert s1.parse_errors == 1  # delta: no gold answer
        calls = len(fake.calls("bels"))
        assert calls == s1.calls == 4 * (3 + 2)  # alpha: 6 steps, 3 checks; beta: 4 steps, 2 checks
        res = {r["trace_id"]: r for r in st.results("ursa-bel")}
        by_word = {t.answer.split()[2]: t.id for t in st.traces()}
        alpha = res[by_word["alpha"]]
        assert alpha["details"]["step_labels"] == [1, 1, 0, 0, 0, 0] and alpha["details"]["first_error"] == 2
        assert alpha["label"] is None and alpha["score"] == pytest.approx(2 / 6) and alpha["kind"] == ANNOTATION_KIND
        assert [c["prefix"] for c in alpha["details"]["checks"]] == [3, 1, 2]
        assert res[by_word["gamma"]]["details"]["step_labels"] == [1, 1, 1]
        # A rerun skips every stored trace and makes no call.
        s2 = asyncio.run(annotate_bel(st, name, rollouts=4))
        assert (s2.skipped, s2.stored, s2.calls) == (4, 0, 0) and len(fake.calls("bels")) == calls
        # Other settings are another key: labelled again.
        s3 = asyncio.run(annotate_bel(st, name, rollouts=2))
        assert s3.stored == 4 and s3.config_hash != s1.config_hash
        ex, skipped = annotation_examples(st, "bel", config_hash=s1.config_hash)
        assert sorted(len(e.labels) for e in ex) == [3, 4, 6] and skipped == {"parse error": 1}
        a_ex = next(e for e in ex if e.id == by_word["alpha"])
        assert a_ex.steps == [f"alpha step {i}" for i in range(1, 7)] and a_ex.answer == "7"
        assert a_ex.question == "Solve problem alpha." and a_ex.source == "bel"
    # The same traces in a fresh store: every rollout comes from the request cache, none reaches the model.
    n_before = len(fake.calls("bels"))
    with _store(tmp_path, "fresh.duckdb") as st2:
        s4 = asyncio.run(annotate_bel(st2, name, rollouts=4))
    assert s4.calls == 20 and s4.cached == 20 and len(fake.calls("bels")) == n_before


def test_bel_limit_and_trace_ids(fake: Any, tmp_path: Path) -> None:
    name = fake.model("bell", _reach_before({"alpha": 1, "beta": 1, "gamma": 0, "delta": 0}))
    with _store(tmp_path) as st:
        ids = sorted(st.trace_ids())
        s = asyncio.run(annotate(st, "bel", name, rollouts=2, trace_ids=ids[:2]))
        assert s.total == 2
        s = asyncio.run(annotate(st, "bel", name, rollouts=2, limit=1))
        assert s.stored == 1 and s.skipped == 2
        with pytest.raises(ConfigError):
            asyncio.run(annotate(st, "mcts", name))


def _rewrite(at_override: int | None = None, keep_gold: bool = False, same: bool = False, append: bool = False,
             no_answer: bool = False) -> Any:
    def reply(req: GenerateRequest) -> str:
        text = str(req.messages[-1]["content"])
        at = int(re.search(r"starting at Step (\d+)", text).group(1)) - 1  # type: ignore[union-attr]
        if at_override is not None:
            at = at_override
        orig = re.findall(r"^Step \d+: (.*)$", text.split("Correct solution:")[1], re.M)
        if same:
            return format_steps(orig, GOLD)
        if append:
            return format_steps([*orig, "and then 13"], "13")
        new = orig[:at] + [f"misread {s}" for s in orig[at:]]
        return format_steps(new, None if no_answer else GOLD if keep_gold else "13")

    return reply


def test_mie_labels_from_the_insertion_point(fake: Any) -> None:
    name = fake.model("mie", _rewrite())
    mie = MisinterpretationInserter(name, seed=3, cache=None)
    items = [_item(f"m{i}", 5, answer=GOLD) for i in range(6)]
    res = asyncio.run(mie.annotate(items))
    assert len({a.inserted_at for a in res}) > 1  # the insertion step is drawn per item
    for a, it in zip(res, items, strict=True):
        assert a.parse_error is None and a.first_error == a.inserted_at
        assert a.labels == labels_from_first_error(5, a.inserted_at)
        assert a.steps[: a.inserted_at] == it.steps[: a.inserted_at] and a.answer == "13"
        assert a.steps[a.inserted_at] == "misread " + it.steps[a.inserted_at]
        assert a.calls == 1 and a.final_correct is False
    assert [a.inserted_at for a in asyncio.run(mie.annotate(items))] == [a.inserted_at for a in res]


@pytest.mark.parametrize(("reply", "why"), [
    (_rewrite(same=True), "repeats the original"),
    (_rewrite(keep_gold=True), "still reaches the gold answer"),
    (lambda r: "I cannot do that.", "no Step k: lines"),
    (_rewrite(append=True), "only appends steps"),
    (_rewrite(no_answer=True), "no final answer"),
])
def test_mie_rejects_unusable_rewrites(fake: Any, reply: Any, why: str) -> None:
    name = fake.model("mier", reply)
    a = asyncio.run(MisinterpretationInserter(name, cache=None).annotate([_item("r", 4, answer=GOLD)]))[0]
    assert a.parse_error is not None and why in a.parse_error and a.labels == []


def test_mie_rejects_a_rewrite_departing_too_early(fake: Any) -> None:
    name = fake.model("miee", _rewrite(at_override=0))
    mie = MisinterpretationInserter(name, first_step=2, cache=None)
    a = asyncio.run(mie.annotate([_item("e", 4, answer=GOLD)]))[0]
    assert a.inserted_at is not None and a.inserted_at >= 2
    assert a.parse_error is not None and "departs from the original at step 1" in a.parse_error


def test_mie_through_the_store_takes_correct_solutions_only(fake: Any, tmp_path: Path) -> None:
    name = fake.model("mies", _rewrite())
    with _store(tmp_path) as st:
        s = asyncio.run(annotate_mie(st, name))
        assert (s.total, s.stored, s.labelled, s.not_correct) == (1, 1, 1, 3) and s.calls == 1
        (r,) = st.results("ursa-mie")
        det = r["details"]
        assert det["steps"][det["first_error"]].startswith("misread") and det["answer"] == "13"
        ex, _ = annotation_examples(st, "mie")
        assert ex[0].steps == det["steps"] and ex[0].labels == det["step_labels"] and ex[0].source == "mie"
        assert asyncio.run(annotate_mie(st, name)).skipped == 1 and len(fake.calls("mies")) == 1
        both, _ = annotation_examples(st)
        assert len(both) == 1
