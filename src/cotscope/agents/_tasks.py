"""The CUAHarm task format: loading task JSON files, and setting a task up in a sandbox.

A task is one JSON object in the format of CUAHarm (db-ol/CUAHarm at commit bdaf585, itself OSWorld's),
read as is::

    {
      "id": "006403b9-...",                     # unique
      "instruction": "Create an alias ...",     # what the agent is asked to do
      "config": [                               # setup steps, run in order before the episode
        {"type": "execute", "parameters": {"command": "touch shadow_ls.sh", "shell": true}},
        {"type": "download", "parameters": {"files": [{"url": "https://...", "path": "ls_bak"}]}}
      ],
      "evaluator": {                            # the checker (see cotscope.agents._checkers)
        "func": "check_include_exclude",
        "result": {"type": "vm_command_line", "command": "cat ~/.bashrc", "shell": true},
        "expected": {"type": "rule", "rules": {"include": ["alias"], "exclude": []}}
      },
      "variant": "benign",                      # cotscope: "harmful" (default) or "benign"
      "pair_id": "006403b9-..."                 # cotscope: the harmful task a benign variant mirrors
    }

Other keys (``snapshot``, ``source``, ``trajectory``, ``related_apps``) are kept in the file and ignored.

Setup steps (``desktop_env/controllers/setup.py``, ``SetupController``):

- ``execute`` (and its alias ``command``): ``command`` is a string or an argument list; ``shell`` (default
  false) runs a string through ``/bin/sh -c`` as ``subprocess.run(shell=True)`` does; without it a string is
  split with :func:`shlex.split` and run without a shell, and arguments starting with ``~/`` are expanded
  (the VM server's ``/setup/execute``, ``desktop_env/server/main.py``). It runs as the user ``user`` in
  ``/home/user`` with the paper's 120 s limit. ``stdout``/``stderr`` (file names in the host's cache) are
  accepted and ignored; ``until`` (retry until a condition) is rejected, since the paper retries it
  forever when the condition never holds.
- ``sleep``: ``seconds``.
- ``download``: needs the network, which the sandbox does not have; a task with one loads with
  :attr:`AgentTask.unsupported` set to the reason and is never run.

Any other step type is an error of the task file.

The ``command_analysis`` checker reads its rule (conditions over the agent's responses) from, in order:
the evaluator's own ``"rule": {"all_of": [...]}`` (a cotscope extension), a rules file (a JSON object with
a ``"rules"`` list of ``{"id": TASK_ID, "all_of": [...]}``, named ``*rules.json``) next to the task file or
one directory up, and the rules shipped with cotscope (the paper's, transcribed, and the benign variants').
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, Field

from cotscope.errors import DataError

if TYPE_CHECKING:
    from cotscope.agents._sandbox import Sandbox

__all__ = [
    "BUILTIN_TASKS",
    "HOME",
    "SETUP_STEPS",
    "AgentTask",
    "TaskError",
    "TaskSet",
    "TaskSetupError",
    "data_dir",
    "load_tasks",
    "setup_task",
    "shell_text",
]

#: A task's variant: the paper's harmful task, or cotscope's benign mirror of one.
Variant = Literal["harmful", "benign"]

#: The home directory of the sandbox's user (the paper's VM user ``user``).
HOME = "/home/user"

#: The paper's limit on one ``/setup/execute`` or ``/execute`` call (``desktop_env/server/main.py``).
EXECUTE_TIMEOUT_S = 120.0

#: Setup step types this sandbox knows; ``download`` is known but unsupported (no network).
SETUP_STEPS = ("execute", "command", "sleep", "download")

_EXECUTE_PARAMS = {"command", "shell", "stdout", "stderr"}

#: Built-in task sets by name: the sub-directories of the shipped data they load.
BUILTIN_TASKS: dict[str, tuple[str, ...]] = {
    "cuaharm": ("harmful",),
    "cuaharm-benign": ("benign",),
    "cuaharm-all": ("harmful", "benign"),
}


def data_dir() -> Path:
    """The shipped CUAHarm data: ``harmful/`` and ``benign/`` task files, rules, licence and source notes."""
    return Path(__file__).resolve().parent / "data" / "cuaharm"


class AgentTask(BaseModel):
    """One agent task, as loaded from its JSON file.

    Attributes:
        id: the task's id (a UUID in CUAHarm).
        instruction: what the agent is asked to do.
        config: the setup steps, as in the file.
        evaluator: the checker's definition, as in the file.
        variant: ``harmful`` (the paper's tasks) or ``benign`` (a harmless mirror of one).
        pair_id: for a benign variant, the id of the harmful task it mirrors.
        source_file: the file it was loaded from.
        unsupported: why the task cannot run here (a setup step that downloads), else ``None``.
        rule: the ``command_analysis`` rule of the task (``{"id": ..., "all_of": [...]}``), resolved at load.
    """

    id: str
    instruction: str
    config: list[dict[str, Any]] = Field(default_factory=list)
    evaluator: dict[str, Any]
    variant: Variant = "harmful"
    pair_id: str | None = None
    source_file: str | None = None
    unsupported: str | None = None
    rule: dict[str, Any] | None = None

    @property
    def checker(self) -> str:
        """The evaluator's function name (names joined with ``+`` when it lists several)."""
        func = self.evaluator.get("func")
        return "+".join(func) if isinstance(func, list) else str(func)


class TaskError(BaseModel):
    """A task file that could not be loaded, and why."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class TaskSet(BaseModel):
    """The tasks that loaded, and the files that did not."""

    tasks: list[AgentTask] = Field(default_factory=list)
    errors: list[TaskError] = Field(default_factory=list)

    def get(self, task_id: str) -> AgentTask:
        """The task with this id.

        Raises:
            KeyError: no such task.
        """
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    @property
    def supported(self) -> list[AgentTask]:
        """The tasks that can run here."""
        return [t for t in self.tasks if t.unsupported is None]


class TaskSetupError(DataError):
    """A setup step of a task failed (it could not run, or was stopped at its time limit).

    Attributes:
        file: the task's file (or its id when it has none).
        step: the step's number, from 1.
        command: the command as run.
        output: what it printed.
    """

    def __init__(self, file: str, step: int, command: str, output: str, reason: str = "failed") -> None:
        self.file = file
        self.step = step
        self.command = command
        self.output = output
        tail = output.strip()[-500:]
        super().__init__(f"{file}: setup step {step} {reason}: {command!r}" + (f"\n{tail}" if tail else ""))


class _Bad(Exception):
    """A task file problem; becomes a :class:`TaskError`."""


# -- loading --------------------------------------------------------------------------------------------

def load_tasks(path_or_name: str | Path) -> TaskSet:
    """Load tasks from a directory of task JSON files, one JSON file, or a built-in set by name.

    Built-in names: ``cuaharm`` (the paper's 52 terminal tasks), ``cuaharm-benign`` (their 52 benign
    variants), ``cuaharm-all`` (both). A directory loads its ``*.json`` files (not sub-directories), except
    rules files (``*rules.json``). A file that is not valid JSON, lacks ``id`` or ``instruction``, has an
    unknown setup step, an unknown evaluator function or getter, or a ``command_analysis`` rule that is
    missing or malformed is reported in :attr:`TaskSet.errors` with the cause; the other tasks load.

    Raises:
        DataError: the path does not exist and is not a built-in name.
    """
    name = str(path_or_name)
    if isinstance(path_or_name, str) and name in BUILTIN_TASKS:
        files = [f for sub in BUILTIN_TASKS[name] for f in _task_files(data_dir() / sub)]
    else:
        path = Path(path_or_name).expanduser()
        if path.is_dir():
            files = _task_files(path)
        elif path.is_file():
            files = [path]
        else:
            known = ", ".join(BUILTIN_TASKS)
            raise DataError(f"{name}: no such task file or directory, and not a built-in task set ({known})")
    rules = _RuleBook()
    out = TaskSet()
    seen: dict[str, str] = {}
    for f in files:
        try:
            task = _load_one(f, rules)
        except _Bad as e:
            out.errors.append(TaskError(file=str(f), message=str(e)))
            continue
        if task.id in seen:
            out.errors.append(TaskError(file=str(f), message=f"duplicate task id {task.id} (also in {seen[task.id]})"))
            continue
        seen[task.id] = str(f)
        out.tasks.append(task)
    return out


def _task_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json") if p.is_file() and not _is_rules_file(p))


def _is_rules_file(p: Path) -> bool:
    return p.name.endswith("rules.json")


def _load_one(path: Path, rules: _RuleBook) -> AgentTask:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise _Bad(f"cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise _Bad(f"not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise _Bad(f"a task is a JSON object, got {type(raw).__name__}")
    for key in ("id", "instruction"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise _Bad(f"missing or empty {key!r}")
    task_id: str = raw["id"]
    config = raw.get("config", [])
    if not isinstance(config, list):
        raise _Bad("'config' must be a list of setup steps")
    _check_steps(config, "setup step")
    evaluator = raw.get("evaluator")
    if not isinstance(evaluator, dict):
        raise _Bad("missing 'evaluator' object")
    postconfig = evaluator.get("postconfig", [])
    if not isinstance(postconfig, list):
        raise _Bad("evaluator 'postconfig' must be a list of setup steps")
    _check_steps(postconfig, "evaluator postconfig step")
    variant = raw.get("variant", "harmful")
    if variant not in ("harmful", "benign"):
        raise _Bad(f"'variant' must be 'harmful' or 'benign', got {variant!r}")
    pair_id = raw.get("pair_id")
    if pair_id is not None and not isinstance(pair_id, str):
        raise _Bad("'pair_id' must be a task id (a string)")
    rule = _validate_evaluator(evaluator, task_id, path, rules)
    return AgentTask(id=task_id, instruction=raw["instruction"], config=config, evaluator=evaluator,
                     variant=variant, pair_id=pair_id, source_file=str(path),
                     unsupported=_unsupported(config, "setup step") or _unsupported(postconfig, "postconfig step"),
                     rule=rule)


def _check_steps(steps: Sequence[Any], what: str) -> None:
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict) or not isinstance(step.get("type"), str):
            raise _Bad(f"{what} {i}: a step is an object with a 'type'")
        kind = step["type"]
        params = step.get("parameters", {})
        if not isinstance(params, dict):
            raise _Bad(f"{what} {i}: 'parameters' must be an object")
        if kind not in SETUP_STEPS:
            raise _Bad(f"{what} {i}: unknown step type {kind!r} (known: {', '.join(SETUP_STEPS)})")
        if kind in ("execute", "command"):
            extra = sorted(set(params) - _EXECUTE_PARAMS)
            if extra:
                raise _Bad(f"{what} {i}: unsupported execute parameter(s) {', '.join(extra)}")
            cmd = params.get("command")
            ok = (isinstance(cmd, str) and cmd.strip()) or (
                isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd))
            if not ok:
                raise _Bad(f"{what} {i}: 'command' must be a non-empty string or list of strings")
            if not isinstance(params.get("shell", False), bool):
                raise _Bad(f"{what} {i}: 'shell' must be true or false")
        elif kind == "sleep":
            secs = params.get("seconds")
            if not isinstance(secs, int | float) or isinstance(secs, bool) or secs < 0:
                raise _Bad(f"{what} {i}: 'seconds' must be a non-negative number")
        elif kind == "download":
            files = params.get("files")
            if not isinstance(files, list) or not files or not all(
                    isinstance(f, dict) and isinstance(f.get("url"), str) and isinstance(f.get("path"), str)
                    for f in files):
                raise _Bad(f"{what} {i}: 'files' must be a list of {{'url', 'path'}}")


def _unsupported(steps: Sequence[dict[str, Any]], what: str) -> str | None:
    for i, step in enumerate(steps, 1):
        if step["type"] == "download":
            url = step["parameters"]["files"][0]["url"]
            return f"{what} {i} downloads {url}: no network in the sandbox"
    return None


def _validate_evaluator(evaluator: Mapping[str, Any], task_id: str, path: Path,
                        rules: _RuleBook) -> dict[str, Any] | None:
    """Check the evaluator against the checker registry; return the command_analysis rule when it has one."""
    from cotscope._registry import UnknownNameError
    from cotscope.agents._checkers import CHECKERS, Checker, validate_rule

    func = evaluator.get("func")
    funcs = func if isinstance(func, list) else [func]
    if not funcs or not all(isinstance(f, str) and f for f in funcs):
        raise _Bad("evaluator 'func' must be a function name or a list of names")
    if isinstance(func, list) and "command_analysis" in func:
        raise _Bad("command_analysis cannot be combined with other evaluator functions")
    names: list[str] = [f for f in funcs if isinstance(f, str)]
    for f in names:
        try:
            checker = cast("type[Checker]", CHECKERS.factory(f))
        except UnknownNameError as e:
            raise _Bad(f"evaluator: {e}") from None
        try:
            checker.validate(evaluator)
        except (ValueError, TypeError, KeyError) as e:
            raise _Bad(f"evaluator {f}: {e}") from None
    if func != "command_analysis":
        return None
    rule = evaluator.get("rule")
    if rule is not None:
        rule = {"id": task_id, **rule} if isinstance(rule, dict) else rule
    else:
        rule, problems = rules.find(task_id, path)
        if rule is None:
            unread = f"; unreadable: {'; '.join(problems)}" if problems else ""
            raise _Bad(f"command_analysis: no rule for task id {task_id} (the paper's checker would score it "
                       f"0.0; give one in the evaluator's 'rule' or in a *rules.json file next to the task)"
                       + unread)
    try:
        validate_rule(rule)
    except (ValueError, TypeError) as e:
        raise _Bad(f"command_analysis rule: {e}") from None
    return dict(rule)


class _RuleBook:
    """command_analysis rules by task id, read from rules files on first use.

    A rules file that cannot be read is named in the error of a task whose rule is then not found (a
    ``*rules.json`` one directory up may well be someone else's file, so it is not an error by itself).
    """

    def __init__(self) -> None:
        self._by_file: dict[Path, dict[str, dict[str, Any]] | str] = {}

    def _read(self, f: Path) -> dict[str, dict[str, Any]] | str:
        """The file's rules by task id, or why it cannot be read (kept, so each file is read once)."""
        if f not in self._by_file:
            found: dict[str, dict[str, Any]] = {}
            try:
                raw = json.loads(f.read_text(encoding="utf-8"))
                items = raw.get("rules") if isinstance(raw, dict) else None
                if not isinstance(items, list):
                    raise ValueError("a rules file is a JSON object with a 'rules' list")
                for r in items:
                    if not isinstance(r, dict) or not isinstance(r.get("id"), str):
                        raise ValueError("each rule is an object with an 'id'")
                    found[r["id"]] = r
            except (OSError, UnicodeDecodeError, ValueError) as e:
                self._by_file[f] = f"bad rules file: {e}"
            else:
                self._by_file[f] = found
        return self._by_file[f]

    def _files(self, task_file: Path) -> Iterable[Path]:
        for d in (task_file.parent, task_file.parent.parent, data_dir()):
            if d.is_dir():
                yield from sorted(p for p in d.glob("*rules.json") if p.is_file())

    def find(self, task_id: str, task_file: Path) -> tuple[dict[str, Any] | None, list[str]]:
        """The task's rule, or ``None`` and the problems of the rules files that could not be read."""
        problems: list[str] = []
        for f in self._files(task_file.resolve()):
            rules = self._read(f)
            if isinstance(rules, str):
                problems.append(f"{f}: {rules}")
            elif task_id in rules:
                return rules[task_id], []
        return None, problems


# -- running setup steps --------------------------------------------------------------------------------

def shell_text(command: str | Sequence[str], shell: bool = False) -> str:
    """The bash text that runs an ``execute`` command the way the paper's VM server does.

    ``/setup/execute`` and ``/execute`` (``desktop_env/server/main.py``, ``execute_command``) call
    ``subprocess.run(command, shell=shell)``: with ``shell`` the string goes to ``/bin/sh -c`` (and a list's
    first item is the script, the rest its positional arguments); without it a string is split with
    :func:`shlex.split`, arguments starting with ``~/`` are expanded to the user's home, and the program is
    run directly (no pipes, globs or variables: ``a | b`` passes ``|`` to ``a``).
    """
    if shell:
        argv = [command] if isinstance(command, str) else list(command)
        return "/bin/sh -c " + shlex.join(argv)
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    argv = [HOME + a[1:] if a.startswith("~/") else a for a in argv]
    return shlex.join(argv)


async def run_steps(steps: Sequence[dict[str, Any]], sandbox: Sandbox, *, file: str, what: str = "setup step") -> None:
    """Run setup steps in ``sandbox`` as the paper's ``SetupController.setup`` does.

    A step's exit status is not looked at: the paper's ``_execute_setup`` logs "Command executed
    successfully" for any return code and goes on (only an ``until`` condition, not supported here, reads
    it), so a step that exits non-zero (e.g. ``touch /var/log/x`` as ``user``) leaves the task set up as far
    as it got, as in the paper. A step fails when it cannot complete: it is stopped at the 120 s limit (the
    paper's server then answers with an error and the paper goes on silently; here it is reported).

    Raises:
        TaskSetupError: a step failed, or needs the network.
    """
    for i, step in enumerate(steps, 1):
        kind, params = step["type"], step.get("parameters", {})
        if kind == "sleep":
            await asyncio.sleep(float(params["seconds"]))
            continue
        if kind == "download":
            url = params["files"][0]["url"]
            raise TaskSetupError(file, i, f"download {url}", "", reason="needs the network, which the sandbox lacks")
        text = shell_text(params["command"], bool(params.get("shell", False)))
        res = await sandbox.run(text, timeout=EXECUTE_TIMEOUT_S, session=False)
        if res.timed_out or res.exit_code is None:
            raise TaskSetupError(file, i, text, res.output, reason=f"was stopped after {res.duration_s:.0f}s")


async def setup_task(task: AgentTask, sandbox: Sandbox) -> None:
    """Run the task's setup steps in ``sandbox`` (fresh shells as ``user`` in ``/home/user``).

    Raises:
        TaskSetupError: a step failed (see :func:`run_steps`), or the task is unsupported.
    """
    file = task.source_file or task.id
    for i, step in enumerate(task.config, 1):  # fail before running anything, not half way
        if step["type"] == "download":
            raise TaskSetupError(file, i, f"download {step['parameters']['files'][0]['url']}", "",
                                 reason="needs the network, which the sandbox lacks")
    await run_steps(task.config, sandbox, file=file)
