from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cotscope.traces import segment_steps


def test_paragraphs() -> None:
    r = "First I read the question.\n\nThen I compute 2+2=4.\n\n\nDone."
    steps = segment_steps(r)
    assert [s.text for s in steps] == ["First I read the question.", "Then I compute 2+2=4.", "Done."]
    assert all(r[s.start : s.end] == s.text for s in steps)
    assert [s.index for s in steps] == [0, 1, 2]


def test_step_headers() -> None:
    r = "Step 1: read.\nStep 2: add.\n**Step 3** check"
    steps = segment_steps(r)
    assert [s.text for s in steps] == ["Step 1: read.", "Step 2: add.", "**Step 3** check"]
    assert [s.kind for s in steps][1:] == ["header", "header"]


def test_reflection_markers_are_boundaries() -> None:
    r = "So the answer is 5. Wait, I forgot the carry. Hmm, it is 15.\nBut wait, check again."
    steps = segment_steps(r)
    texts = [s.text for s in steps]
    assert texts == ["So the answer is 5.", "Wait, I forgot the carry.", "Hmm, it is 15.", "But wait, check again."]
    assert [s.kind for s in steps] == ["paragraph", "reflection", "reflection", "reflection"]


def test_marker_inside_word_is_not_boundary() -> None:
    steps = segment_steps("They awaited the result. Waiting is fine.")
    assert len(steps) == 1


def test_empty_reasoning() -> None:
    assert segment_steps("") == []
    assert segment_steps("  \n\n ") == []


@given(st.text(max_size=300))
def test_spans_cover_text_in_order(text: str) -> None:
    steps = segment_steps(text)
    prev = 0
    for s in steps:
        assert prev <= s.start < s.end <= len(text)
        assert text[s.start : s.end] == s.text == s.text.strip()
        prev = s.end
    # Every non-space character lies in some step.
    covered = sum(len(s.text.replace(" ", "").replace("\n", "")) for s in steps)
    assert covered <= len(text)
    if text.strip():
        assert steps
