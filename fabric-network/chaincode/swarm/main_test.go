package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// runMainEnv makes the test binary run main() instead of the tests, so the
// tests can start the real command as a child process.
const runMainEnv = "SWARM_CHAINCODE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// startMain runs the command in a child process with the given environment.
func startMain(t *testing.T, env ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "CHAINCODE_SERVER_ADDRESS=", "CHAINCODE_ID=")
	cmd.Env = append(cmd.Env, env...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", os.Args[0], err)
	}
	return cmd, &output
}

func TestMainRefusesMissingEnvironment(t *testing.T) {
	for _, env := range [][]string{
		nil,
		{"CHAINCODE_SERVER_ADDRESS=127.0.0.1:9999"},
		{"CHAINCODE_ID=swarm_1.0:abc"},
	} {
		cmd, output := startMain(t, env...)
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("with %v: want a non-zero exit, got %v; output %q", env, err, output)
		}
		if !strings.Contains(output.String(), "CHAINCODE_SERVER_ADDRESS") || !strings.Contains(output.String(), "CHAINCODE_ID") {
			t.Errorf("with %v: the error does not name both variables: %q", env, output)
		}
	}
}

// fakePeer speaks the peer's side of the chaincode protocol over one stream,
// with an in-memory world state.
type fakePeer struct {
	t      *testing.T
	stream peer.Chaincode_ConnectClient
	state  map[string][]byte
	txs    int
}

// invoke sends one transaction from creator at tsMillis, answers the
// chaincode's state calls, and commits its writes if it succeeds.
func (p *fakePeer) invoke(creator []byte, tsMillis int64, fn string, args ...string) *peer.Response {
	p.t.Helper()
	p.txs++
	txID := fmt.Sprintf("tx%04d", p.txs)
	input := [][]byte{[]byte(fn)}
	for _, a := range args {
		input = append(input, []byte(a))
	}
	header := &common.Header{
		ChannelHeader: mustMarshal(p.t, &common.ChannelHeader{
			Type:      int32(common.HeaderType_ENDORSER_TRANSACTION),
			ChannelId: "swarm",
			TxId:      txID,
			Timestamp: timestamppb.New(time.UnixMilli(tsMillis)),
		}),
		SignatureHeader: mustMarshal(p.t, &common.SignatureHeader{Creator: creator, Nonce: []byte(txID)}),
	}
	proposal := &peer.Proposal{
		Header:  mustMarshal(p.t, header),
		Payload: mustMarshal(p.t, &peer.ChaincodeProposalPayload{}),
	}
	err := p.stream.Send(&peer.ChaincodeMessage{
		Type:      peer.ChaincodeMessage_TRANSACTION,
		Txid:      txID,
		ChannelId: "swarm",
		Payload:   mustMarshal(p.t, &peer.ChaincodeInput{Args: input}),
		Proposal:  &peer.SignedProposal{ProposalBytes: mustMarshal(p.t, proposal)},
	})
	if err != nil {
		p.t.Fatalf("send %s: %v", fn, err)
	}
	pending := map[string][]byte{}
	for {
		msg, err := p.stream.Recv()
		if err != nil {
			p.t.Fatalf("receive during %s: %v", fn, err)
		}
		reply := &peer.ChaincodeMessage{Type: peer.ChaincodeMessage_RESPONSE, Txid: msg.Txid, ChannelId: msg.ChannelId}
		switch msg.Type {
		case peer.ChaincodeMessage_GET_STATE:
			var get peer.GetState
			mustUnmarshal(p.t, msg.Payload, &get)
			reply.Payload = p.state[get.Key] // committed state only, as on a peer
		case peer.ChaincodeMessage_PUT_STATE:
			var put peer.PutState
			mustUnmarshal(p.t, msg.Payload, &put)
			pending[put.Key] = put.Value
		case peer.ChaincodeMessage_COMPLETED:
			var resp peer.Response
			mustUnmarshal(p.t, msg.Payload, &resp)
			if resp.Status == 200 {
				maps.Copy(p.state, pending)
			}
			return &resp
		default:
			p.t.Fatalf("during %s the chaincode sent %s: %s", fn, msg.Type, msg.Payload)
		}
		if err := p.stream.Send(reply); err != nil {
			p.t.Fatalf("reply to %s: %v", msg.Type, err)
		}
	}
}

// The real command, as a process, serves the contract to a peer over gRPC on
// loopback: identity from the creator certificate, time from the proposal.
func TestServerAnswersAPeerOverGRPC(t *testing.T) {
	address := freeLoopbackAddress(t)
	const ccid = "swarm_1.0:0123456789abcdef"
	cmd, output := startMain(t, "CHAINCODE_SERVER_ADDRESS="+address, "CHAINCODE_ID="+ccid)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stream peer.Chaincode_ConnectClient
	var register *peer.ChaincodeMessage
	for deadline := time.Now().Add(10 * time.Second); ; {
		// The server may not listen yet: retry until it registers.
		stream, err = peer.NewChaincodeClient(conn).Connect(ctx)
		if err == nil {
			register, err = stream.Recv()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no chaincode server on %s: %v; its output: %s", address, err, output)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var id peer.ChaincodeID
	mustUnmarshal(t, register.Payload, &id)
	if register.Type != peer.ChaincodeMessage_REGISTER || id.Name != ccid {
		t.Fatalf("first message %s for %q, want REGISTER for %q", register.Type, id.Name, ccid)
	}
	for _, kind := range []peer.ChaincodeMessage_Type{peer.ChaincodeMessage_REGISTERED, peer.ChaincodeMessage_READY} {
		if err := stream.Send(&peer.ChaincodeMessage{Type: kind}); err != nil {
			t.Fatalf("send %s: %v", kind, err)
		}
	}

	p := &fakePeer{t: t, stream: stream, state: map[string][]byte{}}
	siteA := creator(t, "Org1MSP", "site-a")
	siteB := creator(t, "Org2MSP", "site-b")
	layout := "f32[4,2];f32[2]"
	fingerprint := "63d49f7e5c1c7e44b893b9924b4e5ac79fff960dcd93c3872e4c538b50d3279a"
	spec := fmt.Sprintf(`{"fingerprint":%q,"layout":%q,"min_peers":1,"merge_method":"mean",`+
		`"quorum_wait_ms":0,"leader_timeout_ms":1000,"max_rounds":0}`, fingerprint, layout)

	expectOK := func(resp *peer.Response) map[string]any {
		t.Helper()
		if resp.Status != 200 {
			t.Fatalf("want success, got %d %q", resp.Status, resp.Message)
		}
		var record map[string]any
		if err := json.Unmarshal(resp.Payload, &record); err != nil {
			t.Fatalf("result %q: %v", resp.Payload, err)
		}
		return record
	}
	task := expectOK(p.invoke(siteA, 1_000, "InitTask", "t1", spec))
	if task["created_by"] != "Org1MSP::CN=site-a,O=Org1" || task["created_ms"] != 1000.0 {
		t.Errorf("InitTask: created_by %v at %v", task["created_by"], task["created_ms"])
	}
	expectOK(p.invoke(siteA, 1_001, "Register", "t1", "site-a", "https://127.0.0.1:9001", fingerprint))
	resp := p.invoke(siteB, 1_002, "Submit", "t1", "0", "site-a", strings.Repeat("a", 64), "1")
	if resp.Status == 200 || !strings.HasPrefix(resp.Message, "IDENTITY_MISMATCH: ") {
		t.Errorf("Submit for site-a by site-b: %d %q, want IDENTITY_MISMATCH", resp.Status, resp.Message)
	}
	round := expectOK(p.invoke(siteA, 1_003, "Submit", "t1", "0", "site-a", strings.Repeat("a", 64), "7"))
	if sub := round["submissions"].(map[string]any)["site-a"].(map[string]any); sub["weight"] != 7.0 || sub["ts_ms"] != 1003.0 {
		t.Errorf("Submit recorded %v", sub)
	}
	if len(p.state) != 2 {
		t.Errorf("world state has %d keys, want task/t1 and round/t1/0000000000", len(p.state))
	}
}

func freeLoopbackAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// creator is a serialized msp.SerializedIdentity with a fresh self-signed
// certificate for CN=name, O=<org of the MSP>.
func creator(t *testing.T, mspID, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name, Organization: []string{strings.TrimSuffix(mspID, "MSP")}},
		NotBefore:    time.Unix(1_700_000_000, 0),
		NotAfter:     time.Unix(1_900_000_000, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return mustMarshal(t, &msp.SerializedIdentity{
		Mspid:   mspID,
		IdBytes: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	})
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustUnmarshal(t *testing.T, data []byte, m proto.Message) {
	t.Helper()
	if err := proto.Unmarshal(data, m); err != nil {
		t.Fatal(err)
	}
}
