"""Synthetic arithmetic problems: exact answers, seeded, the reference solutions parse, the prompt file reads back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cotscope.errors import ConfigError
from cotscope.traces import read_prompts
from cotscope.verify._answers import answers_match, extract_answer
from cotscope.verify._steps import split_steps
from cotscope.verify._synth import (
    OPERATIONS,
    Problem,
    oracle_step_labels,
    problem_messages,
    read_problems,
    synth_problems,
    write_problems,
    write_prompts,
)

_NUM = re.compile(r"\d+")


def _replay(p: Problem) -> int:
    """The answer recomputed from the question's words alone (an independent reading of the text)."""
    sentences = [s.strip() for s in p.question.split(".") if s.strip()]
    v = int(_NUM.findall(sentences[0])[0])
    for s in sentences[1:]:
        if s.endswith("?") or s.startswith("How many"):
            break
        n = [int(x) for x in _NUM.findall(s)]
        if "triples" in s:
            v *= 3
        elif "doubles" in s:
            v *= 2
        elif "shares" in s:
            v //= n[0] + 1
        elif any(w in s for w in ("gives away", "loses", "uses")):
            v -= n[0]
        else:
            v += n[0]
    return v


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_answers_are_exact_and_every_step_is_arithmetic(seed: int) -> None:
    probs = synth_problems(60, seed=seed, ops=(2, 6))
    for p in probs:
        assert _replay(p) == p.answer
        assert p.values[-1] == p.answer and len(p.values) == p.ops == len(p.solution_steps)
        assert all(v >= 0 for v in p.values) and isinstance(p.answer, int)
        # Each reference step states its operation and the value after it, correctly.
        prev = p.start
        for step, v in zip(p.solution_steps, p.values, strict=True):
            a, op, b, c = re.search(r"(\d+) ([-+*/]) (\d+) = (\d+)", step).groups()  # type: ignore[union-attr]
            assert int(a) == prev and int(c) == v
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) / int(b)}[op] == v
            prev = v


def test_seeded_distinct_and_difficulty_in_range() -> None:
    a = synth_problems(40, seed=3, ops=(2, 5))
    assert a == synth_problems(40, seed=3, ops=(2, 5))
    assert a != synth_problems(40, seed=4, ops=(2, 5))
    assert len({p.id for p in a}) == len({p.question for p in a}) == 40
    assert {p.ops for p in a} <= {2, 3, 4, 5} and len({p.ops for p in a}) > 1
    assert {p.ops for p in synth_problems(10, seed=0, ops=6)} == {6}
    easy = synth_problems(30, seed=0, ops=2, small=True, kinds=("add", "sub"))
    assert all(set(p.kinds) <= {"add", "sub"} and p.start <= 12 for p in easy)
    assert set().union(*(p.kinds for p in synth_problems(80, seed=0, ops=(3, 6)))) == set(OPERATIONS)


@pytest.mark.parametrize("bad", [{"ops": 1}, {"ops": (2, 7)}, {"ops": (4, 3)}, {"kinds": ("pow",)}, {"n": -1}])
def test_bad_settings_are_config_errors(bad: dict) -> None:
    kw = {"n": 3, **bad}
    with pytest.raises(ConfigError):
        synth_problems(**kw)


def test_reference_solution_is_ursa_format_with_the_right_answer() -> None:
    for p in synth_problems(20, seed=5, ops=(2, 6)):
        sol = split_steps(p.solution)
        assert sol.fmt == "ursa" and len(sol.steps) == p.ops
        assert answers_match(extract_answer(p.solution), str(p.answer))


def test_prompt_file_reads_back_with_gold_and_question(tmp_path: Path) -> None:
    probs = synth_problems(5, seed=0, ops=2)
    f = write_prompts(probs, tmp_path / "p.jsonl", extra={"split": "train"})
    items, bad = read_prompts(f)
    assert not bad and len(items) == 5
    it, p = items[0], probs[0]
    assert it.messages == problem_messages(p)
    assert it.messages[-1]["role"] == "user" and p.question in it.messages[-1]["content"]
    assert [m["role"] for m in it.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert it.metadata["gold"] == str(p.answer) and it.metadata["question"] == p.question
    assert it.metadata["item_id"] == p.id and it.metadata["split"] == "train"
    assert it.metadata["values"] == " ".join(map(str, p.values))
    one, _ = read_prompts(write_prompts(probs, tmp_path / "q.jsonl", shots=0))
    assert one[0].messages == [{"role": "user", "content": problem_messages(p, shots=0)[0]["content"]}]
    assert read_problems(write_problems(probs, tmp_path / "probs.jsonl")) == probs


def test_oracle_labels_find_the_first_wrong_step() -> None:
    values, start = (7, 5, 15), 4
    good = ["Tom has 4 + 3 = 7 apples.", "He eats 2, so 7 - 2 = 5.", "He triples them: 5 * 3 = 15."]
    assert oracle_step_labels(good, values, start=start) == [1, 1, 1]
    wrong_arith = [good[0], "He eats 2, so 7 - 2 = 6.", "6 * 3 = 18."]
    assert oracle_step_labels(wrong_arith, values, start=start) == [1, 0, 0]
    off_path = [good[0], "He eats 3, so 7 - 3 = 4.", "4 * 3 = 12."]  # right arithmetic, wrong reading
    assert oracle_step_labels(off_path, values, start=start) == [1, 0, 0]
    no_result = ["Tom has 4 apples.", good[0], "The answer is near."]
    assert oracle_step_labels(no_result, values, start=start, answer_correct=False) == [1, 1, 0]
    assert oracle_step_labels(wrong_arith, values, start=start, answer_correct=True) == [1, 1, 1]


def test_oracle_checks_chained_and_written_out_arithmetic() -> None:
    values = (12, 6)
    assert oracle_step_labels(["3 + 4 + 5 = 12 cards.", "12 / 2 = 6."], values, start=3) == [1, 1]
    assert oracle_step_labels(["3 + 4 + 5 = 13 cards.", "13 / 2 = 6.5."], values, start=3) == [0, 0]
    assert oracle_step_labels(["3 x 4 = 12.", "12 ÷ 2 = 6"], values, start=3) == [1, 1]
    # Two operations merged into one step reach a later reference value: still on the path.
    assert oracle_step_labels(["(3 + 9) / 2 gives 12 / 2 = 6."], values, start=3) == [1]
