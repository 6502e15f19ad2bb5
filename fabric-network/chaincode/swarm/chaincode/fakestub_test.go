package chaincode

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeStub is an in-memory shim.ChaincodeStubInterface with Fabric's
// semantics for what the contract uses: GetState sees committed state only,
// PutState goes to the transaction's write set, and the write set is
// committed only when the chaincode answers OK. Methods the contract must not
// call are left to the nil embedded interface and panic.
type fakeStub struct {
	shim.ChaincodeStubInterface

	state   map[string][]byte // the committed world state
	pending map[string][]byte // the current transaction's writes
	puts    int               // PutState calls in the current transaction

	fn      string
	args    []string
	ts      *timestamppb.Timestamp
	creator []byte // serialized msp.SerializedIdentity, for the real identity path
	caller  string // the identity testCallerAndTime hands the contract
	txCount int
}

func newFakeStub() *fakeStub {
	return &fakeStub{state: map[string][]byte{}, pending: map[string][]byte{}}
}

func (f *fakeStub) GetFunctionAndParameters() (string, []string) {
	return f.fn, append([]string{}, f.args...)
}

func (f *fakeStub) GetArgs() [][]byte {
	all := [][]byte{[]byte(f.fn)}
	for _, a := range f.args {
		all = append(all, []byte(a))
	}
	return all
}

func (f *fakeStub) GetStringArgs() []string {
	return append([]string{f.fn}, f.args...)
}

func (f *fakeStub) GetTxID() string      { return fmt.Sprintf("tx%06d", f.txCount) }
func (f *fakeStub) GetChannelID() string { return "swarm" }
func (f *fakeStub) GetCreator() ([]byte, error) {
	if f.creator == nil {
		return nil, errors.New("fake stub: no creator set")
	}
	return f.creator, nil
}

func (f *fakeStub) GetTxTimestamp() (*timestamppb.Timestamp, error) {
	return f.ts, nil
}

func (f *fakeStub) GetState(key string) ([]byte, error) {
	if key == "" {
		return nil, errors.New("fake stub: empty key")
	}
	value, ok := f.state[key]
	if !ok {
		return nil, nil
	}
	return append([]byte{}, value...), nil
}

func (f *fakeStub) PutState(key string, value []byte) error {
	if key == "" || strings.HasPrefix(key, "\x00") {
		return errors.New("fake stub: invalid key")
	}
	f.puts++
	f.pending[key] = append([]byte{}, value...)
	return nil
}

// invoke runs one transaction through contractapi's dispatch, as the peer
// would, and commits its writes if it succeeded. It returns the response and
// the number of PutState calls the transaction made.
func (f *fakeStub) invoke(cc *contractapi.ContractChaincode, caller string, tsMillis int64, fn string, args ...string) (*peer.Response, int) {
	f.txCount++
	f.fn, f.args, f.caller = fn, args, caller
	f.ts = timestamppb.New(time.UnixMilli(tsMillis))
	f.pending = map[string][]byte{}
	f.puts = 0
	resp := cc.Invoke(f)
	if resp.GetStatus() == shim.OK {
		maps.Copy(f.state, f.pending)
	}
	f.pending = map[string][]byte{}
	return resp, f.puts
}

// testCallerAndTime hands the contract the fake stub's caller string and the
// real timestamp conversion of its tx timestamp.
func testCallerAndTime(ctx contractapi.TransactionContextInterface) (string, int64, error) {
	stub := ctx.GetStub().(*fakeStub)
	ts, err := TxTimestampMillis(stub)
	return stub.caller, ts, err
}

// newTestChaincode is the real chaincode with the caller identity taken from the fake stub.
func newTestChaincode(t *testing.T) *contractapi.ContractChaincode {
	t.Helper()
	contract := NewSmartContract()
	contract.CallerAndTime = testCallerAndTime
	cc, err := contractapi.NewChaincode(contract)
	if err != nil {
		t.Fatalf("contractapi.NewChaincode: %v", err)
	}
	return cc
}
