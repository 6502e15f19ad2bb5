package chaincode

import (
	"errors"
	"fmt"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/cid"
	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// IdentitySeparator joins the MSP ID and the certificate subject in a caller identity.
const IdentitySeparator = "::"

// FabricTransaction returns the caller identity and the timestamp of the
// transaction in ctx, as the contract sees them.
//
// The caller identity is
//
//	<MSPID>::<subject DN of the client's X.509 certificate>
//
// where the DN is Go's crypto/x509/pkix Name.String() of the certificate's
// subject: RFC 4514 order, most specific attribute first, e.g.
// "Org1MSP::CN=User1@org1.example.com,OU=client,L=San Francisco,ST=California,C=US".
// A node is bound to this string when it registers; any client that must
// predict it (to find its own node) builds it the same way.
//
// The timestamp is the proposal's channel-header timestamp (set by the
// client, identical on every endorsing peer) in integer milliseconds since
// the Unix epoch, so every endorser decides alike.
func FabricTransaction(ctx contractapi.TransactionContextInterface) (caller string, tsMillis int64, err error) {
	caller, err = CallerIdentity(ctx.GetClientIdentity())
	if err != nil {
		return "", 0, err
	}
	tsMillis, err = TxTimestampMillis(ctx.GetStub())
	if err != nil {
		return "", 0, err
	}
	return caller, tsMillis, nil
}

// CallerIdentity builds "<MSPID>::<subject DN>" from a client identity.
func CallerIdentity(id cid.ClientIdentity) (string, error) {
	if id == nil {
		return "", errors.New("the transaction has no client identity")
	}
	if c, ok := id.(*cid.ClientID); ok && c == nil {
		// contractapi stores a nil *ClientID when the creator cannot be parsed.
		return "", errors.New("the transaction's creator is not a valid client identity")
	}
	mspID, err := id.GetMSPID()
	if err != nil {
		return "", fmt.Errorf("failed to read the caller's MSP ID: %v", err)
	}
	cert, err := id.GetX509Certificate()
	if err != nil {
		return "", fmt.Errorf("failed to read the caller's certificate: %v", err)
	}
	if cert == nil {
		return "", errors.New("the caller has no X.509 certificate (idemix identities are not supported)")
	}
	return mspID + IdentitySeparator + cert.Subject.String(), nil
}

// TxTimestampMillis is the transaction's timestamp in integer milliseconds.
func TxTimestampMillis(stub shim.ChaincodeStubInterface) (int64, error) {
	ts, err := stub.GetTxTimestamp()
	if err != nil {
		return 0, fmt.Errorf("failed to read the transaction timestamp: %v", err)
	}
	if ts == nil {
		return 0, errors.New("the transaction has no timestamp")
	}
	// Nanos is in [0, 1e9) for a valid timestamp, so this floors.
	return ts.GetSeconds()*1000 + int64(ts.GetNanos())/1_000_000, nil
}
