"""Reasoning tasks with generators, exact solvers, target traces and train/test splits.

Every task produces sequences of the same layout::

    prompt (P tokens, ends with <sep>) | T reasoning steps | answer

At reasoning step t the discrete trace holds one token; CoT2 instead supervises a distribution
alpha*_t over the vocabulary: the empirical distribution of step-t tokens over a set of target traces.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cotscope.cot2._config import GraphConfig, MNNSConfig, TaskConfig

PAD, BOS, SEP, QUERY = "<pad>", "<bos>", "<sep>", "<q>"


@dataclass(frozen=True)
class Vocab:
    """An ordered token list with a reverse index."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        """The id of ``token``."""
        return self.index[token]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Token strings of ``ids``."""
        return [self.tokens[int(i)] for i in ids]


@dataclass
class TaskData:
    """One split of a task as tensors.

    Attributes:
        prompts: ``(N, P)`` token ids; the last prompt token is ``<sep>``.
        answers: ``(N,)`` id of the correct answer token.
        traces: ``(N, T)`` the discrete CoT trace (the first, i.e. best, target trace).
        paths: ``(N, R, T)`` all target traces of each example, best first (budget B takes the first B).
        path_counts: ``(N,)`` how many rows of ``paths`` are real (the rest is padding).
        all_dists: ``(N, T, V)`` the "all paths" CoT2 target alpha*_t.
    """

    prompts: torch.Tensor
    answers: torch.Tensor
    traces: torch.Tensor
    paths: torch.Tensor
    path_counts: torch.Tensor
    all_dists: torch.Tensor

    def __len__(self) -> int:
        return int(self.prompts.shape[0])

    @property
    def num_steps(self) -> int:
        """Reasoning steps T."""
        return int(self.traces.shape[1])

    def target_dists(self, budget: int | None, vocab_size: int) -> torch.Tensor:
        """CoT2 targets alpha*: ``(N, T, V)``.

        Args:
            budget: None for all paths (the task's own "all" target), otherwise the empirical
                distribution of step tokens over the first ``budget`` target traces. ``budget=1`` is the
                one-hot discrete trace.
            vocab_size: V.
        """
        if budget is None:
            return self.all_dists
        return _empirical(self.paths, torch.clamp(self.path_counts, max=budget), vocab_size)

    def subset(self, idx: torch.Tensor | slice) -> TaskData:
        """Rows ``idx`` of every tensor."""
        return TaskData(*(getattr(self, f)[idx] for f in _FIELDS))

    def to(self, device: str | torch.device) -> TaskData:
        """Move every tensor to ``device``."""
        return TaskData(*(getattr(self, f).to(device) for f in _FIELDS))


def _empirical(paths: torch.Tensor, counts: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Per-step token distribution over the first ``counts[i]`` traces of ``paths[i]`` ``(N, R, T)``."""
    n, r, t = paths.shape
    keep = (torch.arange(r, device=paths.device)[None, :] < counts[:, None]).float()  # (N, R)
    out = torch.zeros(n, t, vocab_size, device=paths.device)
    # scatter_add instead of one_hot: (N, R, T, V) would be ~100 MB for the full MNNS split.
    out.scatter_add_(2, paths.transpose(1, 2), keep[:, None, :].expand(n, t, r).contiguous())
    return out / counts[:, None, None].float()


_FIELDS = ("prompts", "answers", "traces", "paths", "path_counts", "all_dists")


# --------------------------------------------------------------------------------------------- MNNS


def mnns_brute_force(digits: Sequence[int]) -> int:
    """Minimum non-negative signed sum by enumerating all 2^m sign vectors (the reference solver)."""
    best: int | None = None
    for signs in itertools.product((1, -1), repeat=len(digits)):
        s = sum(sg * d for sg, d in zip(signs, digits, strict=True))
        if s >= 0 and (best is None or s < best):
            best = s
    assert best is not None  # all-plus is always non-negative for non-negative digits
    return best


def mnns_solve(digits: Sequence[int]) -> int:
    """Minimum non-negative signed sum by dynamic programming over reachable partial sums.

    The set of reachable sums after t digits is at most ``2 * sum(digits) + 1`` wide, so this is
    pseudo-polynomial rather than exponential in m.
    """
    reach = {0}
    for d in digits:
        reach = {s + d for s in reach} | {s - d for s in reach}
    return min(s for s in reach if s >= 0)


def multiset_key(digits: Sequence[int]) -> tuple[int, ...]:
    """The digit multiset of a sequence (permutations share it)."""
    return tuple(sorted(int(d) for d in digits))


@dataclass(frozen=True)
class MNNSTask:
    """Minimum non-negative sum: choose a sign per digit so the sum is the smallest non-negative one.

    Vocabulary: specials, input digit tokens ``d<k>`` and signed partial-sum tokens ``s<+v>`` (the
    token of a partial-sum value). Layout as in the paper and the official code (``FourDigitsSoftDataset``
    and ``train_soft_steps_batch`` in ``train/continuous_train.py``, ``generate_text_dataset`` in
    ``data/generate_data.py`` of github.com/alperengozeten/CoT2): m - 1 reasoning steps holding the
    partial sums after digits 1..m-1, and the answer at step m, the partial-sum token of the minimum
    non-negative total (which is the m-th partial sum of an optimal sign vector). For m = 4: prompt,
    then 3 continuous steps, then the answer.
    """

    config: MNNSConfig

    @property
    def name(self) -> str:
        """Task name."""
        return "mnns"

    @property
    def max_sum(self) -> int:
        """Largest absolute partial sum."""
        return self.config.num_digits * self.config.digit_max

    @property
    def vocab(self) -> Vocab:
        """Token vocabulary."""
        c = self.config
        digits = [f"d{v}" for v in range(c.digit_min, c.digit_max + 1)]
        sums = [f"s{v:+d}" for v in range(-self.max_sum, self.max_sum + 1)]
        return Vocab((PAD, BOS, SEP, *digits, *sums))

    @property
    def prompt_len(self) -> int:
        """Prompt length P."""
        return self.config.num_digits + 2

    @property
    def num_steps(self) -> int:
        """Reasoning steps T = m - 1 (the m-th partial sum is the answer)."""
        return self.config.num_digits - 1

    def digit_id(self, d: int) -> int:
        """Token id of input digit ``d``."""
        return 3 + d - self.config.digit_min

    def sum_id(self, s: int | np.ndarray) -> int | np.ndarray:
        """Token id of partial sum ``s`` (vectorised)."""
        return 3 + (self.config.digit_max - self.config.digit_min + 1) + s + self.max_sum

    def sequences(self, rng: np.random.Generator) -> np.ndarray:
        """All digit sequences (or a 200k sample when there are more)."""
        c = self.config
        values = np.arange(c.digit_min, c.digit_max + 1)
        total = len(values) ** c.num_digits
        if total <= 200_000:
            return np.array(list(itertools.product(values, repeat=c.num_digits)), dtype=np.int64)
        return rng.choice(values, size=(200_000, c.num_digits))

    def build(self, digits: np.ndarray) -> TaskData:
        """Tensors for the sequences ``digits`` ``(N, m)``."""
        m = self.config.num_digits
        n = digits.shape[0]
        signs = np.array(list(itertools.product((1, -1), repeat=m)), dtype=np.int64)  # (R, m)
        partial = np.cumsum(signs[None, :, :] * digits[:, None, :], axis=2)  # (N, R, m)
        final = partial[:, :, -1]
        nonneg = np.where(final >= 0, final, np.iinfo(np.int64).max)
        answer = nonneg.min(axis=1)  # (N,)
        # Order target traces best first: non-negative totals before negative ones, then by distance
        # of the total to the answer, then by sign vector (stable sort keeps itertools' + before -).
        key = (final < 0).astype(np.int64) * (4 * self.max_sum + 4) + np.abs(final - answer[:, None])
        order = np.argsort(key, axis=1, kind="stable")
        partial = np.take_along_axis(partial, order[:, :, None], axis=1)
        # Reasoning steps are the first m - 1 partial sums; the m-th is the answer position. Two sign
        # vectors that differ only in the last sign share a prefix, so the "all paths" target puts
        # 2^-t on each step-t prefix, as the official uniform target does.
        paths = torch.from_numpy(np.asarray(self.sum_id(partial[:, :, :-1]), dtype=np.int64))
        v = len(self.vocab)
        prompts = np.concatenate(
            [np.full((n, 1), 1), 3 + digits - self.config.digit_min, np.full((n, 1), 2)], axis=1
        )
        counts = torch.full((n,), paths.shape[1], dtype=torch.long)
        all_dists = _empirical(paths, counts, v)
        return TaskData(
            prompts=torch.from_numpy(prompts.astype(np.int64)),
            answers=torch.from_numpy(np.asarray(self.sum_id(answer), dtype=np.int64)),
            traces=paths[:, 0].clone(),
            paths=paths,
            path_counts=counts,
            all_dists=all_dists,
        )

    def split(self, seed: int) -> tuple[TaskData, TaskData]:
        """Train/test split keeping every permutation of a digit multiset on the same side."""
        rng = np.random.default_rng(seed)
        seqs = self.sequences(rng)
        keys = [multiset_key(s) for s in seqs]
        uniq = sorted(set(keys))
        perm = rng.permutation(len(uniq))
        n_test = max(1, round(self.config.test_frac * len(uniq)))
        test_keys = {uniq[i] for i in perm[:n_test]}
        is_test = np.array([k in test_keys for k in keys])
        train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        rng.shuffle(train_idx)
        rng.shuffle(test_idx)
        if self.config.max_train is not None:
            train_idx = train_idx[: self.config.max_train]
        if self.config.max_test is not None:
            test_idx = test_idx[: self.config.max_test]
        return self.build(seqs[train_idx]), self.build(seqs[test_idx])

    def decode_prompt(self, prompt: torch.Tensor) -> list[int]:
        """Digits of one prompt row."""
        return [int(t) - 3 + self.config.digit_min for t in prompt[1:-1]]


# -------------------------------------------------------------------------------------------- graph


@dataclass(frozen=True)
class GraphInstance:
    """One layered DAG with a reachability query.

    Attributes:
        layers: Vertex labels per layer (layer 0 holds the source).
        edges: Directed ``(u, v)`` label pairs, each from layer i to layer i + 1.
        source: Start vertex.
        candidates: Two candidate targets in the last layer, exactly one reachable.
        answer: The reachable candidate.
    """

    layers: list[list[int]]
    edges: list[tuple[int, int]]
    source: int
    candidates: tuple[int, int]
    answer: int


def reachable_sets(edges: Sequence[tuple[int, int]], source: int, steps: int) -> list[set[int]]:
    """Frontiers: vertices reached by walks of exactly t = 1..steps edges from ``source``."""
    succ: dict[int, list[int]] = {}
    for u, v in edges:
        succ.setdefault(u, []).append(v)
    out, frontier = [], {source}
    for _ in range(steps):
        frontier = {v for u in frontier for v in succ.get(u, [])}
        out.append(frontier)
    return out


def is_reachable(edges: Sequence[tuple[int, int]], source: int, target: int) -> bool:
    """Whether ``target`` is reachable from ``source`` (depth-first search, any path length)."""
    succ: dict[int, list[int]] = {}
    for u, v in edges:
        succ.setdefault(u, []).append(v)
    seen, stack = {source}, [source]
    while stack:
        u = stack.pop()
        if u == target:
            return True
        for v in succ.get(u, []):
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return False


@dataclass(frozen=True)
class GraphTask:
    """Graph reachability on random layered DAGs (in the style of ProntoQA / ProsQA).

    The prompt lists the edges in random order, then ``<q> source cand_a cand_b <sep>``. The trace
    walks one path from the source towards the reachable candidate (depth - 1 intermediate vertices) and
    the answer is the reachable candidate. The CoT2 "all" target at step t is uniform over the vertices
    the source reaches in t steps (the search frontier of a breadth-first search).
    """

    config: GraphConfig

    @property
    def name(self) -> str:
        """Task name."""
        return "graph"

    @property
    def num_vertices(self) -> int:
        """Vertex tokens."""
        return (self.config.depth + 1) * self.config.width

    @property
    def vocab(self) -> Vocab:
        """Token vocabulary."""
        return Vocab((PAD, BOS, SEP, QUERY, *(f"v{i}" for i in range(self.num_vertices))))

    @property
    def num_edges(self) -> int:
        """Edges per instance (fixed, so every prompt has the same length)."""
        c = self.config
        return c.depth * c.width * c.out_degree

    @property
    def prompt_len(self) -> int:
        """Prompt length P."""
        return 1 + 2 * self.num_edges + 5

    @property
    def num_steps(self) -> int:
        """Reasoning steps T."""
        return self.config.depth - 1

    def sample(self, rng: np.random.Generator) -> GraphInstance:
        """Draw one instance (resampling until the last layer has an unreachable vertex)."""
        c = self.config
        while True:
            labels = rng.permutation(self.num_vertices)
            layers = [list(map(int, labels[i * c.width : (i + 1) * c.width])) for i in range(c.depth + 1)]
            edges = [
                (u, layers[i + 1][j])
                for i in range(c.depth)
                for u in layers[i]
                for j in rng.choice(c.width, size=c.out_degree, replace=False)
            ]
            source = layers[0][int(rng.integers(c.width))]
            last = reachable_sets(edges, source, c.depth)[-1]
            unreachable = [v for v in layers[-1] if v not in last]
            if not unreachable:
                continue
            good = sorted(last)[int(rng.integers(len(last)))]
            bad = unreachable[int(rng.integers(len(unreachable)))]
            cands = (good, bad) if rng.random() < 0.5 else (bad, good)
            order = rng.permutation(len(edges))
            return GraphInstance(layers, [edges[i] for i in order], source, cands, good)

    def paths_of(self, inst: GraphInstance) -> list[tuple[int, ...]]:
        """All source-rooted walks of depth - 1 steps, those extendable to the answer first."""
        succ: dict[int, list[int]] = {}
        for u, v in inst.edges:
            succ.setdefault(u, []).append(v)
        walks: list[tuple[int, ...]] = [()]
        for _ in range(self.num_steps):
            walks = [(*w, v) for w in walks for v in succ.get(w[-1] if w else inst.source, [])]
        return sorted(walks, key=lambda w: (inst.answer not in succ.get(w[-1], []), w))

    def encode(self, insts: Sequence[GraphInstance]) -> TaskData:
        """Tensors for ``insts``."""
        off = 4  # vertex label -> token id
        v_size, t = len(self.vocab), self.num_steps
        prompts, answers, all_paths, all_dists = [], [], [], []
        for inst in insts:
            p = [1]
            for u, v in inst.edges:
                p += [off + u, off + v]
            p += [3, off + inst.source, off + inst.candidates[0], off + inst.candidates[1], 2]
            prompts.append(p)
            answers.append(off + inst.answer)
            all_paths.append([[off + x for x in w] for w in self.paths_of(inst)])
            dist = np.zeros((t, v_size), dtype=np.float32)
            for i, fr in enumerate(reachable_sets(inst.edges, inst.source, t)):
                dist[i, [off + x for x in fr]] = 1.0 / len(fr)
            all_dists.append(dist)
        r = max(len(ps) for ps in all_paths)
        paths = np.zeros((len(insts), r, t), dtype=np.int64)
        for i, ps in enumerate(all_paths):
            paths[i, : len(ps)] = ps
        paths_t = torch.from_numpy(paths)
        return TaskData(
            prompts=torch.tensor(prompts, dtype=torch.long),
            answers=torch.tensor(answers, dtype=torch.long),
            traces=paths_t[:, 0].clone(),
            paths=paths_t,
            path_counts=torch.tensor([len(ps) for ps in all_paths], dtype=torch.long),
            all_dists=torch.from_numpy(np.stack(all_dists)),
        )

    def split(self, seed: int) -> tuple[TaskData, TaskData]:
        """Independent train and test instances drawn from one seeded generator."""
        rng = np.random.default_rng(seed)
        c = self.config
        insts = [self.sample(rng) for _ in range(c.num_train + c.num_test)]
        return self.encode(insts[: c.num_train]), self.encode(insts[c.num_train :])


Task = MNNSTask | GraphTask


def make_task(config: TaskConfig) -> Task:
    """The task named by ``config``."""
    if config.name == "mnns":
        return MNNSTask(config.mnns)
    return GraphTask(config.graph)
