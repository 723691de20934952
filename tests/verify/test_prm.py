"""Process reward models: the token-classification PRM read as URSA-RM is, the LLM-judge PRM, the registry."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from cotscope.errors import ConfigError
from cotscope.models import ModelOutput
from cotscope.verify._prm import (
    LLMJudgePRM,
    PRMError,
    PRMInput,
    StepScores,
    TokenClassificationPRM,
    get_prm,
    parse_step_scores,
    prm_names,
    prm_text,
    scored_steps,
    tagged_solution,
)
from cotscope.verify._steps import STEP_TAG, format_steps, prm_input, split_steps, tag_steps
from cotscope.verify._ursa_data import ursa_mathvista

_spec = importlib.util.spec_from_file_location("prm_fixtures", Path(__file__).parent / "prm_fixtures.py")
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


ITEMS = [
    PRMInput("What is 2 + 3?", ["2 + 3 = 5.", "So the sum is 5."], "5"),
    PRMInput(
        "A train goes 60 km in 1.5 hours. What is its speed?",
        ["Speed is distance over time.", "60 / 1.5 = 40.", "So 40 km/h."],
        "40 km/h",
    ),
    PRMInput("Pick one.", [], "B"),
    PRMInput("Compute 7 * 6 and explain in detail. " * 5, ["7 * 6 = 42."], "42"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixtures.tiny_prm(tmp_path_factory.mktemp("prm") / "tiny")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the text and the tags --------------------------------------------------------------------------------------
def test_tagged_solution_is_ursas_tagging_when_there_is_one_tag_per_step() -> None:
    steps, answer = ["a = 1", "b = a + 1\n\nso b = 2"], "2"
    assert tagged_solution(steps, answer) == tag_steps(format_steps(steps, answer))
    item = PRMInput("What is b?", steps, answer)
    assert prm_text(item) == prm_input("What is b?", format_steps(steps, answer))
    assert tagged_solution(steps, answer).count(STEP_TAG) == 2


def test_tagged_solution_tags_every_step_where_ursas_would_not() -> None:
    # A reference to another step inside a step: URSA's pattern tags it too; cotscope keeps one tag per step.
    steps = ["x = 3", "From Step 1, x + 1 = 4"]
    assert tag_steps(format_steps(steps, "4")).count(STEP_TAG) == 3
    assert tagged_solution(steps, "4").count(STEP_TAG) == 2
    # Without an answer URSA leaves the last step untagged; here it keeps its tag.
    assert tag_steps(format_steps(steps[:1], None)).count(STEP_TAG) == 0
    assert tagged_solution(steps[:1], None) == "Step 1: x = 3" + STEP_TAG


def test_tagging_matches_ursa_on_its_own_outputs() -> None:
    same = differ = 0
    for row in ursa_mathvista():
        sol = split_steps(row.response)
        ours = tagged_solution(sol.steps, sol.answer)
        assert ours.count(STEP_TAG) == len(sol.steps)
        if ours == tag_steps(format_steps(sol.steps, sol.answer)):
            same += 1
        else:
            differ += 1
    # The few that differ mention "Step k" inside a step or have no answer (see tagged_solution).
    assert same >= 190 and same + differ == 200


def test_scored_steps_answer_alone_is_one_step() -> None:
    assert scored_steps(PRMInput("q", ["a", " ", "b"], "c")) == ["a", "b"]
    assert scored_steps(PRMInput("q", [], "c")) == ["c"]
    assert scored_steps(PRMInput("q", [], None)) == []
    assert prm_text(PRMInput("q", [], "c")).endswith("Step 1: c" + STEP_TAG)


# -- token classification -----------------------------------------------------------------------------------------
def _reference(path: Path, item: PRMInput, num_labels: int = 1) -> list[float]:
    """The scores by hand: tokenize the text, run the model, read the tag positions (URSA's single_inference)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForTokenClassification.from_pretrained(str(path)).eval()
    enc = tok(prm_text(item), return_tensors="pt")
    tag_id = tok.encode(STEP_TAG, add_special_tokens=False)
    assert len(tag_id) == 1
    with torch.no_grad():
        logits = model(**enc).logits[0]
    at = enc["input_ids"][0] == tag_id[0]
    if num_labels == 1:
        return torch.sigmoid(logits[at][:, 0]).tolist()
    return torch.softmax(logits[at], dim=-1)[:, 1].tolist()


def test_token_cls_reads_one_sigmoid_score_per_step_at_the_tags(tiny: Path) -> None:
    p = get_prm("token-cls", model=str(tiny), device="cpu")
    out = run(p.score(ITEMS))
    assert [len(o) for o in out] == [2, 3, 1, 1]
    for item, scores in zip(ITEMS, out, strict=True):
        assert isinstance(scores, StepScores) and not isinstance(scores, str)
        assert all(0.0 < s < 1.0 for s in scores)
        assert scores == pytest.approx(_reference(tiny, item), abs=1e-5)
    run(p.aclose())


def test_paper_tagging_reads_every_tag_of_ursas_own_text(tiny: Path) -> None:
    """``tagging=paper``: the text is URSA's ``prepare_input`` exactly, and every tag in it is a score, so a step
    that mentions ``Step 1`` gives an extra score mid-step, as URSA's min/mean include."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from cotscope.verify._steps import format_steps, prm_input

    item = PRMInput(question="What is 2+3?", steps=["Add 2 and 3.", "From Step 1 the sum is 5."], answer="5")
    paper = get_prm("token-cls", model=str(tiny), device="cpu", tagging="paper")
    (got,) = run(paper.score([item]))
    text = prm_input(item.question, format_steps(item.steps, item.answer))
    tok = AutoTokenizer.from_pretrained(str(tiny))
    model = AutoModelForTokenClassification.from_pretrained(str(tiny)).eval()
    enc = tok(text, return_tensors="pt")
    at = enc["input_ids"][0] == tok.encode(STEP_TAG, add_special_tokens=False)[0]
    with torch.no_grad():
        want = torch.sigmoid(model(**enc).logits[0][at][:, 0]).tolist()
    assert len(want) == 3 and got == pytest.approx(want, abs=1e-5)
    (per_step,) = run(get_prm("token-cls", model=str(tiny), device="cpu").score([item]))
    assert len(per_step) == 2  # the default tags each step once
    assert paper.config()["tagging"] == "paper" and paper.config() != get_prm(
        "token-cls", model=str(tiny), device="cpu").config()


def test_two_label_head_gives_the_softmax_probability_of_label_1(tmp_path: Path) -> None:
    d = fixtures.tiny_prm(tmp_path / "two", num_labels=2)
    p = get_prm(str(d), device="cpu")
    out = run(p.score(ITEMS[:2]))
    assert out[0] == pytest.approx(_reference(d, ITEMS[0], num_labels=2), abs=1e-5)
    with pytest.raises(ConfigError, match="num_labels=1 but"):
        run(get_prm(str(d), num_labels=1).score(ITEMS[:1]))


def test_batching_gives_the_same_scores_as_one_by_one(tiny: Path) -> None:
    batched = run(TokenClassificationPRM(str(tiny), batch_size=8, device="cpu").score(ITEMS))
    single = TokenClassificationPRM(str(tiny), batch_size=1, device="cpu")
    one_by_one = [run(single.score([it]))[0] for it in ITEMS]
    for a, b in zip(batched, one_by_one, strict=True):
        assert list(a) == pytest.approx(list(b), abs=1e-5)


def test_long_question_is_cut_from_the_left_and_said_so(tiny: Path) -> None:
    item = PRMInput("filler words here. " * 80 + "What is 2 + 3?", ["2 + 3 = 5."], "5")
    p = TokenClassificationPRM(str(tiny), max_length=64, device="cpu")
    (out,) = run(p.score([item]))
    assert isinstance(out, StepScores) and len(out) == 1
    cut = out.notes["question_truncated_chars"]
    assert 0 < cut < len(item.question)
    # The scores are those of the text with the question's start removed, which fits.
    kept = PRMInput(item.question[cut:], item.steps, item.answer)
    assert list(out) == pytest.approx(_reference(tiny, kept), abs=1e-5)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny))
    assert len(tok(prm_text(kept))["input_ids"]) <= 64
    assert len(tok(prm_text(PRMInput(item.question[cut - 1 :], item.steps, item.answer)))["input_ids"]) > 64
    # A short item in the same batch is not cut.
    short, _ = run(p.score([ITEMS[0], item]))
    assert isinstance(short, StepScores) and not short.notes


def test_a_solution_that_does_not_fit_is_an_error_not_a_score(tiny: Path) -> None:
    item = PRMInput("q?", [f"step number {i} with some words" for i in range(30)], "1")
    (out,) = run(TokenClassificationPRM(str(tiny), max_length=64, device="cpu").score([item]))
    assert isinstance(out, PRMError) and not out.transient
    assert "does not fit" in out and "64" in out


def test_tag_count_that_differs_from_the_steps_is_an_error(tiny: Path) -> None:
    # The tag token in the question itself: one more tag position than steps.
    item = PRMInput("Translate: кот и собака", ["cat and dog"], "cat and dog")
    (out,) = run(TokenClassificationPRM(str(tiny), device="cpu").score([item]))
    assert isinstance(out, PRMError) and "2 step-tag tokens" in out and "1 steps" in out


def test_a_tag_of_several_tokens_is_a_config_error_naming_it(tiny: Path) -> None:
    p = TokenClassificationPRM(str(tiny), tag=" <step>", device="cpu")
    with pytest.raises(ConfigError, match=r"' <step>' is \d tokens .*BertTokenizer"):
        run(p.score(ITEMS[:1]))


def test_a_custom_single_token_tag(tiny: Path) -> None:
    p = TokenClassificationPRM(str(tiny), tag=" ¶", device="cpu")
    out = run(p.score(ITEMS[:2]))
    assert [len(o) for o in out] == [2, 3]
    assert p.config()["tag"] == " ¶"


def test_nothing_to_score_is_an_error(tiny: Path) -> None:
    (out,) = run(TokenClassificationPRM(str(tiny), device="cpu").score([PRMInput("q", [], None)]))
    assert isinstance(out, PRMError) and "nothing to score" in out


# -- registry and identity --------------------------------------------------------------------------------------
def test_registry_names_and_directories(tiny: Path, tmp_path: Path) -> None:
    assert {"token-cls", "llm-judge", "local"} <= set(prm_names())
    local = get_prm(tiny)
    assert local.name == "local" and isinstance(local, TokenClassificationPRM)
    assert local.config()["model"] == str(tiny) and local.config()["image"].startswith("ignored")
    with pytest.raises(ConfigError, match="unknown process reward model 'nope'"):
        get_prm("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"config\.json"):
        get_prm(tmp_path / "empty")
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        get_prm("token-cls")
    with pytest.raises(ConfigError, match="num_labels"):
        get_prm("token-cls", model="x", num_labels=3)


def test_config_changes_when_the_checkpoint_changes(tmp_path: Path) -> None:
    d = fixtures.tiny_prm(tmp_path / "m", seed=0)
    before = get_prm(d).config()
    assert get_prm(d, device="cpu", batch_size=3).config() == before  # device and batch do not change scores
    fixtures.tiny_prm(d, seed=1)  # retrained into the same directory
    assert get_prm(d).config()["fingerprint"] != before["fingerprint"]
    assert get_prm(d, max_length=128).config() != get_prm(d).config()


# -- LLM judge --------------------------------------------------------------------------------------------------
def test_parse_step_scores() -> None:
    assert parse_step_scores('{"steps": [0.9, 0.2]}', 2) == [0.9, 0.2]
    assert parse_step_scores('```json\n{"steps": [1, 0]}\n```', 2) == [1.0, 0.0]
    assert parse_step_scores('Here: {"steps": ["correct", "incorrect", true]}', 3) == [1.0, 0.0, 1.0]
    assert parse_step_scores("<think>hmm</think>[0.5]", 1) == [0.5]
    assert parse_step_scores('{"steps": [{"step": 1, "score": 0.7}]}', 1) == [0.7]
    from cotscope.judges import ParseError

    for bad, n in [
        ('{"steps": [0.9]}', 2),
        ('{"steps": [1.5, 0]}', 2),
        ("no json", 1),
        ('{"other": [1]}', 1),
        ('{"steps": ["maybe"]}', 1),
        ('{"steps": [NaN]}', 1),
    ]:
        with pytest.raises(ParseError):
            parse_step_scores(bad, n)


def test_llm_judge_rates_each_step_through_the_engine(fake: Any) -> None:
    def reply(req: Any) -> Any:
        text = fake.text(req)
        if "FAIL" in text:
            return ModelOutput(error="timeout")
        if "GARBLE" in text:
            return "all good!"
        n = int(text.split("The solution has ", 1)[1].split(" ", 1)[0])
        return json.dumps({"steps": [round(0.9 - 0.1 * i, 2) for i in range(n)]})

    m = fake.model("prm", reply)
    p = get_prm("llm-judge", model=m, cache=False)
    items = [
        ITEMS[1],
        PRMInput("GARBLE?", ["x"], "1"),
        PRMInput("FAIL?", ["x"], "1"),
        PRMInput("q", [], None),
        ITEMS[2],
    ]
    out = run(p.score(items))
    assert out[0] == pytest.approx([0.9, 0.8, 0.7])
    assert isinstance(out[1], PRMError) and not out[1].transient and out[1].raw == "all good!"
    assert isinstance(out[2], PRMError) and out[2].transient and "timeout" in out[2]
    assert isinstance(out[3], PRMError) and "nothing to score" in out[3]
    assert out[4] == pytest.approx([0.9])
    sent = fake.text(fake.calls("prm")[0])
    assert "Step 1: Speed is distance over time." in sent and "Step 3: So 40 km/h." in sent
    assert "Final answer (not a step; do not rate it): 40 km/h" in sent and "exactly 3 entries" in sent
    assert len(fake.calls("prm")) == 4  # the item with nothing to score was not sent
    run(p.aclose())


def test_llm_judge_sends_the_image_only_when_asked(fake: Any, tmp_path: Path) -> None:
    img = tmp_path / "fig.png"
    img.write_bytes(b"\x89PNG fake")
    item = PRMInput("What does the figure show?", ["A circle."], "circle", image=str(img))
    plain = LLMJudgePRM("fakejudge/x")
    assert isinstance(plain.messages(item)[0]["content"], str) and plain.config()["image"] == "ignored"
    multi = LLMJudgePRM("fakejudge/x", send_images=True)
    content = multi.messages(item)[0]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert multi.config() != plain.config()
    fake.model("img", lambda req: '{"steps": [1]}')
    missing = PRMInput("q", ["a"], "1", image=str(tmp_path / "nope.png"))
    (out,) = run(LLMJudgePRM("fakejudge/img", send_images=True, cache=False).score([missing]))
    assert isinstance(out, PRMError) and "does not exist" in out


def test_llm_judge_config_names_the_prompt_and_model() -> None:
    c = LLMJudgePRM("openai/gpt-x").config()
    assert c["model"] == "openai/gpt-x" and len(c["prompt"]) == 12 and math.isclose(c["gen"]["temperature"], 0.0)
    with pytest.raises(ConfigError, match="grader model"):
        LLMJudgePRM(None)
