"""Request and response bodies of the swarm-network service's HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from swarm_wire.names import NAME_PATTERN, SHA256_PATTERN
from swarm_wire.options import MERGE_METHODS


class Strict(BaseModel):
    """Rejects unknown fields and coercions: wrong types are 422, never guessed."""

    model_config = ConfigDict(extra="forbid", strict=True)


class TaskSpec(Strict):
    """What every site of a task must agree on (the contract's spec)."""

    fingerprint: str = Field(pattern=SHA256_PATTERN)
    layout: str = Field(min_length=1, max_length=1 << 20)
    min_peers: int = Field(ge=1, le=10_000)
    merge_method: Literal[MERGE_METHODS]
    quorum_wait_ms: int = Field(ge=0, le=86_400_000)
    leader_timeout_ms: int = Field(ge=1, le=86_400_000)
    max_rounds: int = Field(ge=0, le=1_000_000_000)
    secure_aggregation: bool = Field(
        default=False, description="merge by secure aggregation: the leader sees masked models and the mean only"
    )


class JoinRequest(Strict):
    """The callback joins a task with its model's spec."""

    task: str = Field(pattern=NAME_PATTERN)
    spec: TaskSpec
    trainer_pid: int | None = Field(
        default=None,
        ge=1,
        le=(1 << 31) - 1,
        description="the training process's pid: a service on the same host leaves the task for it if the "
        "process ends without checking in (crashed, killed), so the others stop waiting for this site",
    )


class MergedRef(BaseModel):
    """A merged model on the ledger."""

    round: int
    sha256: str
    node: str


class JoinResponse(BaseModel):
    """The task as the ledger has it after joining."""

    task: str
    node: str
    status: str
    current_round: int
    latest_merged: MergedRef | None
    nodes: list[str]
    local_inbox: str | None = Field(
        default=None,
        description="a folder where a training process on this machine may write its weights and name the file "
        "(blob_file) instead of uploading them",
    )
    local_store: str | None = Field(
        default=None,
        description="this service's blob store, where a training process on this machine may read "
        "a merged model (checking its sha256) instead of downloading it",
    )


class SyncStarted(BaseModel):
    """A sync job was accepted; poll it by id."""

    sync_id: str
    round: int | None = None


class SyncStatus(BaseModel):
    """A sync job's state: what it waits for, or its merged model."""

    sync_id: str
    task: str
    state: Literal["running", "done", "failed"]
    round: int | None = None
    phase: str = ""
    waiting_for: str = ""
    waiting_s: float = 0.0
    merged_sha256: str | None = None
    contributed: bool | None = None
    task_status: str | None = None
    error: str | None = None
    timings_ms: dict[str, float] = Field(
        default_factory=dict, description="milliseconds spent so far in each part of the sync (receive, store, ...)"
    )


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a machine-readable code and a sentence."""

    error: str
    message: str
