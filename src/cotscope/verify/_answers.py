"""Math answer extraction and checking: the final answer of a solution, and whether two answers agree.

:func:`extract_answer` finds the final answer the way URSA's scorer does; :func:`answers_match` decides whether a
predicted answer equals a gold one (numbers, fractions, LaTeX, units, multiple-choice letters);
:func:`normalize_answer` is the key that majority vote groups answers by.

Equivalences that :func:`answers_match` knows (each has a test, and so does a near miss that must not match):

- case, surrounding whitespace, a trailing full stop, answer labels (``Answer:``, ``The answer is``), quotes,
  markdown bold (``**A**``) and code marks;
- wrappers: ``\\boxed{x}`` / ``\\fbox{x}`` (the last one), ``$x$``, ``\\(x\\)``, ``\\[x\\]``, ``\\text{x}``,
  ``\\mathrm{x}``, ``\\textbf{x}``, ``\\mathbf{x}``, ``\\left``/``\\right``, LaTeX spacing (``\\,`` ``\\;`` ``~``);
- numbers: integers, decimals, thousands separators (``1,000``), signs (including the Unicode minus), fractions
  ``a/b``, ``\\frac{a}{b}``, ``\\dfrac``, ``\\tfrac``, scientific ``1.5e3``; equal when within a relative 1e-6 of the
  gold value, or, when the gold has decimals, equal after rounding the prediction half-up to the gold's number of
  decimals (gold ``1.2`` accepts ``1.23``; an integer gold is never rounded to, so gold ``3`` rejects ``3.4``);
- number words ``zero`` to ``twenty`` and the tens to ``ninety`` (``two`` equals ``2``, as in ``two apples``);
- percent: ``50%`` equals ``50`` (the sign stripped like a unit) and ``0.5`` (its value);
- units after a number are stripped: ``cm``, ``°``, ``^\\circ``, ``m/s``, ``\\mathrm{~kg}``, ``cm^2``, words
  (``6 apples``); at most three unit words, none with a digit that is not an exponent, so ``2 or 3`` stays text;
- a single variable named before the value: ``x = 5`` equals ``5``;
- multiple choice: ``A``, ``(A)``, ``A.``, ``A)``, ``Option A``, ``(A) 145°`` name the first choice; with
  ``choices`` a letter and the choice's text are the same answer, whichever side gives which.

Not known (answers that differ only in these do not match): algebraic expressions (``2x`` vs ``x*2``), ``\\pi``
and roots as numbers, sets and lists, mixed numbers (``1 1/2``), ``\\times 10^{k}`` notation, intervals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from fractions import Fraction

__all__ = ["answers_match", "extract_answer", "normalize_answer"]

_UNUSED_TOKEN = "[UNUSED_TOKEN_145]"
# URSA's keyword alternation (prm_infer_score.py, extract_answer_try_all_methods); cotscope adds a word boundary
# before each keyword so that "also," does not count as "so,".
_KEYWORDS = r"†Answer:|†Answer|answer:|Answer:|therefore,|so,|Therefore,|So,|Thus,|thus,"
_KEYWORD_SPANS = re.compile(
    rf"(?<![A-Za-z])({_KEYWORDS})([\s\S]*?)(?=(?<![A-Za-z])(?:answer:|Answer:|therefore,|so,|Therefore,|So,|Thus,|thus,)|$)"
)
_LABEL = re.compile(
    r"^\s*(?:†\s*)?(?:(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)\b\s*(?:is\s*)?[:：]?\s*)",
    re.IGNORECASE,
)


def _located_answer(text: str) -> str | None:
    """URSA's answer location, or None when it finds no marker (URSA then returns the whole text)."""
    s = text.replace(_UNUSED_TOKEN, "")
    if not s:
        return None
    dagger = s.rfind("†")
    if dagger != -1:
        return _strip_label(s[dagger + 1 :])
    matches = _KEYWORD_SPANS.findall(s)
    if matches:
        return _strip_label(matches[-1][1])
    return None


def _strip_label(s: str) -> str:
    """Drop a leading ``Answer:`` label (URSA's extraction keeps it: ``†Answer: C`` gives ``Answer: C``)."""
    s = s.strip()
    m = re.match(r"(?i)answer\s*[:：]", s)
    return s[m.end() :].strip() if m else s


def extract_answer(text: str) -> str:
    """The final answer of a solution, located as URSA's scorer does.

    Follows ``extract_answer_try_all_methods`` of URSA's ``inference/prm_infer_score.py``: the text after the last
    ``†`` if there is one; else the span after the last of the keywords ``†Answer:``, ``answer:``, ``Answer:``,
    ``therefore,``, ``so,``, ``thus,`` (and capitalised forms) up to the next keyword or the end; else the whole
    text, stripped. Three deliberate differences: a leading ``Answer:`` label is dropped (URSA returns
    ``Answer: C`` for ``†Answer: C``; the ``extraction`` column of its outputs shows it), a keyword must not
    follow a letter (URSA's pattern finds ``so,`` inside ``also,``), and when no marker is found the content of
    the last ``\\boxed{}`` is returned before falling back to the whole text (the generation script
    ``inference/vllm_infer.py`` tries ``\\boxed{}`` first).

    Args:
        text: a model's solution.

    Returns:
        The answer text, stripped; ``""`` for an empty solution.
    """
    located = _located_answer(text)
    if located is not None:
        return located
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    return text.replace(_UNUSED_TOKEN, "").strip()


def _last_boxed(s: str) -> str | None:
    """The content of the last ``\\boxed{...}`` or ``\\fbox{...}``, braces balanced; None when there is none."""
    start = max(s.rfind("\\boxed{"), s.rfind("\\fbox{"))
    if start == -1:
        return None
    i = s.index("{", start) + 1
    depth = 1
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i:j]
    return s[i:]  # unbalanced: everything after the brace


# ---------------------------------------------------------------------------------------------------- cleaning

_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|operatorname|mbox)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")
_SPACING = re.compile(r"\\[,;:! ]|\\quad|\\qquad")
# "x = 5", "d_1 = 3 cm": a single (possibly subscripted) variable named before the value.
_ASSIGNMENT = re.compile(r"^\$?\s*[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=\S)")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")


_PLAIN_NUMBER = re.compile(r"[-+]?[\d.,]+")


def _frac(m: re.Match[str]) -> str:
    """``\\frac{a}{b}`` as ``a/b`` (parenthesised unless both parts are plain numbers)."""
    num, den = m.group(1).strip(), m.group(2).strip()
    plain = _PLAIN_NUMBER.fullmatch(num) and _PLAIN_NUMBER.fullmatch(den)
    return f"{num}/{den}" if plain else f"({num})/({den})"


def _clean(text: str) -> str:
    """An answer without labels, wrappers and LaTeX decoration, lower case, single-spaced."""
    s = text.replace(_UNUSED_TOKEN, "").strip()
    boxed = _last_boxed(s)
    if boxed is not None:
        s = boxed
    s = re.sub(r"\*\*|__|`", "", s)  # markdown bold and code
    s = _LABEL.sub("", s, count=1)
    s = re.sub(r"\$+([^$]*)\$+", r"\1", s)  # $x$, $$x$$
    s = s.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    s = _ASSIGNMENT.sub("", s.strip(), count=1)
    s = _DEGREE.sub("°", s)
    s = _SPACING.sub(" ", s)
    for _ in range(3):  # nested \text{\mathrm{..}}
        new = _WRAPPERS.sub(r"\1", s)
        if new == s:
            break
        s = new
    s = _FRAC.sub(_frac, s)
    s = _FRAC_SHORT.sub(r"\1/\2", s)
    s = re.sub(r"\\left|\\right", "", s)
    s = s.replace("\\%", "%").replace("~", " ").replace("−", "-").replace("–", "-")
    s = re.sub(r"\s+", " ", s).strip()
    s = s.strip("\"'`“”‘’")
    s = s.rstrip(".。").strip()
    return s.lower()


# ----------------------------------------------------------------------------------------------------- numbers

_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?|[-+]?\.\d+(?:e[-+]?\d+)?"
_NUMBER = re.compile(rf"^\(?({_NUM})\)?(?:\s*/\s*\(?({_NUM})\)?)?")
_UNIT_WORD = r"(?:[a-zµμ°%²³]+(?:\^\{?-?\d+\}?|[²³])?|°|%)"
_UNIT = re.compile(rf"^(?:\s*(?:/\s*)?{_UNIT_WORD}){{0,3}}\s*$")


_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
_WORDS += ["twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_TENS = ["thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUES = {w: i for i, w in enumerate(_WORDS)} | {w: 10 * k for k, w in enumerate(_TENS, 3)}
_WORD_NUMBER = re.compile(r"^([a-z]+)\b")


class _Number:
    """A parsed numeric answer: its exact value, its decimals as written, whether it carried a percent sign."""

    __slots__ = ("decimals", "percent", "value")

    def __init__(self, value: Fraction, decimals: int | None, percent: bool) -> None:
        self.value = value
        self.decimals = decimals  # decimals of a plain decimal number; None for fractions and integers
        self.percent = percent


def _to_fraction(token: str) -> Fraction:
    return Fraction(Decimal(token.replace(",", "")))


def _parse_number(s: str) -> _Number | None:
    """A number (integer, decimal, fraction, thousands separators) with an optional unit after it; else None."""
    s = s.strip()
    if s.startswith(("$", "£", "€")):
        s = s[1:].strip()
    m = _NUMBER.match(s)
    if not m:
        w = _WORD_NUMBER.match(s)
        if w and w.group(1) in _WORD_VALUES and _UNIT.match(s[w.end() :]):
            return _Number(Fraction(_WORD_VALUES[w.group(1)]), None, False)
        return None
    rest = s[m.end() :]
    if not _UNIT.match(rest):
        return None
    try:
        num = _to_fraction(m.group(1))
        if m.group(2) is not None:
            den = _to_fraction(m.group(2))
            if den == 0:
                return None
            value = num / den
            decimals = None
        else:
            value = num
            token = m.group(1).lower().split("e")[0]
            decimals = len(token.split(".")[1]) if "." in token and "e" not in m.group(1).lower() else None
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    return _Number(value, decimals, "%" in rest or "percent" in rest)


def _numbers_equal(pred: _Number, gold: _Number) -> bool:
    preds = [pred.value] + ([pred.value / 100] if pred.percent else [])
    golds = [gold.value] + ([gold.value / 100] if gold.percent else [])
    for p in preds:
        for g in golds:
            if abs(p - g) <= Fraction(1, 10**6) * abs(g) or (g == 0 and abs(p) <= Fraction(1, 10**9)):
                return True
            if gold.decimals and g is gold.value and _rounds_to(p, g, gold.decimals):
                return True
    return False


def _rounds_to(p: Fraction, g: Fraction, decimals: int) -> bool:
    with localcontext() as ctx:
        ctx.prec = 60
        q = Decimal(1).scaleb(-decimals)
        pd = (Decimal(p.numerator) / Decimal(p.denominator)).quantize(q, rounding=ROUND_HALF_UP)
        gd = (Decimal(g.numerator) / Decimal(g.denominator)).quantize(q, rounding=ROUND_HALF_UP)
    return pd == gd


# ------------------------------------------------------------------------------------------- multiple choice

_LETTER_FORMS = (
    re.compile(r"^(?:option|choice)\s*\(?([a-z])\)?$"),  # option a, choice (a)
    re.compile(r"^\(([a-z])\)(?:\s*.*)?$", re.DOTALL),  # (a), (a) 145°
    re.compile(r"^([a-z])(?:[.:)](?:\s+.*)?)?$", re.DOTALL),  # a, a), a: text, a. text
)


def _letter(cleaned: str) -> str | None:
    """The choice letter a cleaned answer names (``a``, ``(a)``, ``a)``, ``option a``, ``(a) 145°``); else None."""
    for pattern in _LETTER_FORMS:
        m = pattern.match(cleaned)
        if m:
            return m.group(1)
    return None


def _choice_index(answer: str, choices: Sequence[str]) -> int | None:
    """Which choice an answer names: the choice whose text it equals, else the choice its letter names."""
    cleaned = _clean(answer)
    key = _key(cleaned)
    by_text = [i for i, c in enumerate(choices) if _key(_clean(c)) == key]
    if len(by_text) == 1:
        return by_text[0]
    letter = _letter(cleaned)
    if letter is not None:
        idx = ord(letter) - ord("a")
        if idx < len(choices):
            return idx
    return by_text[0] if by_text else None


# --------------------------------------------------------------------------------------------------- public


def _key(cleaned: str) -> str:
    num = _parse_number(cleaned)
    if num is not None:
        v = num.value
        if v.denominator == 1:
            return str(v.numerator)
        return format(float(v), ".10g")
    letter = _letter(cleaned)
    if letter is not None:
        return letter
    return re.sub(r"\s+", "", cleaned)


def normalize_answer(text: str, *, choices: Sequence[str] | None = None) -> str:
    """The canonical form of an answer, the key that majority vote groups answers by.

    Numbers become their value (``1,000``, ``1000.0`` and ``\\boxed{1000}`` give ``1000``; ``1/2`` and ``0.5`` give
    ``0.5``; a unit is dropped, so is a percent sign), a bare choice letter its lower-case letter, anything else its
    cleaned text without whitespace. With ``choices``, an answer that names a choice (by letter or by text)
    becomes that choice's letter. Two non-blank answers with the same key match by :func:`answers_match`; the
    converse does not hold for the tolerances (``1.23`` matches gold ``1.2`` but keeps its own key). A blank answer's
    key is ``""``.

    Args:
        text: an answer, e.g. from :func:`extract_answer`.
        choices: the options of a multiple-choice question, in order (A first).
    """
    if choices:
        idx = _choice_index(text, choices)
        if idx is not None:
            return chr(ord("a") + idx)
    return _key(_clean(text))


def answers_match(predicted: str, gold: str, *, choices: Sequence[str] | None = None) -> bool:
    """Whether a predicted answer equals the gold answer (see the module docstring for the equivalences).

    Args:
        predicted: the model's answer, e.g. from :func:`extract_answer`; labels and wrappers are removed here.
        gold: the reference answer (MathVista gives the choice's text for multiple choice).
        choices: the options of a multiple-choice question, in order: a letter then names its option.

    Returns:
        True when they are the same answer; an empty prediction never matches.
    """
    if not _clean(predicted):
        return False
    if choices:
        gi = _choice_index(gold, choices)
        pi = _choice_index(predicted, choices)
        if gi is not None and pi is not None:
            return gi == pi
        if pi is not None:
            return _equivalent(choices[pi], gold)
    return _equivalent(predicted, gold)


def _equivalent(predicted: str, gold: str) -> bool:
    p, g = _clean(predicted), _clean(gold)
    if not p:
        return False
    if p == g or re.sub(r"\s+", "", p) == re.sub(r"\s+", "", g):
        return True
    pn, gn = _parse_number(p), _parse_number(g)
    if pn is not None and gn is not None:
        return _numbers_equal(pn, gn)
    pl, gl = _letter(p), _letter(g)
    if pl is not None and gl is not None:
        return pl == gl
    return False
