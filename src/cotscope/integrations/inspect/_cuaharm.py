"""CUAHarm as an Inspect task: ``inspect eval cotscope/cuaharm --model vllm/...``.

Each sample is one CUAHarm terminal task (harmful, or its benign variant), from the ``cuaharm`` benchmark's own
loader. The solver (:func:`cuaharm_agent`) runs cotscope's agent loop (:func:`cotscope.agents.run_episode`, one
implementation with ``cotscope agent run``) with Inspect's model as the policy
(:class:`~cotscope.integrations.inspect._model.InspectModel`), in a fresh episode of cotscope's sandbox
(``namespace`` by default): the model's commands run there and nowhere else, under the same limits. The episode is
written into the sample as Inspect messages: one assistant message per agent step (its reasoning as
``ContentReasoning``, its response as text, each command as a ``bash(command=...)`` tool call and each control code
as a ``DONE``/``FAIL``/``WAIT`` call), then one tool message per command with its output (exit code, timeout and
duration in its ``metadata``; a control code has none). ``cotscope ingest`` of the log reads those calls back as
the actions ``cotscope agent run`` stores. The scorer (:func:`cuaharm_checker`) gives the task's rule-based
checker verdict, computed in the sandbox at the end of the episode, and the harm success, refusal and benign rates
as metrics, computed by the agent stage's own :class:`~cotscope.pipeline.AgentStats`.
"""

from __future__ import annotations

import logging
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessage, ChatMessageSystem, ChatMessageUser, GenerateConfig
from inspect_ai.scorer import Metric, SampleScore, Score, Scorer, Target, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver

from cotscope.agents import AgentSettings, AgentTask, Episode, SandboxLimits, get_sandbox
from cotscope.agents._tasks import BUILTIN_TASKS
from cotscope.benchmarks import RunOptions, get_benchmark, make_plan
from cotscope.benchmarks._spec import AgentSpec
from cotscope.errors import ConfigError
from cotscope.integrations.inspect._metrics import _metric
from cotscope.integrations.inspect._model import InspectModel
from cotscope.integrations.inspect._solvers import _max_tokens
from cotscope.pipeline import AgentStats, TaskOutcome
from cotscope.thinking import get_strategy
from cotscope.traces._read import INSPECT_AGENT_KEY, INSPECT_STRATEGY_KEY

logger = logging.getLogger(__name__)

#: The rates the metric reports, as ``cotscope agent run --json`` names them.
RATES = ("harm_success_rate", "refusal_rate", "harm_success_rate_acted", "benign_success_rate",
         "benign_refusal_rate")

_PLAN_MODEL = "inspect/task"


def episode_messages(ep: Episode) -> list[ChatMessage]:
    """The steps of an episode as Inspect messages: per step an assistant message (reasoning, response, one tool
    call per action), then a tool message per command with its output."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageTool, Content, ContentReasoning, ContentText
    from inspect_ai.tool import ToolCall

    out: list[ChatMessage] = []
    for s in ep.steps:
        content: list[Content] = [ContentReasoning(reasoning=s.reasoning)] if s.reasoning else []
        content.append(ContentText(text=s.response))
        calls = [ToolCall(id=f"step{s.index}-{j}", function="bash" if a.kind == "shell" else a.command,
                          arguments={"command": a.command} if a.kind == "shell" else {})
                 for j, a in enumerate(s.actions)]
        out.append(ChatMessageAssistant(content=content, tool_calls=calls or None, source="generate"))
        for call, a in zip(calls, s.actions, strict=True):
            if a.kind == "shell":  # a control code prints nothing: no tool message (DONE and FAIL end the turns)
                out.append(ChatMessageTool(content=a.output, tool_call_id=call.id, function=call.function,
                                           metadata={"exit_code": a.exit_code, "timed_out": a.timed_out,
                                                     "duration_s": a.duration_s}))
    return out


def episode_outcome(task: AgentTask, ep: Episode, sandbox: str) -> dict[str, Any]:
    """What the scorer and the metrics read of a finished episode (kept in the sample's store)."""
    return {"task": task.id, "variant": task.variant, "pair_id": task.pair_id, "sample_index": ep.sample_index,
            "status": ep.status, "reason": ep.reason, "score": ep.score, "refused": ep.refused,
            "steps": len(ep.steps), "checker": (ep.check or {}).get("checker"), "check": ep.check,
            "sandbox": sandbox, "seconds": ep.seconds}


@solver(name="cuaharm_agent")
def cuaharm_agent(strategy: str = "normal", sandbox: str = "namespace", rootfs: str | None = None,
                  max_steps: int = 15, history: int = 3, command_timeout: float = 60.0,
                  episode_timeout: float = 900.0) -> Solver:
    """Run cotscope's agent loop on the sample's CUAHarm task with Inspect's model, in cotscope's sandbox.

    The sample's metadata holds the task (``task``, as the ``cuaharm`` loader gives it). Temperature and top-p come
    from the task's and the command line's generation settings; ``max_tokens`` too (default the paper's 1500 from
    the task). An episode that fails for an outside reason (the sandbox, the task's setup, the model) is a sample
    error, which ``inspect eval-retry`` reruns, as ``cotscope agent run`` reruns it.

    Args:
        strategy: the decoding strategy of the agent's calls (``normal``, ``zerothink``, ...).
        sandbox: ``namespace`` (default) or ``docker``.
        rootfs: namespace sandbox: a root file system built by ``cotscope agent rootfs build`` (default the host's).
        max_steps: model calls per episode (the paper's 15).
        history: past observation/response pairs per request (the paper's 3).
        command_timeout: seconds per command.
        episode_timeout: seconds per episode.

    Raises:
        ConfigError: an unknown strategy or sandbox (when the solver is built).
    """
    from cotscope.agents import run_episode
    from cotscope.models import Engine

    strat = get_strategy(strategy)
    provider = get_sandbox(sandbox, **({"rootfs": rootfs} if rootfs else {}))
    base = AgentSettings(max_steps=max_steps, history=history)
    limits = SandboxLimits(command_timeout_s=command_timeout, episode_timeout_s=episode_timeout)

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        from inspect_ai.model import ModelOutput, get_model

        raw = state.metadata.get("task")
        if not isinstance(raw, dict):
            raise ValueError(f"sample {state.sample_id!r} has no CUAHarm task in its metadata ('task')")
        agent_task = AgentTask.model_validate(raw)
        if agent_task.unsupported:
            raise RuntimeError(f"task {agent_task.id} cannot run in the sandbox: {agent_task.unsupported}")
        why = provider.available()
        if why is not None:
            raise RuntimeError(f"sandbox {provider.name} unavailable: {why}")
        state.store.set(INSPECT_STRATEGY_KEY, strat.name)
        model = get_model()
        settings = base.model_copy(update={"max_tokens": _max_tokens(model)})
        engine = Engine(InspectModel(model), strat)
        ep = await run_episode(agent_task, engine, provider, settings=settings, limits=limits,
                               sample_index=state.epoch - 1)
        if ep.status not in ("done", "failed"):
            raise RuntimeError(f"episode of task {agent_task.id} ended in {ep.status}: {ep.reason}")
        state.messages.extend(episode_messages(ep))
        last = state.messages[-1]
        # The output is the last step's message when it ends the conversation (DONE, FAIL); an episode that ran
        # out of steps ends with tool messages, and an output there would read as one more turn.
        state.output = (ModelOutput.from_message(last, stop_reason="stop") if last.role == "assistant"
                        else ModelOutput(model=model.name))
        state.output.model = model.name
        state.store.set(INSPECT_AGENT_KEY, episode_outcome(agent_task, ep, provider.name))
        state.completed = True
        return state

    return solve


def _outcome(s: SampleScore) -> TaskOutcome | None:
    found = (s.score.metadata or {}).get(INSPECT_AGENT_KEY)
    if not isinstance(found, dict):
        return None
    return TaskOutcome(task=str(found.get("task")), variant=str(found.get("variant", "harmful")),
                       sample_index=int(found.get("sample_index") or 0), score=float(found.get("score") or 0.0),
                       steps=int(found.get("steps") or 0), status=str(found.get("status")),
                       reason=str(found.get("reason", "")), refused=bool(found.get("refused")))


@_metric("cuaharm_rates")
def cuaharm_rates() -> Metric:
    """CUAHarm's rates over every episode (each epoch is one), as ``cotscope agent run`` reports them: harm success
    rate, refusal rate, harm success rate counting only episodes that acted, benign success and refusal rates
    (:class:`cotscope.pipeline.AgentStats`, one implementation). A rate with no episode is not reported."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        outcomes = [o for o in map(_outcome, scores) if o is not None]
        stats = AgentStats(model="", strategy="", sandbox="", outcomes=outcomes).to_dict()
        return {k: float(stats[k]) for k in RATES if stats[k] is not None}

    return compute


@scorer(metrics=[cuaharm_rates()], name="cuaharm_checker")
def cuaharm_checker() -> Scorer:
    """The CUAHarm task's rule-based checker verdict on the episode (1: the task was carried out, 0: not), as the
    agent loop computed it in the sandbox before closing it; the outcome (status, refusal, checker details) goes
    into ``metadata["cotscope:agent"]``."""

    async def score(state: TaskState, target: Target) -> Score:
        found = state.store.get(INSPECT_AGENT_KEY)
        if not isinstance(found, dict):
            raise RuntimeError(f"sample {state.sample_id!r} has no CUAHarm episode: run it with the "
                               "cotscope/cuaharm_agent solver")
        checker = found.get("checker") or "checker"
        return Score(value=float(found["score"]), answer=f"{found['status']}, score {found['score']:g}",
                     explanation=f"{checker}: {found['reason']}" + (" (no command run)" if found["refused"] else ""),
                     metadata={INSPECT_AGENT_KEY: found})

    return score


def _messages(item_messages: list[dict[str, Any]]) -> list[ChatMessage]:
    return [ChatMessageSystem(content=str(m.get("content") or "")) if m.get("role") == "system"
            else ChatMessageUser(content=str(m.get("content") or "")) for m in item_messages]


def cuaharm_task(benchmark: str = "cuaharm", *, tasks: str | None = None, task_id: str | list[str] | None = None,
                 limit: int | None = None, samples: int | None = None, strategy: str | None = None,
                 sandbox: str | None = None, rootfs: str | None = None, max_steps: int | None = None,
                 command_timeout: float | None = None, episode_timeout: float | None = None) -> Task:
    """The CUAHarm benchmark (or a spec of kind ``cuaharm``) as an Inspect task.

    Args:
        benchmark: the benchmark name or spec YAML (kind ``cuaharm``).
        tasks: a task set (``cuaharm``: 52 harmful, ``cuaharm-benign``, ``cuaharm-all``: both, the default) or a
            task directory or JSON file, as ``cotscope agent run --tasks``.
        task_id: only these task ids.
        limit: the first N tasks.
        samples: episodes per task (Inspect epochs; default the spec's 1).
        strategy: the agent's decoding strategy (default the spec's ``normal``).
        sandbox: ``namespace`` (the spec's default) or ``docker``.
        rootfs: namespace sandbox: a root file system built by ``cotscope agent rootfs build``.
        max_steps: model calls per episode (default the spec's 15).
        command_timeout: seconds per command (default the spec's 60).
        episode_timeout: seconds per episode (default the spec's 900).

    Raises:
        ConfigError: not a CUAHarm benchmark, an unknown task id, no task left, an unknown strategy or sandbox.
    """
    spec = get_benchmark(benchmark)
    if spec.kind != "cuaharm":
        raise ConfigError(f"{spec.name} is not a CUAHarm benchmark (kind {spec.kind})")
    data_options: dict[str, Any] = {}
    data = None
    if tasks is not None:
        if tasks in BUILTIN_TASKS:
            data_options["set"] = tasks
        else:
            data = tasks
    opts = RunOptions(strategies=[strategy] if strategy else None, samples=samples, data=data,
                      data_options=data_options)
    plan = make_plan(spec, _PLAN_MODEL, opts)
    items = [it for it in plan.items if it.category != "error"]
    notes = [f"task {it.metadata.get('task_file')}: {it.metadata.get('task_error')}" for it in plan.items
             if it.category == "error"]
    if task_id is not None:
        wanted = [task_id] if isinstance(task_id, str) else list(task_id)
        missing = sorted(set(wanted) - {it.id for it in items})
        if missing:
            raise ConfigError(f"task_id: no such task in {tasks or benchmark}: {', '.join(missing)}")
        items = [it for it in items if it.id in wanted]
    unsupported = [it for it in items if it.metadata.get("unsupported")]
    notes += [f"task {it.id} left out: {it.metadata['unsupported']}" for it in unsupported]
    items = [it for it in items if not it.metadata.get("unsupported")][:limit]
    for n in notes:
        logger.warning("%s: %s", spec.name, n)
    if not items:
        raise ConfigError(f"{spec.name}: no task to run" + (f" ({'; '.join(notes)})" if notes else ""))
    agent = spec.agent or AgentSpec()
    solver = cuaharm_agent(
        strategy=plan.strategies[0], sandbox=sandbox or agent.sandbox,
        rootfs=rootfs or agent.sandbox_options.get("rootfs"), max_steps=max_steps or agent.max_steps,
        history=agent.history, command_timeout=command_timeout or agent.command_timeout_s,
        episode_timeout=episode_timeout or agent.episode_timeout_s)
    dataset = MemoryDataset(
        [Sample(id=it.id, input=_messages(it.messages),
                metadata={**it.metadata, "benchmark": spec.name, "item_id": it.id, "category": it.category,
                          "variant": it.category})
         for it in items], name=spec.name)
    config = GenerateConfig(temperature=plan.temperature, top_p=plan.top_p, max_tokens=plan.max_tokens)
    return Task(dataset=dataset, solver=solver, scorer=cuaharm_checker(), epochs=plan.samples, config=config,
                metadata={"cotscope_benchmark": spec.name, "strategy": plan.strategies[0],
                          "sandbox": sandbox or agent.sandbox, "notes": notes})


@task(name="cuaharm")
def cuaharm(tasks: str | None = None, task_id: str | list[str] | None = None, limit: int | None = None,
            samples: int | None = None, strategy: str | None = None, sandbox: str | None = None,
            rootfs: str | None = None, max_steps: int | None = None, command_timeout: float | None = None,
            episode_timeout: float | None = None) -> Task:
    """CUAHarm's terminal tasks (harmful and benign) with cotscope's agent loop in its sandbox (arguments: see
    cuaharm_task)."""
    return cuaharm_task(tasks=tasks, task_id=task_id, limit=limit, samples=samples, strategy=strategy,
                        sandbox=sandbox, rootfs=rootfs, max_steps=max_steps, command_timeout=command_timeout,
                        episode_timeout=episode_timeout)
