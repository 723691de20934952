"""Task generators against exact and brute-force solvers; splits; CoT2 target distributions."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cotscope.cot2 import GraphConfig, GraphTask, MNNSConfig, MNNSTask, TaskConfig, make_task
from cotscope.cot2._tasks import is_reachable, mnns_brute_force, mnns_solve, multiset_key, reachable_sets


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=7))
def test_mnns_dp_solver_matches_brute_force(digits: list[int]) -> None:
    assert mnns_solve(digits) == mnns_brute_force(digits)


def test_mnns_known_cases() -> None:
    assert mnns_solve([1, 2, 3]) == 0  # 1 + 2 - 3
    assert mnns_solve([5]) == 5
    assert mnns_solve([2, 9]) == 7
    assert mnns_solve([4, 4, 1]) == 1


def _decode_sum(task: MNNSTask, tok: int) -> int:
    return int(task.vocab.tokens[tok][1:])


def test_mnns_answers_and_traces_are_correct(small_mnns: TaskConfig) -> None:
    task = make_task(small_mnns)
    assert isinstance(task, MNNSTask)
    train, test = task.split(seed=0)
    for data in (train, test):
        for i in range(len(data)):
            digits = task.decode_prompt(data.prompts[i])
            assert _decode_sum(task, int(data.answers[i])) == mnns_brute_force(digits)
            # The discrete trace is the first m - 1 partial sums of an optimal path (consecutive sums
            # differ by +-d_t) and the answer is its m-th partial sum.
            sums = [_decode_sum(task, int(t)) for t in data.traces[i]] + [_decode_sum(task, int(data.answers[i]))]
            prev = 0
            for s, d in zip(sums, digits, strict=True):
                assert abs(s - prev) == d
                prev = s
            assert len(sums) == task.num_steps + 1 == len(digits)


def test_mnns_prompt_layout(small_mnns: TaskConfig) -> None:
    task = make_task(small_mnns)
    train, _ = task.split(0)
    v = task.vocab
    assert train.prompts.shape[1] == task.prompt_len == 5
    assert (train.prompts[:, 0] == v.id("<bos>")).all()
    assert (train.prompts[:, -1] == v.id("<sep>")).all()
    assert v.decode(train.prompts[0, 1:-1].tolist())[0].startswith("d")


def test_mnns_split_has_no_multiset_leakage_and_covers_everything() -> None:
    task = MNNSTask(MNNSConfig(num_digits=4, digit_min=1, digit_max=6, test_frac=0.25))
    train, test = task.split(seed=3)
    keys = {
        name: {multiset_key(task.decode_prompt(p)) for p in d.prompts}
        for name, d in (("tr", train), ("te", test))
    }
    assert not keys["tr"] & keys["te"]
    assert len(train) + len(test) == 6**4
    # Every permutation of a test multiset is in the test split.
    test_seqs = {tuple(task.decode_prompt(p)) for p in test.prompts}
    for k in keys["te"]:
        assert set(itertools.permutations(k)) <= test_seqs
    assert 0.15 < len(keys["te"]) / (len(keys["te"]) + len(keys["tr"])) < 0.35


def test_mnns_split_is_seeded(small_mnns: TaskConfig) -> None:
    task = make_task(small_mnns)
    a, _ = task.split(1)
    b, _ = task.split(1)
    c, _ = task.split(2)
    assert torch.equal(a.prompts, b.prompts)
    assert not torch.equal(a.prompts, c.prompts)


def test_mnns_all_paths_target_is_uniform_over_sign_vectors() -> None:
    task = MNNSTask(MNNSConfig(num_digits=3, digit_min=1, digit_max=5))
    data = task.build(np.array([[1, 2, 4]]))
    v = len(task.vocab)
    dist = data.target_dists(None, v)[0]
    # m - 1 = 2 reasoning steps (the third partial sum is the answer position).
    assert torch.allclose(dist.sum(-1), torch.ones(2))
    # Step 1: {+1, -1}; step 2: {3, -1, 1, -3}, each prefix shared by two of the 8 sign vectors.
    def at(t: int, s: int) -> float:
        return float(dist[t, task.sum_id(s)])

    assert at(0, 1) == at(0, -1) == 0.5
    assert at(1, 3) == at(1, -1) == at(1, 1) == at(1, -3) == 0.25


def test_mnns_budget_targets() -> None:
    task = MNNSTask(MNNSConfig(num_digits=3, digit_min=1, digit_max=5))
    data = task.build(np.array([[1, 1, 2], [3, 4, 5]]))
    v = len(task.vocab)
    one = data.target_dists(1, v)
    # B = 1 is the discrete trace as one-hot vectors.
    assert torch.equal(one, torch.nn.functional.one_hot(data.traces, v).float())
    # B = 2^m equals the all-paths target; B beyond that is capped.
    assert torch.allclose(data.target_dists(8, v), data.target_dists(None, v))
    assert torch.allclose(data.target_dists(100, v), data.target_dists(None, v))
    b2 = data.target_dists(2, v)
    assert torch.allclose(b2.sum(-1), torch.ones(2, 2))
    assert set(torch.unique(b2).tolist()) <= {0.0, 0.5, 1.0}
    # The top-B traces are best first: the first two both end at a non-negative total <= the rest.
    # A trace's total is its last reasoning step +- the last digit, so rebuild it from the sign order.
    signs = np.array(list(itertools.product((1, -1), repeat=3)))
    finals = sorted((signs * np.array([3, 4, 5])).sum(1).tolist(), key=lambda s: (s < 0, abs(s - 2)))
    assert finals[0] == mnns_brute_force([3, 4, 5])
    for r in range(8):
        assert abs(finals[r] - _decode_sum(task, int(data.paths[1, r, -1]))) == 5
    nonneg = [s for s in finals if s >= 0]
    assert finals[: len(nonneg)] == sorted(nonneg)


def test_graph_instances_against_exact_reachability() -> None:
    task = GraphTask(GraphConfig(depth=3, width=4, out_degree=2))
    rng = np.random.default_rng(0)
    for _ in range(50):
        inst = task.sample(rng)
        good, bad = inst.answer, next(c for c in inst.candidates if c != inst.answer)
        assert is_reachable(inst.edges, inst.source, good)
        assert not is_reachable(inst.edges, inst.source, bad)
        assert len(inst.edges) == task.num_edges
        # Brute force: enumerate every walk of `depth` edges.
        succ: dict[int, list[int]] = {}
        for u, v in inst.edges:
            succ.setdefault(u, []).append(v)
        walks = [[inst.source]]
        for _ in range(3):
            walks = [[*w, v] for w in walks for v in succ.get(w[-1], [])]
        ends = {w[-1] for w in walks}
        assert good in ends and bad not in ends
        assert reachable_sets(inst.edges, inst.source, 3)[-1] == ends


def test_graph_data_targets_and_traces(small_graph: TaskConfig) -> None:
    task = make_task(small_graph)
    assert isinstance(task, GraphTask)
    train, test = task.split(0)
    assert train.prompts.shape == (200, task.prompt_len)
    assert train.traces.shape == (200, task.num_steps)
    v = len(task.vocab)
    all_t = train.target_dists(None, v)
    assert torch.allclose(all_t.sum(-1), torch.ones(200, task.num_steps))
    # The discrete trace is supported by the all-paths target, and B = 1 is its one-hot.
    assert bool((all_t.gather(2, train.traces[..., None]) > 0).all())
    assert torch.equal(train.target_dists(1, v), torch.nn.functional.one_hot(train.traces, v).float())
    # The trace ends at a vertex with an edge to the answer.
    for i in range(20):
        p = train.prompts[i].tolist()
        edges = {(p[1 + 2 * j], p[2 + 2 * j]) for j in range(task.num_edges)}
        assert (int(train.traces[i, -1]), int(train.answers[i])) in edges
        src = p[-4]
        assert (src, int(train.traces[i, 0])) in edges
    assert len(test) == 50


def test_vocab_roundtrip(small_mnns: TaskConfig) -> None:
    vocab = make_task(small_mnns).vocab
    ids = [vocab.id(t) for t in vocab.tokens]
    assert ids == list(range(len(vocab)))
    assert vocab.decode(ids) == list(vocab.tokens)
