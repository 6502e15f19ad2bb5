package chaincode

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The orders sn_service.contract.leader_order gives for the same inputs.
func TestLeaderOrderMatchesPython(t *testing.T) {
	nodes := []string{"site-a", "site-b", "site-c", "site-d", "site-e"}
	cases := []struct {
		previous string
		round    int64
		nodes    []string
		want     []string
	}{
		{"", 0, nodes, []string{"site-a", "site-c", "site-d", "site-e", "site-b"}},
		{"e4223ed20d7ea5740a326e2b268ca6db91d041cf5194f577e393a8ba3b85d8e9", 7, nodes,
			[]string{"site-e", "site-a", "site-d", "site-c", "site-b"}},
		{"", 12345678901, []string{"n3", "n2", "n1"}, []string{"n1", "n3", "n2"}},
	}
	for _, c := range cases {
		got := leaderOrder(c.previous, c.round, c.nodes)
		if !slices.Equal(got, c.want) {
			t.Errorf("leaderOrder(%q, %d) = %v, want %v", c.previous, c.round, got, c.want)
		}
	}
	// The same node twice ties on its hash; the order is still total.
	if got := leaderOrder("", 1, []string{"b", "a", "b"}); len(got) != 3 {
		t.Errorf("leaderOrder with a repeated node = %v", got)
	}
}

func TestRoundKeyIsZeroPadded(t *testing.T) {
	if got := RoundKey("t1", 3); got != "round/t1/0000000003" {
		t.Errorf("RoundKey = %q", got)
	}
	if got := TaskKey("t1"); got != "task/t1" {
		t.Errorf("TaskKey = %q", got)
	}
}

// functionArity must describe the exported methods contractapi serves.
func TestFunctionTableMatchesMethods(t *testing.T) {
	contractType := reflect.TypeOf(&SmartContract{})
	for _, name := range functionNames {
		method, ok := contractType.MethodByName(name)
		if !ok {
			t.Errorf("SmartContract has no method %s", name)
			continue
		}
		// receiver and transaction context come first
		if got := method.Type.NumIn() - 2; got != functionArity[name] {
			t.Errorf("%s takes %d arguments, functionArity says %d", name, got, functionArity[name])
		}
	}
	if len(functionArity) != len(functionNames) {
		t.Errorf("functionArity has %d entries, functionNames %d", len(functionArity), len(functionNames))
	}
}

// Dispatch details contractapi would get wrong on its own.
func TestDispatchRefusesLikeExecute(t *testing.T) {
	cc := newTestChaincode(t)
	stub := newFakeStub()
	caller := "Org1MSP::CN=site-a"
	if resp, _ := stub.invoke(cc, caller, 1000, "InitTask", "t1", testSpecJSON); resp.GetStatus() != 200 {
		t.Fatalf("InitTask: %s", resp.GetMessage())
	}
	cases := []struct {
		caller string
		ts     int64
		fn     string
		args   []string
		want   string
	}{
		{caller, 1001, "getTask", []string{"t1"}, CodeUnknownFunction}, // contractapi would upper-case it
		{caller, 1001, "Frobnicate", []string{"t1"}, CodeUnknownFunction},
		{caller, 1001, "GetTask", []string{"t1", "extra"}, CodeInvalidArgument}, // contractapi ignores surplus
		{caller, 1001, "GetTask", nil, CodeInvalidArgument},
		{"", 1001, "GetTask", []string{"t1"}, CodeInvalidArgument},          // caller checked first
		{"", 1001, "Frobnicate", nil, CodeInvalidArgument},                  // ... even before the name
		{caller, -1, "GetTask", []string{"t1"}, CodeInvalidArgument},        // a timestamp before 1970
		{caller, 1001, "GetRound", []string{"nope", "x"}, CodeTaskNotFound}, // task before round, as in Python
		{caller, 1001, "GetRound", []string{"t1", "x"}, CodeInvalidArgument},
		{caller, 1001, "GetRound", []string{"t1", "0.0"}, CodeInvalidArgument},
	}
	for _, c := range cases {
		resp, puts := stub.invoke(cc, c.caller, c.ts, c.fn, c.args...)
		if resp.GetStatus() == 200 || errorCode(resp.GetMessage()) != c.want {
			t.Errorf("%s%q by %q at %d: status %d %q, want %s", c.fn, c.args, c.caller, c.ts,
				resp.GetStatus(), resp.GetMessage(), c.want)
		}
		if puts != 0 {
			t.Errorf("%s%q: a refused call wrote %d keys", c.fn, c.args, puts)
		}
	}
	// The namespaced name contractapi accepts reaches the same function.
	if resp, _ := stub.invoke(cc, caller, 1002, "SmartContract:GetRound", "t1", "0"); resp.GetStatus() != 200 {
		t.Errorf("SmartContract:GetRound: %s", resp.GetMessage())
	}
}

// A transaction sees its own writes, and writes nothing unless it succeeds.
func TestStateViewBuffersWrites(t *testing.T) {
	stub := newFakeStub()
	view := newStateView(stub.GetState)
	if _, err := initTask(view, "Org1MSP::CN=site-a", 5, "t1", testSpecJSON); err != nil {
		t.Fatalf("initTask: %v", err)
	}
	if stub.puts != 0 || len(stub.state) != 0 {
		t.Fatalf("initTask wrote to the stub before flush")
	}
	rec, err := view.task("t1")
	if err != nil || rec == nil || rec.CreatedMs != 5 {
		t.Fatalf("the view does not see its own write: %+v, %v", rec, err)
	}
	var keys []string
	if err := view.flush(func(key string, _ []byte) error { keys = append(keys, key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"round/t1/0000000000", "task/t1"}) {
		t.Errorf("flushed %v", keys)
	}
}

// contractapi's metadata lists exactly the contract's functions, queries as evaluate.
func TestMetadataListsTheFunctions(t *testing.T) {
	cc := newTestChaincode(t)
	resp, _ := newFakeStub().invoke(cc, "Org1MSP::CN=site-a", 1, "org.hyperledger.fabric:GetMetadata")
	if resp.GetStatus() != 200 {
		t.Fatalf("GetMetadata: %s", resp.GetMessage())
	}
	var meta struct {
		Contracts map[string]struct {
			Transactions []struct {
				Name string   `json:"name"`
				Tag  []string `json:"tag"`
			} `json:"transactions"`
		} `json:"contracts"`
	}
	if err := json.Unmarshal(resp.GetPayload(), &meta); err != nil {
		t.Fatalf("metadata: %v", err)
	}
	var names []string
	for _, tx := range meta.Contracts["SmartContract"].Transactions {
		names = append(names, tx.Name)
		evaluate := slices.Contains(tx.Tag, "EVALUATE")
		if evaluate != strings.HasPrefix(tx.Name, "Get") {
			t.Errorf("%s is tagged %v", tx.Name, tx.Tag)
		}
	}
	if want := slices.Sorted(slices.Values(functionNames)); !slices.Equal(names, want) {
		t.Errorf("metadata transactions %v, want %v", names, want)
	}
}
