"""Agents: a sandboxed terminal, the CUAHarm task format and checkers, and the agent loop.

An agent acts in a :class:`Sandbox` episode (``namespace``: Linux namespaces over a copy-on-write root file
system, no network; ``docker`` where a daemon runs) until it says DONE or FAIL. Each episode is stored as
a trajectory trace (``cotscope.pipeline.run_agent``) and scored by the task's checker.
"""

from cotscope.agents._checkers import CHECKERS, CheckResult, check_task, checker
from cotscope.agents._docker import DockerProvider
from cotscope.agents._loop import (
    AgentSettings,
    AgentStep,
    Episode,
    StepAction,
    first_messages,
    run_episode,
)
from cotscope.agents._namespace import DEFAULT_MASKS, SANDBOX_PASSWORD, SANDBOX_USER, NamespaceProvider
from cotscope.agents._parse import parse_actions, runtime_log
from cotscope.agents._rootfs import ROOTFS_PACKAGES, RootfsManifest, RootfsResult, build_rootfs
from cotscope.agents._sandbox import (
    SANDBOXES,
    CommandResult,
    Sandbox,
    SandboxLimits,
    SandboxProvider,
    get_sandbox,
    sandbox,
)
from cotscope.agents._tasks import AgentTask, TaskError, TaskSet, TaskSetupError, load_tasks, setup_task

__all__ = [
    "CHECKERS",
    "DEFAULT_MASKS",
    "ROOTFS_PACKAGES",
    "SANDBOXES",
    "SANDBOX_PASSWORD",
    "SANDBOX_USER",
    "AgentSettings",
    "AgentStep",
    "AgentTask",
    "CheckResult",
    "CommandResult",
    "DockerProvider",
    "Episode",
    "NamespaceProvider",
    "RootfsManifest",
    "RootfsResult",
    "Sandbox",
    "SandboxLimits",
    "SandboxProvider",
    "StepAction",
    "TaskError",
    "TaskSet",
    "TaskSetupError",
    "build_rootfs",
    "check_task",
    "checker",
    "first_messages",
    "get_sandbox",
    "load_tasks",
    "parse_actions",
    "run_episode",
    "runtime_log",
    "sandbox",
    "setup_task",
]
