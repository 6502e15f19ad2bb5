"""Certificate subjects written the way Go's ``pkix.Name.String()`` writes them.

Fabric's chaincode (Go) binds a node to ``<MSPID>::<subject>``; the embedded
ledger binds it to ``x509::<subject>``. Both sides must compute the same
string from the same certificate, so there is one implementation, here.
"""

from __future__ import annotations

from cryptography import x509

_GO_ATTRIBUTE_NAMES = {
    "2.5.4.6": "C",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.3": "CN",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.17": "POSTALCODE",
}
# Go's pkix.Name parses these into named fields and writes them, in this
# order, after every other attribute (Name.ToRDNSequence).
_GO_PARSED_ORDER = ("2.5.4.6", "2.5.4.8", "2.5.4.7", "2.5.4.9", "2.5.4.17", "2.5.4.10", "2.5.4.11")
_GO_SINGLE_VALUED = ("2.5.4.3", "2.5.4.5")  # CommonName, SerialNumber: the last one wins
_GO_PARSED = {*_GO_PARSED_ORDER, *_GO_SINGLE_VALUED}


def _go_printable(ch: str) -> bool:
    # encoding/asn1 isPrintable, with '*' and '&' rejected (as asn1.Marshal does).
    return ch.isascii() and (ch.isalnum() or ch in " '()+,-./:=?")


def _go_der_string(value: str) -> bytes:
    # asn1.Marshal of a Go string: PrintableString if every character allows it, else UTF8String.
    body = value.encode("utf-8")
    tag = 0x13 if all(_go_printable(c) for c in value) else 0x0C
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _go_escape(value: str) -> str:
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == " " and i in (0, last)) or (ch == "#" and i == 0):
            out.append("\\")
        out.append(ch)
    return "".join(out)


def go_subject_string(name: x509.Name) -> str:
    """The DN exactly as Go's ``pkix.Name.String()`` writes a parsed certificate's subject.

    That is what the chaincode binds a node to (``identity.go``): attributes
    Go does not name come first in certificate order (so last in the
    string), then C, ST, L, STREET, POSTALCODE, O, OU (each one multi-valued
    RDN), CN and SERIALNUMBER (the last value of each); the sequence is
    written in reverse, RDNs joined by ``,`` and values of one RDN by ``+``.
    Unnamed attribute types are written as ``OID=#<hex of the value's DER>``.
    """
    flat = [(attr.oid.dotted_string, str(attr.value)) for rdn in name.rdns for attr in rdn]
    rdns: list[list[tuple[str, str]]] = [[(oid, value)] for oid, value in flat if oid not in _GO_PARSED]
    for oid in _GO_PARSED_ORDER:
        values = [value for o, value in flat if o == oid]
        if values:
            rdns.append([(oid, value) for value in values])
    for oid in _GO_SINGLE_VALUED:
        values = [value for o, value in flat if o == oid]
        if values and values[-1]:
            rdns.append([(oid, values[-1])])

    parts = []
    for rdn in reversed(rdns):
        atvs = []
        for oid, value in rdn:
            type_name = _GO_ATTRIBUTE_NAMES.get(oid)
            if type_name is None:
                atvs.append(f"{oid}=#{_go_der_string(value).hex()}")
            else:
                atvs.append(f"{type_name}={_go_escape(value)}")
        parts.append("+".join(atvs))
    return ",".join(parts)


#: Between the MSP ID and the subject in a Fabric caller identity.
FABRIC_IDENTITY_SEPARATOR = "::"


def fabric_identity(mspid: str, cert: x509.Certificate) -> str:
    """The caller identity the chaincode sees: ``<MSPID>::<subject DN as Go writes it>``."""
    return f"{mspid}{FABRIC_IDENTITY_SEPARATOR}{go_subject_string(cert.subject)}"
