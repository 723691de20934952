"""The guard's settings: one validated object, built by the CLI or by Python callers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Policy = Literal["block", "flag", "log"]
Release = Literal["checked", "live"]
OpaquePolicy = Literal["pass", "block"]
FailMode = Literal["open", "closed"]
NonStreamUpstream = Literal["stream", "whole"]

#: What the client reads in place of a blocked generation, unless ``refusal_text`` says otherwise.
DEFAULT_REFUSAL = "I can't continue with this response: it was stopped by a safety monitor."


class GuardConfig(BaseModel):
    """How ``cotscope guard serve`` forwards and watches requests.

    Attributes:
        upstream: base URL of the OpenAI-compatible upstream server (ending in ``/v1``).
        upstream_model: the model name sent upstream (the guard serves exactly this model).
        upstream_api_key: key sent upstream as ``Authorization: Bearer``; ``None`` forwards the caller's
            ``Authorization`` header instead.
        monitor: registered monitor (or judge) name.
        monitor_model: the monitor's grader model, for LLM monitors.
        monitor_options: options for the monitor factory.
        threshold: stop (or flag) when a check's suspicion is strictly greater than this.
        check_every: new characters between checks of the reasoning (and, under ``block``, the answer).
        first_check: characters before a stream's first check (``None``: ``check_every``). A small first check
            lets the first token out sooner under ``release=checked``, but a classifier reading a few words
            is unreliable (the embedded refusal head scored "Let me add the numbers " 0.54).
        window: characters each check reads (the last ones), ``None`` for the whole text.
        policy: ``block`` cuts a flagged generation; ``flag`` passes it and adds the verdict; ``log`` only records.
        release: ``checked`` holds text back until a check covering it passed; ``live`` forwards it at once.
        opaque_reasoning: encrypted or signed reasoning blocks the monitor cannot read: ``pass`` or ``block``.
        on_monitor_error: ``open`` passes text whose check failed, ``closed`` stops the generation.
        refusal_text: the content of the final chunk of a blocked generation.
        monitor_timeout_s: a check that takes longer is a monitor error.
        max_batch: most windows scored in one monitor call (checks of concurrent streams are batched).
        monitor_concurrency: monitor calls in flight at once (1 for CPU monitors; more for LLM monitors).
        upstream_timeout_s: seconds without a byte from the upstream before the request fails.
        non_stream_upstream: how a non-streaming client request is sent upstream: ``stream`` asks the upstream
            for a stream and reads it as a streamed request is read (a flag under ``block`` cuts the
            generation), then answers the client with one ``chat.completion``; ``whole`` forwards it as
            non-streaming and checks the whole response afterwards (for upstreams that cannot stream).
    """

    model_config = ConfigDict(extra="forbid")

    upstream: str
    upstream_model: str
    upstream_api_key: str | None = None
    monitor: str
    monitor_model: str | None = None
    monitor_options: dict[str, Any] = Field(default_factory=dict)
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    check_every: int = Field(200, ge=1)
    first_check: int | None = Field(None, ge=1)
    window: int | None = Field(1000, ge=1)
    policy: Policy = "block"
    release: Release = "checked"
    opaque_reasoning: OpaquePolicy = "pass"
    on_monitor_error: FailMode = "open"
    refusal_text: str = DEFAULT_REFUSAL
    monitor_timeout_s: float = Field(30.0, gt=0)
    max_batch: int = Field(64, ge=1)
    monitor_concurrency: int = Field(1, ge=1)
    upstream_timeout_s: float = Field(600.0, gt=0)
    non_stream_upstream: NonStreamUpstream = "stream"

    @field_validator("upstream")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"the upstream must be an http(s) URL such as http://127.0.0.1:8000/v1, got {v!r}")
        return v.rstrip("/")

    def record_config(self) -> dict[str, Any]:
        """What changes the guard's verdicts (hashed into the store key of its results): no secrets."""
        return self.model_dump(include={"monitor", "monitor_model", "monitor_options", "threshold", "check_every",
                                        "first_check", "window", "policy", "release", "opaque_reasoning",
                                        "on_monitor_error"})
