"""Fabric's generated protobuf messages (``hyperledger-fabric-protos``), or an error that says how to install them.

The Fabric ledger's modules import the messages from here, so that a missing
package is reported once, the same way, whichever module is imported first.
"""

try:
    from fabric_protos.common import common_pb2
    from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
    from fabric_protos.msp import identities_pb2
    from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Fabric ledger needs Fabric's protobuf messages: install them with "
        "'pip install --no-deps hyperledger-fabric-protos==0.3.7.dev349689853811' "
        f"(and grpcio, cryptography): {_exc}"
    ) from _exc

__all__ = [
    "chaincode_pb2",
    "common_pb2",
    "gateway_pb2",
    "gateway_pb2_grpc",
    "identities_pb2",
    "proposal_pb2",
    "proposal_response_pb2",
    "transaction_pb2",
]
