"""The Fabric ledger: the swarm chaincode reached through a peer's Gateway service.

A thin client of Hyperledger Fabric's Gateway gRPC API (the API the official
Go, Node and Java gateway clients use), written with ``grpcio``,
``cryptography`` and Fabric's generated protobuf messages
(``hyperledger-fabric-protos``, module ``fabric_protos``). No Fabric SDK.
The messages are built and signed in ``fabric_signing``; the connection
profile is read by ``fabric_profile``. This module sends them and maps the
answers.

A transaction (``invoke``):

1. A ``SignedProposal`` is built (``fabric_signing.build_proposal``), signed
   by the site's ``Signer``.
2. ``Gateway.Endorse`` collects endorsements as the endorsement policy asks
   and returns the transaction envelope; its payload is signed.
3. ``Gateway.Submit`` hands it to the ordering service.
4. ``Gateway.CommitStatus`` (a signed request) waits until a block holding
   it is validated. Only ``VALID`` counts; an ``MVCC_READ_CONFLICT`` (another
   site changed the same record between endorsement and commit) is retried
   with a new proposal, transparently. So is an endorsement that this
   site's peer gave but other organisations' peers refused or gave
   differently (their ledgers a block behind or ahead).

A query (``query``) is ``Gateway.Evaluate`` of the same kind of proposal.

Errors map onto the ``Ledger`` interface: a refusal by the contract
(the chaincode's message starts with ``CODE: ``) raises ``ContractError`` with
the same code as the embedded ledger; an unreachable peer or orderer raises
``LedgerUnavailable``; anything else raises a ``FabricError`` naming the
transaction and the reason.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from sn_service.ledger.base import ContractError, Ledger, LedgerUnavailable
from sn_service.ledger.fabric_pb import gateway_pb2, gateway_pb2_grpc, transaction_pb2
from sn_service.ledger.fabric_profile import ProfileError, SiteProfile, load_profile
from sn_service.ledger.fabric_signing import (
    Proposal,
    Signer,
    build_proposal,
    chaincode_arg,
    envelope_result,
    transaction_id,
)
from sn_service.tls.x509_names import fabric_identity, go_subject_string

__all__ = [
    "CONTRACT_ERROR_CODES",
    "CommitError",
    "EndorsementError",
    "FabricError",
    "FabricLedger",
    "ProfileError",
    "Signer",
    "SiteProfile",
    "TransactionConflict",
    "build_proposal",
    "chaincode_arg",
    "fabric_identity",
    "go_subject_string",
    "load_profile",
    "transaction_id",
]

log = logging.getLogger(__name__)

#: Every error code of the swarm contract (``contract/README.md``).
CONTRACT_ERROR_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "UNKNOWN_FUNCTION",
        "TASK_NOT_FOUND",
        "SPEC_MISMATCH",
        "FINGERPRINT_MISMATCH",
        "IDENTITY_MISMATCH",
        "IDENTITY_IN_USE",
        "NODE_NOT_REGISTERED",
        "NODE_NOT_ACTIVE",
        "TASK_DONE",
        "ROUND_NOT_FOUND",
        "WRONG_ROUND",
        "ROUND_CLOSED",
        "DUPLICATE_SUBMISSION",
        "ROUND_NOT_OPEN",
        "NOT_CLOSABLE",
        "ROUND_NOT_CLOSED",
        "NOT_LEADER",
        "DEADLINE_NOT_PASSED",
    }
)
# "CODE: text" anywhere in a message (the gateway wraps the chaincode's
# message, e.g. "chaincode response 500, NOT_LEADER: ..."): the code must not
# be glued to a preceding letter, digit or underscore.
_CONTRACT_ERROR_RE = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(sorted(CONTRACT_ERROR_CODES, key=len, reverse=True)) + r"): ?(.*)", re.DOTALL
)

# Validation codes after which the transaction is endorsed again and resubmitted. An endorsement
# policy failure is one when an organisation joined the channel between endorsement and validation
# (MAJORITY Endorsement of 3 organisations is 2, of 4 it is 3): endorsed again, it meets the new policy.
_RETRY_VALIDATION_CODES = frozenset({"MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT", "ENDORSEMENT_POLICY_FAILURE"})
# gRPC codes that mean "not reachable right now": the caller may retry.
_UNAVAILABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Gateway and peer messages that mean a peer, orderer or chaincode server is not up (right now). "No
# combination of peers": too few organisations' peers are known alive to meet the endorsement policy, as
# for a few seconds after a peer restarts, until discovery sees the others again (FAILED_PRECONDITION).
_NO_PEERS_RE = re.compile(
    r"due to unavailability of peers|no peers available|failed to find any endorsing peers|no orderer nodes available"
    r"|could not launch chaincode|chaincode stream terminated|no combination of peers can be derived"
)
# The endorsers disagreed (e.g. one peer had not yet committed the last block): endorsing again helps.
_ENDORSEMENT_MISMATCH = "ProposalResponsePayloads do not match"
# The gateway's first endorsement (its own organisation's peer) succeeded but too few others did.
_PARTIAL_ENDORSEMENT = "failed to collect enough transaction endorsements"


# ---------------------------------------------------------------- errors


class FabricError(Exception):
    """A Fabric transaction or query failed for a reason other than the contract's refusal.

    Attributes:
        tx_id: the transaction ID (``""`` if no proposal was built).
        fn: the chaincode function.
        reason: what went wrong, as the gateway or peer said it.
    """

    def __init__(self, fn: str, tx_id: str, reason: str) -> None:
        super().__init__(f"Fabric transaction {tx_id or '-'} ({fn}): {reason}")
        self.fn = fn
        self.tx_id = tx_id
        self.reason = reason


class EndorsementError(FabricError):
    """The peers did not endorse the proposal (and the contract did not refuse it)."""


class CommitError(FabricError):
    """The transaction was ordered but the peers marked it invalid.

    Attributes:
        validation_code: the ``TxValidationCode`` name, e.g. ``ENDORSEMENT_POLICY_FAILURE``.
    """

    def __init__(self, fn: str, tx_id: str, validation_code: str) -> None:
        super().__init__(fn, tx_id, f"committed as invalid: {validation_code}")
        self.validation_code = validation_code


class TransactionConflict(FabricError, LedgerUnavailable):
    """Concurrent transactions kept invalidating this one (MVCC conflicts) after every retry.

    It is a ``LedgerUnavailable`` too: trying again later is the right answer.
    """


# google.rpc.Status, built here into a private pool so that neither
# googleapis-common-protos nor grpcio-status is needed to read the gateway's
# error details (trailer "grpc-status-details-bin").
def _status_message_class() -> type:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="swarm/rpc_status.proto", package="google.rpc", syntax="proto3", dependency=["google/protobuf/any.proto"]
    )
    msg = fdp.message_type.add(name="Status")
    f = descriptor_pb2.FieldDescriptorProto
    msg.field.add(name="code", number=1, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    msg.field.add(name="message", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    msg.field.add(
        name="details", number=3, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED, type_name=".google.protobuf.Any"
    )
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


_RpcStatus = _status_message_class()


def rpc_error_details(error: grpc.RpcError) -> list[gateway_pb2.ErrorDetail]:
    """The ``gateway.ErrorDetail`` messages (one per peer or orderer) attached to a gRPC error."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    details = []
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            status = _RpcStatus.FromString(value)
        except DecodeError:
            continue
        for item in status.details:
            if item.type_url.endswith("/gateway.ErrorDetail"):
                try:
                    details.append(gateway_pb2.ErrorDetail.FromString(item.value))
                except DecodeError:
                    continue
    return details


def _rpc_texts(error: grpc.RpcError) -> tuple[str, list[str]]:
    # The gateway's own message, and each peer's "<msp> <address>: <message>".
    message = error.details() if hasattr(error, "details") else str(error)
    return message or "", [f"{d.msp_id or '?'} at {d.address or '?'}: {d.message}" for d in rpc_error_details(error)]


def contract_error_in(texts: Sequence[str]) -> ContractError | None:
    """The first contract refusal (``CODE: text``) found in ``texts``, if any."""
    for text in texts:
        m = _CONTRACT_ERROR_RE.search(text)
        if m:
            return ContractError(m.group(1), m.group(2).strip())
    return None


# ---------------------------------------------------------------- the ledger


class FabricLedger(Ledger):
    """The swarm contract on a Fabric channel, through one peer's Gateway service.

    Args:
        gateway_address: the peer's ``host:port`` (its Gateway service).
        channel: the channel name.
        chaincode: the chaincode name.
        signer: the site's identity (certificate and key) that signs every call.
        tls_ca_pem: the CA certificate(s) of the peer's TLS server certificate (PEM).
        server_name_override: the host name the peer's TLS certificate is issued to,
            when it differs from the address's host (e.g. ``peer0.org1.example.com``).
        endorse_timeout_s, submit_timeout_s, commit_timeout_s, evaluate_timeout_s:
            deadlines of the gRPC calls.
        conflict_retries: how often a transaction is endorsed again after an
            MVCC conflict or endorsers that disagreed, before ``TransactionConflict``.
    """

    def __init__(
        self,
        gateway_address: str,
        channel: str,
        chaincode: str,
        signer: Signer,
        tls_ca_pem: bytes | None,
        server_name_override: str | None = None,
        endorse_timeout_s: float = 30.0,
        submit_timeout_s: float = 30.0,
        commit_timeout_s: float = 60.0,
        evaluate_timeout_s: float = 30.0,
        conflict_retries: int = 8,
    ) -> None:
        self.gateway_address = gateway_address
        self.channel = channel
        self.chaincode = chaincode
        self.signer = signer
        self.identity = signer.identity
        self.endorse_timeout_s = endorse_timeout_s
        self.submit_timeout_s = submit_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self.evaluate_timeout_s = evaluate_timeout_s
        self.conflict_retries = conflict_retries
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        if tls_ca_pem is None:
            self._channel = grpc.insecure_channel(gateway_address, options=options)
        else:
            if server_name_override:
                options += [
                    ("grpc.ssl_target_name_override", server_name_override),
                    ("grpc.default_authority", server_name_override),
                ]
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca_pem)
            self._channel = grpc.secure_channel(gateway_address, credentials, options=options)
        self._gateway = gateway_pb2_grpc.GatewayStub(self._channel)

    @classmethod
    def from_profile(cls, path: str | Path, site: str, **options: Any) -> FabricLedger:
        """Connects as ``site`` with the settings of a connection profile (see ``load_profile``)."""
        p = load_profile(path, site)
        try:
            signer = Signer(p.mspid, p.client_cert.read_bytes(), p.client_key.read_bytes())
        except ValueError as exc:
            raise ProfileError(f"{path}: sites.{site}.client ({p.client_cert}, {p.client_key}): {exc}") from exc
        return cls(
            p.gateway_address,
            p.channel,
            p.chaincode,
            signer,
            p.tls_ca_cert.read_bytes(),
            p.server_name_override,
            **options,
        )

    # ------------------------------------------------------------ errors

    def _raise_rpc(self, exc: grpc.RpcError, step: str, fn: str, tx_id: str) -> NoReturn:
        message, peers = _rpc_texts(exc)
        code = exc.code() if hasattr(exc, "code") else None
        reason = f"{step} failed ({code.name if code else 'unknown status'}): {message}"
        if peers:
            reason += " [" + "; ".join(peers) + "]"
        # The gateway's own organisation endorsed, but the other endorsers refused or
        # answered otherwise: their ledgers are at another height (a block not yet
        # committed everywhere). That is no verdict of the contract; endorsing again is.
        disagreement = step == "endorse" and (
            _PARTIAL_ENDORSEMENT in message or any(_ENDORSEMENT_MISMATCH in t for t in (message, *peers))
        )
        if not disagreement:
            refusal = contract_error_in([*peers, message])
            if refusal is not None:
                raise refusal from exc
        if code in _UNAVAILABLE_CODES or _NO_PEERS_RE.search(message + " " + " ".join(peers)):
            raise LedgerUnavailable(
                f"Fabric gateway {self.gateway_address}: transaction {tx_id} ({fn}): {reason}"
            ) from exc
        if disagreement:
            raise TransactionConflict(fn, tx_id, reason) from exc
        if step in ("endorse", "evaluate"):
            raise EndorsementError(fn, tx_id, reason) from exc
        raise FabricError(fn, tx_id, reason) from exc

    # ------------------------------------------------------------ calls

    def _proposal(self, fn: str, args: Sequence[Any]) -> Proposal:
        return build_proposal(self.signer, self.channel, self.chaincode, fn, args)

    def _submit_once(self, fn: str, args: Sequence[Any]) -> tuple[str, bytes]:
        """Endorse, Submit and wait for the commit; returns the transaction ID and the chaincode's result."""
        proposal = self._proposal(fn, args)
        tx_id = proposal.tx_id
        try:
            endorsed = self._gateway.Endorse(
                gateway_pb2.EndorseRequest(
                    transaction_id=tx_id, channel_id=self.channel, proposed_transaction=proposal.signed
                ),
                timeout=self.endorse_timeout_s,
            )
        except grpc.RpcError as exc:
            self._raise_rpc(exc, "endorse", fn, tx_id)
        envelope = endorsed.prepared_transaction
        try:
            result = envelope_result(envelope)
        except (DecodeError, ValueError) as exc:
            raise EndorsementError(fn, tx_id, f"cannot read the endorsed transaction: {exc}") from exc
        envelope.signature = self.signer.sign(envelope.payload)
        try:
            self._gateway.Submit(
                gateway_pb2.SubmitRequest(transaction_id=tx_id, channel_id=self.channel, prepared_transaction=envelope),
                timeout=self.submit_timeout_s,
            )
        except grpc.RpcError as exc:
            self._raise_rpc(exc, "submit", fn, tx_id)
        request = gateway_pb2.CommitStatusRequest(
            transaction_id=tx_id, channel_id=self.channel, identity=self.signer.creator
        ).SerializeToString()
        try:
            status = self._gateway.CommitStatus(
                gateway_pb2.SignedCommitStatusRequest(request=request, signature=self.signer.sign(request)),
                timeout=self.commit_timeout_s,
            )
        except grpc.RpcError as exc:
            self._raise_rpc(exc, "commit status", fn, tx_id)
        code = transaction_pb2.TxValidationCode.Name(status.result)
        if code in _RETRY_VALIDATION_CODES:
            raise TransactionConflict(fn, tx_id, f"committed as invalid: {code}")
        if code != "VALID":
            raise CommitError(fn, tx_id, code)
        return tx_id, result

    def invoke(self, fn: str, *args: Any) -> dict:
        """Submits ``fn(*args)`` and waits until it is committed VALID; returns the chaincode's result.

        A transaction invalidated by a concurrent one (``MVCC_READ_CONFLICT``),
        or by a change of the channel's members between endorsement and commit
        (``ENDORSEMENT_POLICY_FAILURE``), or endorsed by this site's peer but refused or answered otherwise by
        the other endorsers (their ledgers not yet at the same block), is
        endorsed again, up to ``conflict_retries`` times, with a short random
        back-off. A refusal by this site's own peer is the contract's verdict
        on the state this site sees: ``ContractError``.
        """
        attempt = 0
        while True:
            try:
                return self._parse(fn, *self._submit_once(fn, args))
            except TransactionConflict as exc:
                if attempt >= self.conflict_retries:
                    raise
                delay = random.uniform(0, min(1.0, 0.05 * 2**attempt))
                log.debug("%s; endorsing again in %.3f s (retry %d)", exc, delay, attempt + 1)
                attempt += 1
                time.sleep(delay)

    def query(self, fn: str, *args: Any) -> dict:
        """Evaluates ``fn(*args)`` on a peer (nothing is written) and returns the chaincode's result."""
        proposal = self._proposal(fn, args)
        try:
            response = self._gateway.Evaluate(
                gateway_pb2.EvaluateRequest(
                    transaction_id=proposal.tx_id, channel_id=self.channel, proposed_transaction=proposal.signed
                ),
                timeout=self.evaluate_timeout_s,
            )
        except grpc.RpcError as exc:
            self._raise_rpc(exc, "evaluate", fn, proposal.tx_id)
        result = response.result
        if not 200 <= result.status < 400:
            refusal = contract_error_in([result.message])
            if refusal is not None:
                raise refusal
            raise EndorsementError(fn, proposal.tx_id, f"evaluate returned status {result.status}: {result.message}")
        return self._parse(fn, proposal.tx_id, result.payload)

    @staticmethod
    def _parse(fn: str, tx_id: str, payload: bytes) -> dict:
        try:
            value = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FabricError(fn, tx_id, f"the chaincode's result is not JSON: {payload[:200]!r}") from exc
        if not isinstance(value, dict):
            raise FabricError(fn, tx_id, f"the chaincode's result is not a JSON object: {payload[:200]!r}")
        return value

    def close(self) -> None:
        """Closes the gRPC channel to the peer."""
        self._channel.close()
