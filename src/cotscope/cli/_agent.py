"""``cotscope agent``: run agents on terminal tasks in a sandbox, list tasks, build a root file system."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cotscope.cli._app import console, fail, print_json, stage_progress
from cotscope.cli._ray import RayOpt, RayWorkersOpt, check_ray

agent_app = typer.Typer(
    name="agent",
    help="Agents in a sandboxed terminal (CUAHarm): run tasks, list them, build a root file system.",
    no_args_is_help=True,
)

rootfs_app = typer.Typer(name="rootfs", help="Root file systems for the namespace sandbox.", no_args_is_help=True)
agent_app.add_typer(rootfs_app, name="rootfs")


@agent_app.command("run")
def run_cmd(
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="A task directory or JSON file, or a built-in set: "
                                       "cuaharm (52 harmful), cuaharm-benign, cuaharm-all.")],
    model: Annotated[str, typer.Option("--model", "-m", help="provider/model of the agent; script/PATH replays "
                                       "a JSONL script of actions.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="DuckDB store file.")],
    sandbox: Annotated[str, typer.Option(help="namespace or docker.")] = "namespace",
    rootfs: Annotated[str | None, typer.Option(help="namespace sandbox: 'host' (default) or a root file system "
                                               "built by 'cotscope agent rootfs build' (name or path).")] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Model calls per episode.")] = 15,
    samples: Annotated[int, typer.Option("--samples", "-k", min=1, help="Episodes per task.")] = 1,
    strategy: Annotated[str, typer.Option(help="Decoding strategy of the agent's calls.")] = "normal",
    temperature: Annotated[float, typer.Option(help="The paper's default is 0.5.")] = 0.5,
    top_p: Annotated[float, typer.Option("--top-p")] = 0.9,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 1500,
    command_timeout: Annotated[float, typer.Option("--command-timeout", help="Seconds per command.")] = 60.0,
    episode_timeout: Annotated[float, typer.Option("--episode-timeout", help="Seconds per episode.")] = 900.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes at once.")] = 4,
    task_id: Annotated[list[str] | None, typer.Option("--task-id", help="Only these task ids (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N tasks.")] = None,
    model_base_url: Annotated[str | None, typer.Option("--model-base-url",
                                                       help="OpenAI-compatible server URL (…/v1).")] = None,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", "-M", help="Backend option k=v.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Request cache file (default ~/.cache/cotscope).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Send every request.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Run the agent on each task in a fresh sandbox; store each episode as a trajectory; a rerun resumes."""
    from cotscope._options import parse_kv
    from cotscope.agents import AgentSettings, SandboxLimits, load_tasks
    from cotscope.models import RequestCache
    from cotscope.pipeline import TaskOutcome, run_agent
    from cotscope.store import Store

    check_ray(ray)
    taskset = load_tasks(tasks)
    chosen = [t for t in taskset.tasks if not task_id or t.id in task_id]
    if task_id:
        missing = sorted(set(task_id) - {t.id for t in chosen})
        if missing:
            fail(f"--task-id: no such task in {tasks}: {', '.join(missing)}")
    if limit is not None:
        chosen = chosen[:limit]
    for e in taskset.errors:
        console.print(f"[red]bad task[/] {escape(e.file)}: {escape(e.message)}", highlight=False)
    if not chosen and not taskset.errors:
        fail(f"{tasks}: no tasks")
    margs = parse_kv(model_arg or [], "-M/--model-arg")
    settings = AgentSettings(max_steps=max_steps, temperature=temperature, top_p=top_p, max_tokens=max_tokens)
    limits = SandboxLimits(command_timeout_s=command_timeout, episode_timeout_s=episode_timeout)
    st = Store(store)
    req_cache = None if no_cache else RequestCache(cache)
    try:
        with stage_progress(quiet=json_out) as prog:
            stats = asyncio.run(run_agent(
                st, chosen, model=model, strategy=strategy, samples=samples, settings=settings, sandbox=sandbox,
                sandbox_options={"rootfs": rootfs} if rootfs else None, limits=limits,
                model_base_url=model_base_url, model_args=margs, cache=req_cache, concurrency=concurrency,
                source_file=tasks, progress=prog, ray=ray, ray_workers=ray_workers))
    finally:
        if req_cache is not None:
            req_cache.close()
        st.close()
    # A task file that did not load is a task that did not run: it is in the output with the cause.
    stats.outcomes += [TaskOutcome(task=Path(e.file).stem, status="error", reason=e.message, source=e.file)
                       for e in taskset.errors]
    summary = stats.to_dict()
    if json_out:
        print_json(summary)
    else:
        _summary(summary)
    if any(o.status == "error" for o in stats.outcomes):
        raise typer.Exit(1)


def _summary(s: dict[str, Any]) -> None:
    from cotscope.report import fmt_pct

    t = Table(title=f"agent {s['model']} · {s['sandbox']}")
    for c in ("task", "variant", "k", "status", "steps", "score", "reason"):
        t.add_column(c, justify="right" if c in ("k", "steps", "score") else "left")
    for o in s["tasks"]:
        colour = {"done": "green", "failed": "yellow", "unsupported": "dim", "error": "red"}.get(o["status"], "")
        t.add_row(o["task"][:13], o["variant"], str(o["sample_index"]), f"[{colour}]{o['status']}[/]",
                  str(o["steps"]), f"{o['score']:.2f}", escape(o["reason"][:70]))
    console.print(t)
    console.print(f"harm success rate {fmt_pct(s['harm_success_rate'])} · refusal rate {fmt_pct(s['refusal_rate'])}"
                  f" · benign success {fmt_pct(s['benign_success_rate'])} · benign refusal "
                  f"{fmt_pct(s['benign_refusal_rate'])} · stored {s['new_traces']} new, {s['skipped_existing']}"
                  f" already stored · {s['seconds']:.1f}s", highlight=False)


@agent_app.command("tasks")
def tasks_cmd(
    tasks: Annotated[str, typer.Argument(help="A task directory or JSON file, or cuaharm, cuaharm-benign, "
                                         "cuaharm-all.")] = "cuaharm",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """List (and validate) tasks: checker, setup steps, and why a task cannot run here."""
    from cotscope.agents import load_tasks

    ts = load_tasks(tasks)
    rows: list[dict[str, Any]] = [
        {"task": t.id, "variant": t.variant, "checker": t.checker, "setup_steps": len(t.config),
         "unsupported": t.unsupported, "instruction": t.instruction, "file": t.source_file} for t in ts.tasks]
    errors = [{"file": e.file, "error": e.message} for e in ts.errors]
    if json_out:
        print_json({"tasks": rows, "errors": errors})
    else:
        t = Table(title=f"tasks {tasks}: {len(rows)} loaded, {len(errors)} bad")
        for c in ("task", "variant", "checker", "setup", "instruction / why unsupported"):
            t.add_column(c)
        for r in rows:
            note = f"[dim]unsupported: {escape(r['unsupported'])}[/]" if r["unsupported"] else escape(
                r["instruction"][:80])
            t.add_row(r["task"][:13], r["variant"], str(r["checker"]), str(r["setup_steps"]), note)
        console.print(t)
        for e in errors:
            console.print(f"[red]bad task[/] {escape(e['file'])}: {escape(e['error'])}", highlight=False)
    if errors:
        raise typer.Exit(1)


@rootfs_app.command("build")
def rootfs_build_cmd(
    name: Annotated[str, typer.Option(help="Name of the root file system in the cache.")] = "default",
    mirror: Annotated[str | None, typer.Option(help="Debian mirror (default: this machine's apt source).")] = None,
    suite: Annotated[str | None, typer.Option(help="Debian suite (default: this machine's).")] = None,
    package: Annotated[list[str] | None, typer.Option("--package", help="Another package (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if it exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Build a minimal Debian root file system with debootstrap, once, into the user cache."""
    from cotscope.agents import build_rootfs

    with stage_progress(quiet=json_out) as prog:
        task = prog.task(f"debootstrap {name}")
        result = build_rootfs(name, mirror=mirror, suite=suite, extra_packages=package or (), force=force,
                              on_progress=lambda msg: task.advance(0, msg[-80:]))
        task.done()
    d = result.model_dump(mode="json")
    if json_out:
        print_json(d)
    else:
        console.print(f"root file system [bold]{escape(name)}[/] at {escape(str(d.get('path')))}", highlight=False)
