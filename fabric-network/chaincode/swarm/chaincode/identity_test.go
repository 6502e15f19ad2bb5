package chaincode

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/pkg/cid"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// creatorFor returns a serialized msp.SerializedIdentity holding a fresh
// self-signed certificate with the given subject, as a Fabric client sends it.
func creatorFor(t *testing.T, mspID string, subject pkix.Name) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      subject,
		NotBefore:    time.Unix(1_700_000_000, 0),
		NotAfter:     time.Unix(1_900_000_000, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	creator, err := proto.Marshal(&msp.SerializedIdentity{
		Mspid:   mspID,
		IdBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return creator
}

// cryptogenSubject is the subject cryptogen gives a client certificate.
var cryptogenSubject = pkix.Name{
	Country:            []string{"US"},
	Province:           []string{"California"},
	Locality:           []string{"San Francisco"},
	OrganizationalUnit: []string{"client"},
	CommonName:         "User1@org1.example.com",
}

const cryptogenCaller = "Org1MSP::CN=User1@org1.example.com,OU=client,L=San Francisco,ST=California,C=US"

func TestCallerIdentityIsMSPIDAndSubject(t *testing.T) {
	stub := newFakeStub()
	stub.creator = creatorFor(t, "Org1MSP", cryptogenSubject)
	id, err := cid.New(stub)
	if err != nil {
		t.Fatalf("cid.New: %v", err)
	}
	got, err := CallerIdentity(id)
	if err != nil {
		t.Fatalf("CallerIdentity: %v", err)
	}
	if got != cryptogenCaller {
		t.Errorf("CallerIdentity = %q, want %q", got, cryptogenCaller)
	}
}

func TestCallerIdentityRefusesMissingIdentity(t *testing.T) {
	if _, err := CallerIdentity(nil); err == nil {
		t.Error("CallerIdentity(nil) succeeded")
	}
	var unparsed *cid.ClientID // what contractapi stores when the creator is not parseable
	if _, err := CallerIdentity(unparsed); err == nil {
		t.Error("CallerIdentity(nil *ClientID) succeeded")
	}
}

func TestTxTimestampMillisFloorsNanos(t *testing.T) {
	cases := []struct {
		ts   *timestamppb.Timestamp
		want int64
	}{
		{&timestamppb.Timestamp{Seconds: 1_700_000_000, Nanos: 123_999_999}, 1_700_000_000_123},
		{&timestamppb.Timestamp{Seconds: 0, Nanos: 999_999}, 0},
		{&timestamppb.Timestamp{Seconds: 2, Nanos: 5_000_000}, 2_005},
		{timestamppb.New(time.UnixMilli(1001)), 1001},
	}
	for _, c := range cases {
		stub := newFakeStub()
		stub.ts = c.ts
		got, err := TxTimestampMillis(stub)
		if err != nil || got != c.want {
			t.Errorf("TxTimestampMillis(%v) = %d, %v; want %d", c.ts, got, err, c.want)
		}
	}
	if _, err := TxTimestampMillis(newFakeStub()); err == nil {
		t.Error("TxTimestampMillis without a timestamp succeeded")
	}
}

// The real Fabric path end to end: creator bytes -> contractapi's client
// identity -> FabricTransaction -> the task's created_by and the node binding.
func TestFabricTransactionBindsTheCertificateSubject(t *testing.T) {
	cc, err := contractapi.NewChaincode(NewSmartContract())
	if err != nil {
		t.Fatalf("NewChaincode: %v", err)
	}
	stub := newFakeStub()
	stub.creator = creatorFor(t, "Org1MSP", cryptogenSubject)
	resp, _ := stub.invoke(cc, "ignored: the real identity is used", 1_234, "InitTask", "t1", testSpecJSON)
	if resp.GetStatus() != 200 {
		t.Fatalf("InitTask: %s", resp.GetMessage())
	}
	var task Task
	if err := json.Unmarshal(resp.GetPayload(), &task); err != nil {
		t.Fatalf("InitTask result: %v", err)
	}
	if task.CreatedBy != cryptogenCaller || task.CreatedMs != 1_234 {
		t.Errorf("created_by %q at %d, want %q at 1234", task.CreatedBy, task.CreatedMs, cryptogenCaller)
	}

	resp, _ = stub.invoke(cc, "", 1_300, "Register", "t1", "site-a", "https://127.0.0.1:9001", testFingerprint)
	if resp.GetStatus() != 200 {
		t.Fatalf("Register: %s", resp.GetMessage())
	}
	// Another certificate of the same MSP is another identity.
	stub.creator = creatorFor(t, "Org1MSP", pkix.Name{CommonName: "User2@org1.example.com"})
	resp, _ = stub.invoke(cc, "", 1_400, "Leave", "t1", "site-a")
	if code := errorCode(resp.GetMessage()); resp.GetStatus() == 200 || code != CodeIdentityMismatch {
		t.Errorf("Leave by another certificate: status %d %q, want %s", resp.GetStatus(), resp.GetMessage(), CodeIdentityMismatch)
	}

	// A creator that is not an identity is refused before any rule runs.
	stub.creator = []byte("not a serialized identity")
	resp, _ = stub.invoke(cc, "", 1_500, "GetTask", "t1")
	if code := errorCode(resp.GetMessage()); resp.GetStatus() == 200 || code != CodeInvalidArgument {
		t.Errorf("GetTask with a bad creator: status %d %q, want %s", resp.GetStatus(), resp.GetMessage(), CodeInvalidArgument)
	}
}
