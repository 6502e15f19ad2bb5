"""The Fabric Gateway client: proposals, signatures, arguments, identities, errors, profiles.

No Fabric network is needed: an in-process fake Gateway service on
127.0.0.1 (TLS, with a cryptogen-like CA) answers the calls.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import NameAttribute as Attr
from cryptography.x509 import RelativeDistinguishedName as Rdn
from cryptography.x509.oid import NameOID
from fabric_protos.common import common_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf import any_pb2

from sn_service.contract import ContractError
from sn_service.ledger import LedgerUnavailable, open_ledger
from sn_service.ledger.fabric import (
    CommitError,
    EndorsementError,
    FabricLedger,
    TransactionConflict,
    contract_error_in,
)
from sn_service.ledger.fabric_profile import ProfileError, load_profile
from sn_service.ledger.fabric_signing import Signer, build_proposal, chaincode_arg, transaction_id
from sn_service.tls.x509_names import go_subject_string

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
CRYPTOGEN_SUBJECT = x509.Name(
    [
        Attr(NameOID.COUNTRY_NAME, "US"),
        Attr(NameOID.STATE_OR_PROVINCE_NAME, "California"),
        Attr(NameOID.LOCALITY_NAME, "San Francisco"),
        Attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "client"),
        Attr(NameOID.COMMON_NAME, "User1@org1.example.com"),
    ]
)


# ---------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    ca: bool = False,
    dns: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def crypto(tmp_path_factory) -> dict:
    """A cryptogen-like org: a CA, User1's signing cert and key, and a peer TLS CA and server cert."""
    root = tmp_path_factory.mktemp("crypto")
    ca_key, user_key, tls_ca_key, tls_key = _key(), _key(), _key(), _key()
    ca_name = x509.Name([Attr(NameOID.ORGANIZATION_NAME, "org1.example.com"), Attr(NameOID.COMMON_NAME, "ca")])
    ca = _cert(ca_name, ca_key, ca=True)
    user = _cert(CRYPTOGEN_SUBJECT, user_key, ca_name, ca_key)
    tls_ca_name = x509.Name([Attr(NameOID.COMMON_NAME, "tlsca.org1.example.com")])
    tls_ca = _cert(tls_ca_name, tls_ca_key, ca=True)
    tls = _cert(
        x509.Name([Attr(NameOID.COMMON_NAME, "peer0.org1.example.com")]),
        tls_key,
        tls_ca_name,
        tls_ca_key,
        dns="peer0.org1.example.com",
    )
    files = {
        "cert": _pem(user),
        "key": _pem_key(user_key),
        "ca": _pem(ca),
        "tls_ca": _pem(tls_ca),
        "tls_cert": _pem(tls),
        "tls_key": _pem_key(tls_key),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = root / f"{name}.pem"
        paths[name].write_bytes(data)
    return {"files": files, "paths": paths, "root": root}


@pytest.fixture(scope="module")
def signer(crypto) -> Signer:
    return Signer("Org1MSP", crypto["files"]["cert"], crypto["files"]["key"])


# ---------------------------------------------------------------- proposals and signatures


def test_proposal_parses_back(signer):
    nonce = bytes(range(24))
    spec = {"min_peers": 2, "layout": "f32[2]"}
    p = build_proposal(
        signer, "swarm", "swarm", "InitTask", ["t1", spec], nonce=nonce, timestamp_ns=1_700_000_000_123_456_789
    )
    proposal = proposal_pb2.Proposal.FromString(p.signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    ch = common_pb2.ChannelHeader.FromString(header.channel_header)
    sh = common_pb2.SignatureHeader.FromString(header.signature_header)
    assert ch.type == common_pb2.HeaderType.ENDORSER_TRANSACTION
    assert ch.channel_id == "swarm"
    assert ch.epoch == 0
    assert (ch.timestamp.seconds, ch.timestamp.nanos) == (1_700_000_000, 123_456_789)
    assert proposal_pb2.ChaincodeHeaderExtension.FromString(ch.extension).chaincode_id.name == "swarm"
    # The creator is the serialized identity; the tx id is sha256(nonce + creator).
    creator = identities_pb2.SerializedIdentity.FromString(sh.creator)
    assert creator.mspid == "Org1MSP"
    assert creator.id_bytes == signer.cert_pem
    assert sh.nonce == nonce
    assert ch.tx_id == p.tx_id == hashlib.sha256(nonce + sh.creator).hexdigest() == transaction_id(nonce, sh.creator)
    payload = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    cis = chaincode_pb2.ChaincodeInvocationSpec.FromString(payload.input)
    assert cis.chaincode_spec.chaincode_id.name == "swarm"
    assert list(cis.chaincode_spec.input.args) == [b"InitTask", b"t1", b'{"layout":"f32[2]","min_peers":2}']
    # The proposal bytes are signed by the creator's key.
    signer.public_key().verify(p.signed.signature, p.signed.proposal_bytes, ec.ECDSA(hashes.SHA256()))


def test_fresh_nonce_and_tx_id_per_proposal(signer):
    a = build_proposal(signer, "swarm", "swarm", "GetTask", ["t"])
    b = build_proposal(signer, "swarm", "swarm", "GetTask", ["t"])
    assert a.tx_id != b.tx_id
    sh = common_pb2.SignatureHeader.FromString(
        common_pb2.Header.FromString(proposal_pb2.Proposal.FromString(a.signed.proposal_bytes).header).signature_header
    )
    assert len(sh.nonce) == 24


def test_signatures_verify_and_are_low_s(signer):
    for i in range(300):
        data = f"message {i}".encode()
        sig = signer.sign(data)
        signer.public_key().verify(sig, data, ec.ECDSA(hashes.SHA256()))
        _, s = decode_dss_signature(sig)
        assert 0 < s <= P256_N // 2
    with pytest.raises(InvalidSignature):
        signer.public_key().verify(signer.sign(b"a"), b"b", ec.ECDSA(hashes.SHA256()))


def test_signer_refuses_a_key_of_another_cert(crypto):
    with pytest.raises(ValueError, match="does not belong"):
        Signer("Org1MSP", crypto["files"]["cert"], _pem_key(_key()))
    rsa_like = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        Signer("Org1MSP", crypto["files"]["cert"], _pem_key(rsa_like))


# ---------------------------------------------------------------- arguments


def test_chaincode_arguments():
    assert chaincode_arg("site-a") == b"site-a"
    assert chaincode_arg(3) == b"3"
    assert chaincode_arg(0) == b"0"
    assert chaincode_arg(2**53 - 1) == b"9007199254740991"
    assert chaincode_arg({"b": 1, "a": [1, 2], "c": {"x": None}}) == b'{"a":[1,2],"b":1,"c":{"x":null}}'
    assert chaincode_arg("") == b""
    assert chaincode_arg("Zoë") == "Zoë".encode()
    # Not integers: sent as their JSON text so the chaincode refuses them (INVALID_ARGUMENT).
    assert chaincode_arg(True) == b"true"
    assert chaincode_arg(3.0) == b"3.0"
    assert chaincode_arg(None) == b"null"
    with pytest.raises(TypeError):
        chaincode_arg(b"raw")
    with pytest.raises(TypeError):
        chaincode_arg(object())


# ---------------------------------------------------------------- identity (Go's pkix.Name.String)

UID = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")
# Each expected string was produced by Go 1.26's crypto/x509 (Certificate.Subject.String())
# on a certificate with this subject; test_subject_matches_go_when_go_is_installed redoes it.
GO_SUBJECTS = {
    "cryptogen": (CRYPTOGEN_SUBJECT, "CN=User1@org1.example.com,OU=client,L=San Francisco,ST=California,C=US"),
    "reversed": (
        x509.Name(
            [
                Attr(NameOID.COMMON_NAME, "site-a"),
                Attr(NameOID.ORGANIZATION_NAME, "Hospital A"),
                Attr(NameOID.COUNTRY_NAME, "DE"),
            ]
        ),
        "CN=site-a,O=Hospital A,C=DE",
    ),
    "escapes": (
        x509.Name(
            [
                Attr(NameOID.COMMON_NAME, ' #lead, "q" +<x>;\\ trail '),
                Attr(NameOID.ORGANIZATION_NAME, "#a#"),
                Attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "a=b"),
                Attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "peer"),
            ]
        ),
        'CN=\\ #lead\\, \\"q\\" \\+\\<x\\>\\;\\\\ trail\\ ,OU=a=b+OU=peer,O=\\#a#',
    ),
    "extra": (
        x509.Name(
            [
                Attr(NameOID.DOMAIN_COMPONENT, "org"),
                Attr(NameOID.DOMAIN_COMPONENT, "example"),
                Attr(NameOID.EMAIL_ADDRESS, "admin@example.org"),
                Attr(NameOID.COMMON_NAME, "first"),
                Attr(NameOID.COMMON_NAME, "second"),
                Attr(UID, "Zoë*"),
                Attr(NameOID.SERIAL_NUMBER, "42"),
                Attr(NameOID.STREET_ADDRESS, "1 Main St"),
                Attr(NameOID.POSTAL_CODE, "12345"),
                Attr(NameOID.TITLE, "x" * 200),
            ]
        ),
        "SERIALNUMBER=42,CN=second,POSTALCODE=12345,STREET=1 Main St,2.5.4.12=#1381c8"
        + "78" * 200
        + ",0.9.2342.19200300.100.1.1=#0c055a6fc3ab2a,1.2.840.113549.1.9.1=#0c1161646d696e406578616d706c652e6f7267"
        + ",0.9.2342.19200300.100.1.25=#13076578616d706c65,0.9.2342.19200300.100.1.25=#13036f7267",
    ),
    "multivalued": (
        x509.Name(
            [
                Rdn([Attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "b"), Attr(NameOID.COMMON_NAME, "cn1")]),
                Rdn([Attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "a"), Attr(NameOID.USER_ID, "u1")]),
                Rdn([Attr(NameOID.ORGANIZATION_NAME, "Org")]),
            ]
        ),
        "CN=cn1,OU=b+OU=a,O=Org,0.9.2342.19200300.100.1.1=#13027531",
    ),
    "unicode": (
        x509.Name([Attr(NameOID.COMMON_NAME, "Ünïcødé 名前 "), Attr(NameOID.LOCALITY_NAME, "São Paulo")]),
        "CN=Ünïcødé 名前\\ ,L=São Paulo",
    ),
}


@pytest.mark.parametrize("case", sorted(GO_SUBJECTS))
def test_subject_string_matches_go(case):
    name, expected = GO_SUBJECTS[case]
    assert go_subject_string(name) == expected
    # Parsed back from a real certificate, as the chaincode does.
    key = _key()
    cert = x509.load_pem_x509_certificate(_pem(_cert(name, key)))
    assert go_subject_string(cert.subject) == expected


def test_identity_is_mspid_and_go_subject(signer):
    assert signer.identity == "Org1MSP::CN=User1@org1.example.com,OU=client,L=San Francisco,ST=California,C=US"


GO_PROGRAM = """package main

import (
\t"crypto/x509"
\t"encoding/pem"
\t"fmt"
\t"os"
)

func main() {
\tfor _, f := range os.Args[1:] {
\t\tb, err := os.ReadFile(f)
\t\tif err != nil {
\t\t\tpanic(err)
\t\t}
\t\tblock, _ := pem.Decode(b)
\t\tc, err := x509.ParseCertificate(block.Bytes)
\t\tif err != nil {
\t\t\tpanic(err)
\t\t}
\t\tfmt.Println(c.Subject.String())
\t}
}
"""


def test_subject_matches_go_when_go_is_installed(tmp_path):
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        pytest.skip("no Go toolchain: the expected strings above were made with Go 1.26")
    (tmp_path / "main.go").write_text(GO_PROGRAM)
    files, expected = [], []
    for case, (name, _) in sorted(GO_SUBJECTS.items()):
        path = tmp_path / f"{case}.pem"
        path.write_bytes(_pem(_cert(name, _key())))
        files.append(str(path))
        expected.append(go_subject_string(name))
    out = subprocess.run(
        [go, "run", "main.go", *files],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GO111MODULE": "off", "GOFLAGS": ""},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected


# ---------------------------------------------------------------- error texts


def test_contract_error_found_in_gateway_texts():
    err = contract_error_in(["chaincode response 500, NOT_LEADER: node 'site-b' does not lead round 3; 'site-a' does"])
    assert (err.code, err.message) == ("NOT_LEADER", "node 'site-b' does not lead round 3; 'site-a' does")
    assert contract_error_in(["TASK_NOT_FOUND: no task 'x'"]).code == "TASK_NOT_FOUND"
    assert contract_error_in(["ROUND_NOT_OPEN: round 2 is closed"]).code == "ROUND_NOT_OPEN"  # not ROUND_...
    assert contract_error_in(["could not launch chaincode", "XNOT_LEADER: y", "SOME_OTHER: z"]) is None


# ---------------------------------------------------------------- a fake Gateway service


def _error_status(code: grpc.StatusCode, message: str, details: list[tuple[str, str]]) -> bytes:
    """A google.rpc.Status with gateway.ErrorDetail entries, serialised by hand (field 1 code, 2 message, 3 Any)."""

    def field(number: int, data: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(data)) + data

    out = _varint(1 << 3) + _varint(code.value[0]) + field(2, message.encode())
    for address, text in details:
        detail = gateway_pb2.ErrorDetail(address=address, msp_id="Org1MSP", message=text)
        any_msg = any_pb2.Any(type_url="type.googleapis.com/gateway.ErrorDetail", value=detail.SerializeToString())
        out += field(3, any_msg.SerializeToString())
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _abort(context, code: grpc.StatusCode, message: str, details: list[tuple[str, str]] = ()) -> None:
    context.set_trailing_metadata([("grpc-status-details-bin", _error_status(code, message, list(details)))])
    context.abort(code, message)


def _unpack(signed: proposal_pb2.SignedProposal) -> tuple[common_pb2.ChannelHeader, bytes, list[bytes], bytes]:
    proposal = proposal_pb2.Proposal.FromString(signed.proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    ch = common_pb2.ChannelHeader.FromString(header.channel_header)
    sh = common_pb2.SignatureHeader.FromString(header.signature_header)
    cis = chaincode_pb2.ChaincodeInvocationSpec.FromString(
        proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload).input
    )
    return ch, sh.creator, list(cis.chaincode_spec.input.args), proposal.header


PEER = "peer0.org1.example.com:7051"


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """Checks every signature like a peer would and answers as the script says.

    ``commit_codes``: the validation codes CommitStatus answers, in turn (then VALID).
    Functions: ``Boom`` -> a contract refusal; ``Broken`` -> a non-contract chaincode
    failure; ``Mismatch`` -> endorsers disagree; ``Stale`` -> another org's peer refuses
    (``stale_left`` times); ``Down`` -> UNAVAILABLE; anything
    else -> ``{"fn", "args", "ts_ms", "caller_msp"}``.
    """

    def __init__(self) -> None:
        self.commit_codes: list[str] = []
        self.stale_left = 0
        self.endorsed: list[str] = []
        self.submitted: list[str] = []
        self.lock = threading.Lock()

    @staticmethod
    def _verify(creator: bytes, signature: bytes, data: bytes) -> None:
        cert = x509.load_pem_x509_certificate(identities_pb2.SerializedIdentity.FromString(creator).id_bytes)
        cert.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
        assert decode_dss_signature(signature)[1] <= P256_N // 2

    def _simulate(self, request, context) -> tuple[common_pb2.ChannelHeader, bytes, bytes, bytes]:
        ch, creator, args, header = _unpack(request.proposed_transaction)
        self._verify(creator, request.proposed_transaction.signature, request.proposed_transaction.proposal_bytes)
        assert request.transaction_id == ch.tx_id and request.channel_id == ch.channel_id
        fn = args[0].decode()
        if fn == "Boom":
            _abort(
                context,
                grpc.StatusCode.ABORTED,
                "failed to endorse transaction, see attached details for more info",
                [
                    (
                        "peer0.org1.example.com:7051",
                        "chaincode response 500, NOT_LEADER: node 'site-b' does not lead round 3",
                    )
                ],
            )
        if fn == "Broken":
            _abort(
                context,
                grpc.StatusCode.ABORTED,
                "failed to endorse transaction, see attached details for more info",
                [("peer0.org1.example.com:7051", "chaincode response 500, internal error: kaput")],
            )
        if fn == "Mismatch":
            _abort(
                context,
                grpc.StatusCode.ABORTED,
                "failed to collect enough transaction endorsements, see attached details for more info",
                [("peer0.org2.example.com:7051", "ProposalResponsePayloads do not match")],
            )
        if fn == "Stale" and self.stale_left > 0:
            self.stale_left -= 1
            _abort(
                context,
                grpc.StatusCode.ABORTED,
                "failed to collect enough transaction endorsements, see attached details for more info",
                [("peer0.org2.example.com:7051", "chaincode response 500, ROUND_NOT_CLOSED: round 0 is open")],
            )
        if fn == "Down":
            context.abort(
                grpc.StatusCode.UNAVAILABLE, "no peers available to evaluate chaincode swarm in channel swarm"
            )
        if fn == "TooFewPeers":  # what a gateway says while discovery has not yet seen restarted peers
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "no combination of peers can be derived which satisfy the endorsement policy: "
                "no peer combination can satisfy the endorsement policy",
            )
        msp = identities_pb2.SerializedIdentity.FromString(creator).mspid
        ts_ms = ch.timestamp.seconds * 1000 + ch.timestamp.nanos // 1_000_000
        result = json.dumps({"fn": fn, "args": [a.decode() for a in args[1:]], "ts_ms": ts_ms, "caller_msp": msp})
        return ch, creator, header, result.encode()

    def Endorse(self, request, context):  # noqa: N802 - the gRPC method name
        ch, _, header, result = self._simulate(request, context)
        action = proposal_pb2.ChaincodeAction(response=proposal_response_pb2.Response(status=200, payload=result))
        prp = proposal_response_pb2.ProposalResponsePayload(proposal_hash=b"h", extension=action.SerializeToString())
        cap = transaction_pb2.ChaincodeActionPayload(
            chaincode_proposal_payload=b"",
            action=transaction_pb2.ChaincodeEndorsedAction(proposal_response_payload=prp.SerializeToString()),
        )
        tx = transaction_pb2.Transaction(
            actions=[transaction_pb2.TransactionAction(header=b"", payload=cap.SerializeToString())]
        )
        payload = common_pb2.Payload(header=common_pb2.Header.FromString(header), data=tx.SerializeToString())
        with self.lock:
            self.endorsed.append(ch.tx_id)
        return gateway_pb2.EndorseResponse(
            prepared_transaction=common_pb2.Envelope(payload=payload.SerializeToString())
        )

    def Submit(self, request, context):  # noqa: N802 - the gRPC method name
        env = request.prepared_transaction
        payload = common_pb2.Payload.FromString(env.payload)
        creator = common_pb2.SignatureHeader.FromString(payload.header.signature_header).creator
        self._verify(creator, env.signature, env.payload)
        with self.lock:
            self.submitted.append(request.transaction_id)
        return gateway_pb2.SubmitResponse()

    def CommitStatus(self, request, context):  # noqa: N802 - the gRPC method name
        inner = gateway_pb2.CommitStatusRequest.FromString(request.request)
        self._verify(inner.identity, request.signature, request.request)
        assert inner.transaction_id in self.submitted
        with self.lock:
            code = self.commit_codes.pop(0) if self.commit_codes else "VALID"
        return gateway_pb2.CommitStatusResponse(result=transaction_pb2.TxValidationCode.Value(code), block_number=7)

    def Evaluate(self, request, context):  # noqa: N802 - the gRPC method name
        if _unpack(request.proposed_transaction)[2][0] == b"Boom":
            _abort(
                context,
                grpc.StatusCode.UNKNOWN,
                "evaluate call to endorser returned error: chaincode response 500, TASK_NOT_FOUND: no task 'x'",
                [("peer0.org1.example.com:7051", "chaincode response 500, TASK_NOT_FOUND: no task 'x'")],
            )
        _, _, _, result = self._simulate(request, context)
        return gateway_pb2.EvaluateResponse(result=proposal_response_pb2.Response(status=200, payload=result))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gateway(crypto):
    """A fake Gateway service over TLS on 127.0.0.1 (certificate for peer0.org1.example.com)."""
    fake = FakeGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    gateway_pb2_grpc.add_GatewayServicer_to_server(fake, server)
    creds = grpc.ssl_server_credentials([(crypto["files"]["tls_key"], crypto["files"]["tls_cert"])])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    fake.address = f"127.0.0.1:{port}"
    yield fake
    server.stop(None)


@pytest.fixture
def ledger(gateway, crypto, signer):
    led = FabricLedger(
        gateway.address,
        "swarm",
        "swarm",
        signer,
        crypto["files"]["tls_ca"],
        "peer0.org1.example.com",
        endorse_timeout_s=5,
        submit_timeout_s=5,
        commit_timeout_s=5,
        evaluate_timeout_s=5,
    )
    yield led
    led.close()


def test_invoke_round_trip(ledger, gateway):
    result = ledger.invoke("Submit", "t", 3, "site-a", "ab" * 32, 120)
    assert result["fn"] == "Submit"
    assert result["args"] == ["t", "3", "site-a", "ab" * 32, "120"]
    assert result["caller_msp"] == "Org1MSP"
    assert gateway.endorsed == gateway.submitted and len(gateway.submitted) == 1
    assert ledger.init_task("t", {"min_peers": 2})["args"] == ["t", '{"min_peers":2}']


def test_query_round_trip(ledger, gateway):
    before = time.time() * 1000
    result = ledger.get_round("t", 0)
    assert {k: result[k] for k in ("fn", "args", "caller_msp")} == {
        "fn": "GetRound",
        "args": ["t", "0"],
        "caller_msp": "Org1MSP",
    }
    assert before - 1 <= result["ts_ms"] <= before + 5000  # the proposal's timestamp, in ms
    assert gateway.submitted == []


def test_contract_refusal_on_invoke_and_query(ledger, gateway):
    with pytest.raises(ContractError) as err:
        ledger.invoke("Boom", "t", 3)
    assert err.value.code == "NOT_LEADER"
    assert err.value.message == "node 'site-b' does not lead round 3"
    assert gateway.submitted == []
    with pytest.raises(ContractError) as err:
        ledger.query("Boom", "x")
    assert err.value.code == "TASK_NOT_FOUND"


def test_other_endorsement_failure_names_transaction_and_reason(ledger):
    with pytest.raises(EndorsementError) as err:
        ledger.invoke("Broken", "t")
    text = str(err.value)
    assert "Broken" in text and "internal error: kaput" in text and err.value.tx_id in text
    assert len(err.value.tx_id) == 64
    assert not isinstance(err.value, LedgerUnavailable)


def test_mvcc_conflict_is_endorsed_again(ledger, gateway):
    gateway.commit_codes = ["MVCC_READ_CONFLICT", "MVCC_READ_CONFLICT"]
    assert ledger.invoke("Register", "t", "site-a", "https://a", "f" * 64)["fn"] == "Register"
    assert len(gateway.submitted) == 3 and len(set(gateway.submitted)) == 3  # a new transaction each time


def test_mvcc_conflict_gives_up_after_the_retries(ledger, gateway):
    ledger.conflict_retries = 2
    gateway.commit_codes = ["MVCC_READ_CONFLICT"] * 5
    with pytest.raises(TransactionConflict) as err:
        ledger.invoke("Close", "t", 0)
    assert "MVCC_READ_CONFLICT" in str(err.value) and "Close" in str(err.value)
    assert isinstance(err.value, LedgerUnavailable)
    assert len(gateway.submitted) == 3


def test_endorsers_disagreeing_is_retried(ledger, gateway):
    ledger.conflict_retries = 1
    with pytest.raises(TransactionConflict, match="ProposalResponsePayloads do not match"):
        ledger.invoke("Mismatch", "t")
    assert len(gateway.submitted) == 0


def test_refusal_by_another_orgs_peer_is_endorsed_again(ledger, gateway):
    """The gateway's own peer endorsed; a lagging peer of another org refused: not the contract's verdict."""
    gateway.stale_left = 2
    assert ledger.invoke("Stale", "t")["fn"] == "Stale"
    assert len(gateway.submitted) == 1
    ledger.conflict_retries = 1
    gateway.stale_left = 5
    with pytest.raises(TransactionConflict, match="ROUND_NOT_CLOSED"):
        ledger.invoke("Stale", "t")


def test_endorsement_policy_failure_is_endorsed_again(ledger, gateway):
    """An organisation joined between endorsement and commit: the policy asks one more; endorsing again meets it."""
    gateway.commit_codes = ["ENDORSEMENT_POLICY_FAILURE"]
    assert ledger.invoke("Publish", "t", 0, "site-a", "cd" * 32)["fn"] == "Publish"
    assert len(gateway.submitted) == 2
    ledger.conflict_retries = 2
    gateway.commit_codes = ["ENDORSEMENT_POLICY_FAILURE"] * 5
    with pytest.raises(TransactionConflict, match="ENDORSEMENT_POLICY_FAILURE"):
        ledger.invoke("Publish", "t", 0, "site-a", "cd" * 32)


def test_invalid_commit_names_transaction_function_and_code(ledger, gateway):
    gateway.commit_codes = ["BAD_CREATOR_SIGNATURE"]
    with pytest.raises(CommitError) as err:
        ledger.invoke("Publish", "t", 0, "site-a", "cd" * 32)
    assert err.value.validation_code == "BAD_CREATOR_SIGNATURE"
    assert err.value.tx_id == gateway.submitted[0]
    assert "Publish" in str(err.value) and err.value.tx_id in str(err.value)
    assert len(gateway.submitted) == 1  # not retried


def test_unavailable_maps_to_ledger_unavailable(ledger):
    with pytest.raises(LedgerUnavailable, match="no peers available"):
        ledger.invoke("Down", "t")
    with pytest.raises(LedgerUnavailable):
        ledger.query("Down", "t")
    with pytest.raises(LedgerUnavailable, match="no combination of peers"):
        ledger.invoke("TooFewPeers", "t")


def test_nothing_listening_is_ledger_unavailable(crypto, signer):
    led = FabricLedger(
        f"127.0.0.1:{_free_port()}",
        "swarm",
        "swarm",
        signer,
        crypto["files"]["tls_ca"],
        "peer0.org1.example.com",
        endorse_timeout_s=2,
        evaluate_timeout_s=2,
    )
    try:
        with pytest.raises(LedgerUnavailable):
            led.get_task("t")
        with pytest.raises(LedgerUnavailable):
            led.leave("t", "site-a")
    finally:
        led.close()


def test_wrong_tls_server_name_is_unavailable(gateway, crypto, signer):
    led = FabricLedger(
        gateway.address,
        "swarm",
        "swarm",
        signer,
        crypto["files"]["tls_ca"],
        "peer0.org2.example.com",
        evaluate_timeout_s=3,
    )
    try:
        with pytest.raises(LedgerUnavailable):
            led.get_task("t")
    finally:
        led.close()


# ---------------------------------------------------------------- profiles


def _profile(crypto, root: Path, **site_changes) -> dict:
    site = {
        "org": "Org1",
        "mspid": "Org1MSP",
        "peer": {
            "name": "peer0.org1.example.com",
            "gateway_address": "127.0.0.1:7060",
            "tls_ca_cert": str(crypto["paths"]["tls_ca"]),
            "ssl_target_name_override": "peer0.org1.example.com",
        },
        "client": {"name": "User1", "cert": str(crypto["paths"]["cert"]), "key": str(crypto["paths"]["key"])},
    }
    site.update(site_changes)
    return {"format": "swarm-fabric-profile/1", "channel": "swarm", "chaincode": "swarm", "sites": {"site-a": site}}


def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_profile_loads(tmp_path, crypto):
    p = load_profile(_write(tmp_path / "c.json", _profile(crypto, tmp_path)), "site-a")
    assert (p.channel, p.chaincode, p.mspid, p.gateway_address) == ("swarm", "swarm", "Org1MSP", "127.0.0.1:7060")
    assert p.server_name_override == "peer0.org1.example.com"
    assert p.client_key == crypto["paths"]["key"]


def test_profile_server_name_override_is_optional(tmp_path, crypto):
    doc = _profile(crypto, tmp_path)
    del doc["sites"]["site-a"]["peer"]["ssl_target_name_override"]
    assert load_profile(_write(tmp_path / "c.json", doc), "site-a").server_name_override is None


def test_profile_relative_paths_are_from_its_folder(tmp_path, crypto):
    doc = _profile(crypto, tmp_path)
    doc["sites"]["site-a"]["client"]["cert"] = "cert.pem"
    doc["sites"]["site-a"]["client"]["key"] = "key.pem"
    doc["sites"]["site-a"]["peer"]["tls_ca_cert"] = "tls_ca.pem"
    p = load_profile(_write(crypto["root"] / "rel.json", doc), "site-a")
    assert p.client_cert == crypto["paths"]["cert"]


def test_from_profile_builds_a_ledger_without_connecting(tmp_path, crypto):
    path = _write(tmp_path / "c.json", _profile(crypto, tmp_path))
    led = open_ledger("fabric", identity="", profile=str(path), site="site-a")
    try:
        assert isinstance(led, FabricLedger)
        assert led.identity == "Org1MSP::CN=User1@org1.example.com,OU=client,L=San Francisco,ST=California,C=US"
    finally:
        led.close()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("channel"), "has no 'channel'"),
        (lambda d: d.update(chaincode=""), "chaincode must be a non-empty string"),
        (lambda d: d.update(format="other/2"), "format 'other/2' is not supported"),
        (lambda d: d.pop("sites"), "has no 'sites'"),
        (lambda d: d["sites"].pop("site-a"), "no site 'site-a' in 'sites' \\(the profile has: none\\)"),
        (lambda d: d["sites"]["site-a"].pop("mspid"), "sites.site-a has no 'mspid'"),
        (lambda d: d["sites"]["site-a"]["peer"].pop("gateway_address"), "sites.site-a.peer has no 'gateway_address'"),
        (lambda d: d["sites"]["site-a"]["peer"].pop("tls_ca_cert"), "sites.site-a.peer has no 'tls_ca_cert'"),
        (lambda d: d["sites"]["site-a"].pop("client"), "sites.site-a has no 'client'"),
        (lambda d: d["sites"]["site-a"]["client"].update(key="/nonexistent/priv_sk"), "client.key: no such file"),
        (lambda d: d["sites"]["site-a"]["peer"].update(tls_ca_cert="missing.pem"), "peer.tls_ca_cert: no such file"),
        (lambda d: d["sites"]["site-a"]["peer"].update(ssl_target_name_override=3), "ssl_target_name_override"),
        (lambda d: d["sites"].update({"site-a": []}), "sites.site-a must be a JSON object"),
    ],
)
def test_profile_errors_name_the_key_or_file(tmp_path, crypto, mutate, message):
    doc = _profile(crypto, tmp_path)
    mutate(doc)
    with pytest.raises(ProfileError, match=message):
        load_profile(_write(tmp_path / "c.json", doc), "site-a")


def test_profile_file_errors(tmp_path, crypto):
    with pytest.raises(ProfileError, match=r"no Fabric connection profile at .*start_network\.sh"):
        load_profile(tmp_path / "missing.json", "site-a")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(_write(tmp_path / "bad.json", "{nope"), "site-a")
    with pytest.raises(ProfileError, match="must be a JSON object"):
        load_profile(_write(tmp_path / "list.json", "[]"), "site-a")
    with pytest.raises(ProfileError, match=r"no site 'site-z'.*site-a"):
        load_profile(_write(tmp_path / "c.json", _profile(crypto, tmp_path)), "site-z")


def test_profile_key_not_matching_cert(tmp_path, crypto):
    other = tmp_path / "other_sk"
    other.write_bytes(_pem_key(_key()))
    doc = _profile(crypto, tmp_path)
    doc["sites"]["site-a"]["client"]["key"] = str(other)
    with pytest.raises(ProfileError, match="does not belong to its certificate"):
        FabricLedger.from_profile(_write(tmp_path / "c.json", doc), "site-a")
