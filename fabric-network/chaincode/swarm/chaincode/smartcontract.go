// Package chaincode is the swarm contract as Hyperledger Fabric chaincode:
// the round protocol of contract/README.md, the same rules as
// sn_service/contract.py, proven equal by the vectors in contract/vectors/.
package chaincode

import (
	"fmt"
	"strings"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// SmartContract coordinates swarm learning tasks: nodes, merge rounds, leaders.
//
// Every transaction returns the record it decided on as JSON text, and every
// refusal is an error whose text starts with its code and a colon
// ("NOT_LEADER: node 'site-b' does not lead round 3; 'site-a' does").
// Arguments arrive as strings: the spec as a JSON object, round and weight as
// decimal integers.
type SmartContract struct {
	contractapi.Contract

	// CallerAndTime returns the caller identity and the timestamp (integer
	// milliseconds) of the transaction in ctx. NewSmartContract sets it to
	// FabricTransaction; tests substitute their own.
	CallerAndTime func(ctx contractapi.TransactionContextInterface) (caller string, tsMillis int64, err error)
}

// functionNames are the contract's functions, transactions then queries.
var functionNames = []string{
	"InitTask", "Register", "Submit", "Close", "Publish", "Failover", "Finish", "Leave",
	"SubmitMasked", "Seal", "AdvertiseKey", "GetTask", "GetRound", "GetHistory",
}

// functionArity is how many arguments each function takes.
var functionArity = map[string]int{
	"InitTask": 2, "Register": 4, "Submit": 5, "Close": 2, "Publish": 4, "Failover": 2,
	"Finish": 2, "Leave": 2, "SubmitMasked": 5, "Seal": 4, "AdvertiseKey": 4, "GetTask": 1, "GetRound": 2, "GetHistory": 1,
}

// NewSmartContract returns the contract, reading caller and time from Fabric.
func NewSmartContract() *SmartContract {
	s := &SmartContract{CallerAndTime: FabricTransaction}
	s.BeforeTransaction = s.checkCall
	s.UnknownTransaction = unknownFunction
	return s
}

// GetEvaluateTransactions marks the queries as evaluate-only in the metadata.
func (s *SmartContract) GetEvaluateTransactions() []string {
	return []string{"GetTask", "GetRound", "GetHistory"}
}

// InitTask creates a task and its round 0; the same spec again returns the task unchanged.
func (s *SmartContract) InitTask(ctx contractapi.TransactionContextInterface, task string, spec string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return initTask(v, caller, ts, task, spec)
	})
}

// Register binds a node to the caller's identity, or re-activates the caller's node.
func (s *SmartContract) Register(ctx contractapi.TransactionContextInterface, task string, node string, endpoint string, fingerprint string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return register(v, caller, ts, task, node, endpoint, fingerprint)
	})
}

// Submit records a node's weights hash and sample weight for the open round.
func (s *SmartContract) Submit(ctx contractapi.TransactionContextInterface, task string, round string, node string, sha256 string, weight string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return submit(v, caller, ts, task, round, node, sha256, weight)
	})
}

// Close freezes a round's contributors in leader order and starts the leader's deadline.
func (s *SmartContract) Close(ctx contractapi.TransactionContextInterface, task string, round string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return closeRound(v, caller, ts, task, round)
	})
}

// Publish records the current leader's merged model hash and opens the next round.
func (s *SmartContract) Publish(ctx contractapi.TransactionContextInterface, task string, round string, node string, mergedSha256 string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return publish(v, caller, ts, task, round, node, mergedSha256)
	})
}

// Failover hands a closed round to the next contributor once the leader's deadline passed.
func (s *SmartContract) Failover(ctx contractapi.TransactionContextInterface, task string, round string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return failover(v, caller, ts, task, round)
	})
}

// Finish marks a node's training as ended; it still contributes its final model.
func (s *SmartContract) Finish(ctx contractapi.TransactionContextInterface, task string, node string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return finish(v, caller, ts, task, node)
	})
}

// Leave takes a node out of the task; rounds stop waiting for it.
func (s *SmartContract) Leave(ctx contractapi.TransactionContextInterface, task string, node string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return leave(v, caller, ts, task, node)
	})
}

// SubmitMasked records a contributor's masked model and sealed-shares hashes in a closed secure round.
func (s *SmartContract) SubmitMasked(ctx contractapi.TransactionContextInterface, task string, round string, node string, maskedSha256 string, sharesSha256 string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return submitMasked(v, caller, ts, task, round, node, maskedSha256, sharesSha256)
	})
}

// Seal lets the leader of a closed secure round name the masked models it unmasks.
func (s *SmartContract) Seal(ctx contractapi.TransactionContextInterface, task string, round string, node string, survivors string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return seal(v, caller, ts, task, round, node, survivors)
	})
}

// AdvertiseKey announces a site's round key of an open secure round before it submits.
func (s *SmartContract) AdvertiseKey(ctx contractapi.TransactionContextInterface, task string, round string, node string, key string) (string, error) {
	return s.transact(ctx, func(v *stateView, caller string, ts int64) (any, error) {
		return advertiseKey(v, caller, ts, task, round, node, key)
	})
}

// GetTask returns the task record.
func (s *SmartContract) GetTask(ctx contractapi.TransactionContextInterface, task string) (string, error) {
	return s.transact(ctx, func(v *stateView, _ string, _ int64) (any, error) {
		return getTask(v, task)
	})
}

// GetRound returns one round record.
func (s *SmartContract) GetRound(ctx contractapi.TransactionContextInterface, task string, round string) (string, error) {
	return s.transact(ctx, func(v *stateView, _ string, _ int64) (any, error) {
		return getRound(v, task, round)
	})
}

// GetHistory returns {"task", "rounds"}: every round below the current one, oldest first.
func (s *SmartContract) GetHistory(ctx contractapi.TransactionContextInterface, task string) (string, error) {
	return s.transact(ctx, func(v *stateView, _ string, _ int64) (any, error) {
		return getHistory(v, task)
	})
}

// checkedCallerAndTime reads and checks the transaction's caller identity and timestamp.
func (s *SmartContract) checkedCallerAndTime(ctx contractapi.TransactionContextInterface) (string, int64, error) {
	read := s.CallerAndTime
	if read == nil {
		read = FabricTransaction
	}
	caller, ts, err := read(ctx)
	if err != nil {
		return "", 0, refuse(CodeInvalidArgument, "cannot read the caller identity or timestamp: %v", err)
	}
	if err := checkCaller(caller); err != nil {
		return "", 0, err
	}
	if err := checkTimestamp(ts); err != nil {
		return "", 0, err
	}
	return caller, ts, nil
}

// checkCall runs before every function: it checks the caller, the timestamp,
// the function name and the argument count, in the order of execute() in
// sn_service/contract.py (contractapi alone would accept surplus arguments
// and lower-case function names).
func (s *SmartContract) checkCall(ctx contractapi.TransactionContextInterface) error {
	if _, _, err := s.checkedCallerAndTime(ctx); err != nil {
		return err
	}
	fn, args := ctx.GetStub().GetFunctionAndParameters()
	fn = fn[strings.LastIndex(fn, ":")+1:] // drop a "contract:" namespace
	arity, known := functionArity[fn]
	if !known {
		return unknownFunction(ctx)
	}
	if len(args) != arity {
		return refuse(CodeInvalidArgument, "%s takes %d arguments, got %d", fn, arity, len(args))
	}
	return nil
}

// unknownFunction refuses a function the contract does not have.
func unknownFunction(ctx contractapi.TransactionContextInterface) error {
	fn, _ := ctx.GetStub().GetFunctionAndParameters()
	return refuse(CodeUnknownFunction, "%q is not one of %v", fn, functionNames)
}

// transact runs one decision over a buffered view of the world state and
// writes its records only if it succeeds, so a refused transaction writes nothing.
func (s *SmartContract) transact(ctx contractapi.TransactionContextInterface, decide func(v *stateView, caller string, ts int64) (any, error)) (result string, err error) {
	caller, ts, err := s.checkedCallerAndTime(ctx)
	if err != nil {
		return "", err
	}
	defer func() {
		// A bug must refuse the transaction, not take the chaincode server down.
		if r := recover(); r != nil {
			result, err = "", fmt.Errorf("internal error: %v", r)
		}
	}()
	stub := ctx.GetStub()
	view := newStateView(stub.GetState)
	record, err := decide(view, caller, ts)
	if err != nil {
		return "", err
	}
	if err := view.flush(stub.PutState); err != nil {
		return "", err
	}
	data, err := encodeJSON(record)
	if err != nil {
		return "", fmt.Errorf("failed to encode the result: %v", err)
	}
	return string(data), nil
}
