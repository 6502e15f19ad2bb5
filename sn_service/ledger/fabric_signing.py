"""Fabric transactions as bytes: the site's signing identity, signed proposals, and the result in an envelope.

Pure message construction, no network (``sn_service.ledger.fabric`` sends them):

- ``Signer``: the site's ``SerializedIdentity`` (MSP ID and certificate PEM)
  and its key. Signatures are ECDSA P-256 over SHA-256, DER encoded, with
  low S, as Fabric requires.
- ``build_proposal``: a ``SignedProposal``. The nonce is 24 random bytes, the
  transaction ID ``hex(sha256(nonce + creator))``; the channel header
  (``ENDORSER_TRANSACTION``) carries the timestamp the chaincode uses as the
  transaction's time; the payload is the ``ChaincodeInvocationSpec`` with the
  function name and the arguments as strings (``chaincode_arg``).
- ``envelope_result``: the chaincode's return value inside an endorsed
  transaction envelope.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from google.protobuf import timestamp_pb2

from sn_service.ledger.fabric_pb import (
    chaincode_pb2,
    common_pb2,
    identities_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from sn_service.tls.x509_names import fabric_identity

NONCE_BYTES = 24

# The order n of the P-256 group: a signature (r, s) with s > n/2 is replaced
# by (r, n - s), which Fabric requires (it refuses high-S signatures).
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_ORDER = _P256_ORDER >> 1


# ---------------------------------------------------------------- arguments


def chaincode_arg(value: Any) -> bytes:
    """One chaincode argument as the chaincode expects it (UTF-8 text).

    ``str`` goes as it is; ``int`` as its decimal text; ``dict``/``list`` as
    compact JSON text; ``bool``, ``float`` and ``None`` as their JSON text
    (the chaincode then refuses them where an integer is due, with
    ``INVALID_ARGUMENT``, as the embedded contract does).
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = json.dumps(value)
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    else:
        raise TypeError(f"cannot pass a {type(value).__name__} to the chaincode: use str, int or dict")
    return text.encode("utf-8")


# ---------------------------------------------------------------- signing


class Signer:
    """A site's Fabric identity: its MSP ID, certificate and private key.

    Args:
        mspid: the organisation's MSP ID, e.g. ``Org1MSP``.
        cert_pem: the client certificate (PEM), sent as the creator.
        key_pem: its private key (PEM, unencrypted; ECDSA on P-256).
    """

    def __init__(self, mspid: str, cert_pem: bytes, key_pem: bytes) -> None:
        self.mspid = mspid
        self.cert_pem = cert_pem
        self.cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"the {mspid} client key must be an ECDSA P-256 key (got {type(key).__name__})")
        if key.public_key().public_numbers() != self.cert.public_key().public_numbers():
            raise ValueError(f"the {mspid} client key does not belong to its certificate")
        self._key = key
        #: The serialized ``SerializedIdentity``: the proposal's creator.
        self.creator = identities_pb2.SerializedIdentity(mspid=mspid, id_bytes=cert_pem).SerializeToString()
        #: ``<MSPID>::<subject>``, as the chaincode sees this identity.
        self.identity = fabric_identity(mspid, self.cert)

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature of ``data``, DER encoded, with low S."""
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        if s > _P256_HALF_ORDER:
            s = _P256_ORDER - s
        return encode_dss_signature(r, s)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key of the certificate (to verify signatures)."""
        return self._key.public_key()


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class Proposal:
    """A signed proposal and its transaction ID."""

    tx_id: str
    signed: proposal_pb2.SignedProposal


def transaction_id(nonce: bytes, creator: bytes) -> str:
    """Fabric's transaction ID: the hex SHA-256 of the nonce followed by the creator."""
    return hashlib.sha256(nonce + creator).hexdigest()


def build_proposal(
    signer: Signer,
    channel: str,
    chaincode: str,
    fn: str,
    args: Sequence[Any],
    nonce: bytes | None = None,
    timestamp_ns: int | None = None,
) -> Proposal:
    """Builds and signs the proposal to run ``fn(*args)`` of ``chaincode`` on ``channel``."""
    nonce = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
    tx_id = transaction_id(nonce, signer.creator)
    ns = time.time_ns() if timestamp_ns is None else timestamp_ns
    cc_id = chaincode_pb2.ChaincodeID(name=chaincode)
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.HeaderType.ENDORSER_TRANSACTION,
        timestamp=timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000),
        channel_id=channel,
        tx_id=tx_id,
        epoch=0,
        extension=proposal_pb2.ChaincodeHeaderExtension(chaincode_id=cc_id).SerializeToString(),
    )
    header = common_pb2.Header(
        channel_header=channel_header.SerializeToString(),
        signature_header=common_pb2.SignatureHeader(creator=signer.creator, nonce=nonce).SerializeToString(),
    )
    spec = chaincode_pb2.ChaincodeSpec(
        chaincode_id=cc_id,
        input=chaincode_pb2.ChaincodeInput(args=[fn.encode("utf-8"), *(chaincode_arg(a) for a in args)]),
    )
    payload = proposal_pb2.ChaincodeProposalPayload(
        input=chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=spec).SerializeToString()
    )
    proposal_bytes = proposal_pb2.Proposal(
        header=header.SerializeToString(), payload=payload.SerializeToString()
    ).SerializeToString()
    return Proposal(
        tx_id, proposal_pb2.SignedProposal(proposal_bytes=proposal_bytes, signature=signer.sign(proposal_bytes))
    )


def envelope_result(envelope: common_pb2.Envelope) -> bytes:
    """The chaincode's return value inside an endorsed transaction envelope.

    Payload -> Transaction -> ChaincodeActionPayload -> ProposalResponsePayload.extension
    -> ChaincodeAction.response.payload.
    """
    payload = common_pb2.Payload.FromString(envelope.payload)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    if not transaction.actions:
        raise ValueError("the endorsed transaction has no action")
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(transaction.actions[0].payload)
    response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
        action_payload.action.proposal_response_payload
    )
    action = proposal_pb2.ChaincodeAction.FromString(response_payload.extension)
    return action.response.payload
