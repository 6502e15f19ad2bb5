//go:build tools

// Package tools pins the Hyperledger Fabric commands that
// scripts/start_network.sh builds into .tools/fabric/bin. It is never
// compiled: the build tag keeps it out of every build, while go.mod and
// go.sum record the exact Fabric commit and every dependency's checksum.
package tools

import (
	_ "github.com/hyperledger/fabric/cmd/configtxgen"
	_ "github.com/hyperledger/fabric/cmd/configtxlator"
	_ "github.com/hyperledger/fabric/cmd/cryptogen"
	_ "github.com/hyperledger/fabric/cmd/discover"
	_ "github.com/hyperledger/fabric/cmd/orderer"
	_ "github.com/hyperledger/fabric/cmd/osnadmin"
	_ "github.com/hyperledger/fabric/cmd/peer"
)
