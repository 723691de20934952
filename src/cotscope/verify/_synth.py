"""Synthetic multi-step arithmetic word problems with exact answers and reference URSA-format solutions.

A problem is a start quantity followed by 2 to 6 operations (add, subtract, multiply by a small factor,
share equally), asked as one question about the final quantity. Every problem carries its reference
solution in URSA's format (one ``Step k:`` line per operation, then ``†Answer: N``) and the value after each
step, so a solution sampled from a model can be checked exactly and its steps labelled by an oracle
(:func:`oracle_step_labels`) at no model cost. Generation is seeded and deterministic; answers are integers.

The problems feed ``cotscope generate`` through a prompt JSONL (:func:`write_prompts`): the instruction plus
the question is the prompt; ``question``, ``gold``, ``item_id``, ``ops``, ``values`` and the reference
``solution`` become trace metadata.
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotscope.errors import ConfigError

__all__ = [
    "OPERATIONS",
    "SOLVE_TEMPLATE",
    "Problem",
    "oracle_step_labels",
    "problem_messages",
    "problem_prompt",
    "read_problems",
    "synth_problems",
    "write_problems",
    "write_prompts",
]

#: The prompt file (``verify/prompts/``) that asks for a solution in URSA's format; ``{question}`` is filled in.
SOLVE_TEMPLATE = "ursa_solve.txt"
#: The worked examples (``verify/prompts/``) shown before the question.
SHOTS_FILE = "ursa_shots.json"

_NAMES = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Emma",
    "Finn",
    "Grace",
    "Hugo",
    "Ivy",
    "Jack",
    "Lena",
    "Max",
    "Nora",
    "Omar",
    "Pia",
    "Sam",
    "Tara",
    "Yusuf",
    "Zoe",
    "Leo",
)
_PRONOUN = {
    "Anna": "she",
    "Carla": "she",
    "Emma": "she",
    "Grace": "she",
    "Ivy": "she",
    "Lena": "she",
    "Nora": "she",
    "Pia": "she",
    "Tara": "she",
    "Zoe": "she",
}
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "stamps", "books", "coins", "shells", "cards")
_FACTOR_WORD = {2: "doubles", 3: "triples"}
#: The operations a problem draws from: add, subtract, multiply by 2 or 3, share equally (exact division).
OPERATIONS: tuple[str, ...] = ("add", "sub", "mul", "div")


@dataclass(frozen=True)
class Problem:
    """One synthetic word problem.

    Attributes:
        id: content-derived id (``syn-`` + a hash of the question).
        question: the word problem.
        answer: the exact integer answer.
        solution_steps: the reference solution, one ``Step k: ...`` line per operation (without the answer line).
        values: the quantity after each step (``values[-1] == answer``).
        ops: the number of operations (the difficulty).
        start: the starting quantity.
    """

    id: str
    question: str
    answer: int
    solution_steps: tuple[str, ...]
    values: tuple[int, ...]
    ops: int
    start: int = 0
    kinds: tuple[str, ...] = field(default_factory=tuple)

    @property
    def solution(self) -> str:
        """The reference solution in URSA's format: the steps, then ``†Answer: N``."""
        return "\n".join(self.solution_steps) + f"\n†Answer: {self.answer}"

    def to_dict(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict (read back by :func:`read_problems`)."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "solution_steps": list(self.solution_steps),
            "values": list(self.values),
            "ops": self.ops,
            "start": self.start,
            "kinds": list(self.kinds),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        """A problem from :meth:`to_dict`'s form."""
        return cls(
            id=str(d["id"]),
            question=str(d["question"]),
            answer=int(d["answer"]),
            solution_steps=tuple(d["solution_steps"]),
            values=tuple(int(v) for v in d["values"]),
            ops=int(d["ops"]),
            start=int(d.get("start", 0)),
            kinds=tuple(d.get("kinds", ())),
        )


def _op_choices(v: int, max_value: int, allowed: frozenset[str]) -> list[str]:
    kinds = ["add"]
    if v > 1:
        kinds.append("sub")
    if v * 2 <= max_value:
        kinds.append("mul")
    if any(v % k == 0 for k in (2, 3, 4)) and v >= 4:
        kinds.append("div")
    return [k for k in kinds if k in allowed] or ["add"]


def _one(rng: random.Random, ops: int, max_value: int, small: bool, allowed: frozenset[str]) -> Problem:
    name = rng.choice(_NAMES)
    he = _PRONOUN.get(name, "he")
    He = he.capitalize()
    item = rng.choice(_ITEMS)
    hi_start, hi_add = (12, 9) if small else (40, 30)
    v = rng.randint(2, hi_start)
    start = v
    sentences = [f"{name} has {v} {item}."]
    steps: list[str] = []
    values: list[int] = []
    kinds: list[str] = []
    for k in range(1, ops + 1):
        kind = rng.choice(_op_choices(v, max_value, allowed))
        lead = f"{name} starts with {v} {item} and" if k == 1 else f"{He}"
        if kind == "add":
            b = rng.randint(1, min(hi_add, max(1, max_value - v)))
            verb = rng.choice(("buys", "finds", "gets"))
            sentences.append(f"{He} {verb} {b} more {item}." if k == 1 else f"Then {he} {verb} {b} more {item}.")
            new = v + b
            steps.append(f"Step {k}: {lead} {verb} {b} more, so {he} has {v} + {b} = {new} {item}.")
        elif kind == "sub":
            b = rng.randint(1, min(hi_add, v - 1))
            verb = rng.choice(("gives away", "loses", "uses"))
            sentences.append(f"Then {he} {verb} {b} {item}.")
            new = v - b
            steps.append(f"Step {k}: {lead} {verb} {b}, so {he} has {v} - {b} = {new} {item}.")
        elif kind == "mul":
            f = rng.choice([x for x in (2, 3) if v * x <= max_value] or [2])
            word = _FACTOR_WORD[f]
            sentences.append(f"Then the number of {item} {he} has {word}.")
            new = v * f
            steps.append(f"Step {k}: {lead} {word} the {item}, so {he} has {v} * {f} = {new} {item}.")
        else:  # div
            f = rng.choice([x for x in (2, 3, 4) if v % x == 0])
            sentences.append(
                f"Then {he} shares the {item} equally with {f - 1} "
                f"{'friend' if f == 2 else 'friends'} and keeps one share."
            )
            new = v // f
            steps.append(
                f"Step {k}: {lead} splits the {item} into {f} equal shares and keeps one, so {he} has "
                f"{v} / {f} = {new} {item}."
            )
        v = new
        values.append(v)
        kinds.append(kind)
    sentences.append(f"How many {item} does {name} have now?")
    question = " ".join(sentences)
    pid = "syn-" + hashlib.md5(question.encode(), usedforsecurity=False).hexdigest()[:12]
    return Problem(
        id=pid,
        question=question,
        answer=v,
        solution_steps=tuple(steps),
        values=tuple(values),
        ops=ops,
        start=start,
        kinds=tuple(kinds),
    )


def synth_problems(
    n: int,
    seed: int = 0,
    ops: tuple[int, int] | int = (2, 5),
    *,
    max_value: int = 200,
    small: bool = False,
    kinds: Sequence[str] = OPERATIONS,
) -> list[Problem]:
    """``n`` distinct synthetic problems, the same for the same arguments.

    Args:
        n: how many problems.
        seed: the random seed.
        ops: the number of operations per problem: an int, or an inclusive range ``(low, high)`` drawn
            uniformly; each between 2 and 6.
        max_value: no intermediate quantity exceeds this (multiplications are skipped when they would).
        small: small numbers (starts up to 12, additions and subtractions up to 9) for weak models.
        kinds: the operations to draw from (:data:`OPERATIONS`); ``("add", "sub")`` for the easiest problems.

    Raises:
        ConfigError: ``n`` negative, ``ops`` outside 2..6, or an unknown operation.
    """
    bad = sorted(set(kinds) - set(OPERATIONS))
    if bad or not kinds:
        raise ConfigError(f"unknown operations {bad or kinds!r}: expected some of {', '.join(OPERATIONS)}")
    allowed = frozenset(kinds)
    lo, hi = (ops, ops) if isinstance(ops, int) else ops
    if not (2 <= lo <= hi <= 6):
        raise ConfigError(f"ops must lie in 2..6 (low <= high), got {ops!r}")
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    if max_value < 20:
        raise ConfigError(f"max_value must be >= 20, got {max_value}")
    rng = random.Random(seed)
    out: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ConfigError(f"could not draw {n} distinct problems with ops={ops!r}; ask for fewer")
        p = _one(rng, rng.randint(lo, hi), max_value, small, allowed)
        if p.id in seen:
            continue
        seen.add(p.id)
        out.append(p)
    return out


def _template(name: str) -> str:
    from cotscope.judges._prompts import load_prompt

    return load_prompt(name, "cotscope.verify")


def problem_prompt(problem: Problem | str, template: str | None = None) -> str:
    """The prompt asking for a URSA-format solution: the template (default :data:`SOLVE_TEMPLATE`) with the question."""
    q = problem.question if isinstance(problem, Problem) else problem
    return (template if template is not None else _template(SOLVE_TEMPLATE)).replace("{question}", q)


def _shots() -> list[dict[str, str]]:
    from cotscope.judges._prompts import load_json

    data: list[dict[str, str]] = load_json(SHOTS_FILE, "cotscope.verify")
    return data


def problem_messages(problem: Problem | str, *, template: str | None = None, shots: int = 2) -> list[dict[str, Any]]:
    """The chat messages asking for a URSA-format solution: ``shots`` worked examples as earlier user and assistant
    turns (``prompts/ursa_shots.json``), then the question in the template.

    Worked examples as turns, rather than inside the last user message, keep the request text that a PRM reads
    (the last user turn) short, and small models follow them better (SmolLM2-135M wrote the format in 44% of
    samples this way against 8-17% with the examples inside one message).

    Raises:
        ConfigError: more shots asked for than are shipped.
    """
    ex = _shots()
    if not 0 <= shots <= len(ex):
        raise ConfigError(f"shots must lie in 0..{len(ex)}, got {shots}")
    tmpl = template if template is not None else _template(SOLVE_TEMPLATE)
    msgs: list[dict[str, Any]] = []
    for s in ex[:shots]:
        msgs += [{"role": "user", "content": problem_prompt(s["question"], tmpl)},
                 {"role": "assistant", "content": s["solution"]}]
    return [*msgs, {"role": "user", "content": problem_prompt(problem, tmpl)}]


def write_prompts(problems: Sequence[Problem], path: str | Path, *, template: str | None = None, shots: int = 2,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write a prompt JSONL that ``cotscope generate --prompts`` reads.

    Each line holds ``messages`` (:func:`problem_messages`: the worked examples, then the instruction with the
    question) or, with ``shots=0``, ``prompt`` (the instruction with the question); and, as trace metadata,
    ``question`` (the bare question), ``gold`` (the exact answer as text: the gold answer the verify stages
    read), ``item_id``, ``ops``, ``start``, ``values`` (the value after each step, space-separated) and
    ``solution`` (the reference solution in URSA's format).

    Args:
        problems: the problems.
        path: the file to write (its folder is created).
        template: the instruction with ``{question}`` (default: the packaged :data:`SOLVE_TEMPLATE`).
        shots: worked examples before the question (0 to 2).
        extra: more metadata on every line (e.g. ``{"split": "train"}``).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for pr in problems:
            rec: dict[str, Any] = {}
            if shots:
                rec["messages"] = problem_messages(pr, template=template, shots=shots)
            else:
                rec["prompt"] = problem_prompt(pr, template)
            rec |= {"question": pr.question, "gold": str(pr.answer), "item_id": pr.id, "ops": pr.ops,
                    "start": pr.start, "values": " ".join(map(str, pr.values)), "solution": pr.solution,
                    **(extra or {})}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return p


def write_problems(problems: Sequence[Problem], path: str | Path) -> Path:
    """Write problems as JSONL in :meth:`Problem.to_dict`'s form."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for pr in problems:
            f.write(json.dumps(pr.to_dict(), ensure_ascii=False) + "\n")
    return p


def read_problems(path: str | Path) -> list[Problem]:
    """Problems written by :func:`write_problems`."""
    from cotscope.errors import DataError
    from cotscope.traces import iter_records

    out = []
    for i, rec in iter_records(path):  # a missing file or a line that is not JSON: named by iter_records
        try:
            out.append(Problem.from_dict(rec))
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(f"{path}:{i}: not a problem ({e})") from None
    return out


_RESULT = re.compile(r"=\s*\$?\s*(-?\d+(?:\.\d+)?)")
_NUMBER = r"\d+(?:\.\d+)?"
# A chain of numbers and operators, then "= result": "7 - 2 = 5", "3 + 4 + 5 = 12", "6 x 2 = 12".
_EXPR = re.compile(rf"((?:{_NUMBER}\s*[-+*/x×÷]\s*)+{_NUMBER})\s*=\s*(-?{_NUMBER})")
_BINOPS: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                            ast.Div: operator.truediv}


def _eval(expr: str) -> float | None:
    """The value of a chain of numbers and + - * / (precedence as usual); None when it cannot be computed."""
    try:
        tree = ast.parse(expr.replace("x", "*").replace("×", "*").replace("÷", "/"), mode="eval")
    except SyntaxError:
        return None

    def ev(n: ast.AST) -> float:
        if isinstance(n, ast.Constant) and isinstance(n.value, int | float):
            return float(n.value)
        if isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
            return float(_BINOPS[type(n.op)](ev(n.left), ev(n.right)))
        raise ValueError("not arithmetic")

    try:
        return ev(tree.body)
    except (ValueError, ZeroDivisionError):
        return None


def _num(s: str) -> float:
    return float(s)


def _arith_ok(step: str) -> bool:
    """Every ``a op b ... = c`` of the step is right (an expression that cannot be computed counts as wrong)."""
    for expr, result in _EXPR.findall(step):
        val = _eval(expr)
        if val is None or abs(val - float(result)) > 1e-9:
            return False
    return True


def oracle_step_labels(steps: Sequence[str], values: Sequence[int], *, start: int | None = None,
                       answer_correct: bool | None = None) -> list[int]:
    """Step labels of a sampled solution from the problem's intermediate values, with no model call.

    A step is incorrect when an ``a op b = c`` in it is wrong, or when the last result it states (the number after
    its last ``=``) is not the reference value reached so far or a later one (steps may merge operations; before
    any value is reached, the start quantity is accepted too); a step stating no result is correct unless an
    earlier one was not. The first incorrect step and every step after it are labelled
    ``0`` (URSA's convention: an error propagates), the steps before it ``1``. When the final answer is known to be
    right, every step is ``1`` (as binary error locating labels right solutions); when it is known to be wrong and
    no step was found wrong, the last step is ``0``.

    An oracle on its own terms, cheaper than Monte-Carlo labels and a yardstick for them, not a general checker:
    it trusts any step that restates a reference value, however it got there.

    Args:
        steps: the solution's steps.
        values: the problem's reference value after each step (:attr:`Problem.values`).
        start: the start quantity (:attr:`Problem.start`).
        answer_correct: whether the solution's final answer matches the gold answer, if known.
    """
    if answer_correct:
        return [1] * len(steps)
    chain = [float(v) for v in values]
    pos = -1  # the reference value reached so far (-1: the start)
    first_bad: int | None = None
    for i, s in enumerate(steps):
        results = _RESULT.findall(s)
        if not _arith_ok(s):
            first_bad = i
            break
        if not results:
            continue
        r = _num(results[-1])
        if pos == -1 and start is not None and r == float(start):
            continue
        # Forward along the chain: the value reached (restated) or a later one (steps may be merged).
        nxt = next((j for j in range(max(pos, 0), len(chain)) if chain[j] == r), None)
        if nxt is None:
            first_bad = i
            break
        pos = nxt
    if first_bad is None and answer_correct is False and steps:
        first_bad = len(steps) - 1
    if first_bad is None:
        return [1] * len(steps)
    return [1] * first_bad + [0] * (len(steps) - first_bad)
