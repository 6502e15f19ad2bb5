// Command swarm-chaincode serves the swarm contract as chaincode-as-a-service:
// the peer connects to it over gRPC.
//
//	CHAINCODE_SERVER_ADDRESS=127.0.0.1:9999 \
//	CHAINCODE_ID=swarm_1.0:<package hash> \
//	swarm-chaincode
//
// CHAINCODE_ID is the package ID that `peer lifecycle chaincode
// calculatepackageid` prints for the ccaas package whose connection.json
// points at CHAINCODE_SERVER_ADDRESS. TLS is off: listen on loopback only.
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"

	"github.com/swarm-keras/swarm-chaincode/chaincode"
)

func main() {
	address := os.Getenv("CHAINCODE_SERVER_ADDRESS")
	ccid := os.Getenv("CHAINCODE_ID")
	if address == "" || ccid == "" {
		fmt.Fprintf(os.Stderr, "swarm-chaincode: CHAINCODE_SERVER_ADDRESS=%q, CHAINCODE_ID=%q: set both.\n"+
			"  CHAINCODE_SERVER_ADDRESS  host:port to listen on, e.g. 127.0.0.1:9999 (the address in the package's connection.json)\n"+
			"  CHAINCODE_ID              the package ID from `peer lifecycle chaincode calculatepackageid`, e.g. swarm_1.0:4f2c...\n",
			address, ccid)
		os.Exit(2)
	}

	server, err := newServer(address, ccid)
	if err != nil {
		log.Fatalf("swarm-chaincode: %v", err)
	}
	log.Printf("swarm-chaincode: serving %s on %s (TLS disabled), waiting for the peer", ccid, address)
	if err := server.Start(); err != nil {
		log.Fatalf("swarm-chaincode: server on %s stopped: %v", address, err)
	}
}

// newServer is the chaincode server for the swarm contract, without TLS.
func newServer(address, ccid string) (*shim.ChaincodeServer, error) {
	cc, err := contractapi.NewChaincode(chaincode.NewSmartContract())
	if err != nil {
		return nil, fmt.Errorf("cannot build the contract: %v", err)
	}
	return &shim.ChaincodeServer{
		CCID:     ccid,
		Address:  address,
		CC:       cc,
		TLSProps: shim.TLSProperties{Disabled: true},
	}, nil
}
