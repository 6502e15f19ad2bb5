# shellcheck shell=bash disable=SC2034 # variables used by the scripts that source this file
# Shared by start_network.sh, stop_network.sh and install_fabric.sh: paths,
# the port plan, logging, and the PID bookkeeping. Sourced, never run.
#
# Every run-time file lives in two git-ignored folders:
#   .tools/fabric/  the Fabric commands built from source (bin/), their sample
#                   config (config/) and a stamp naming the pinned version
#   .fabric/        the running network: config, crypto, ledgers, logs, pids
# Both can be moved with FABRIC_TOOLS_DIR / FABRIC_HOME.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FABRIC_TOOLS_MODULE=$REPO_ROOT/fabric-network/tools
FABRIC_TOOLS_DIR=$(realpath -m "${FABRIC_TOOLS_DIR:-$REPO_ROOT/.tools/fabric}")
FABRIC_BIN=$FABRIC_TOOLS_DIR/bin
FABRIC_STAMP=$FABRIC_TOOLS_DIR/VERSION
FABRIC_SAMPLECONFIG=$FABRIC_TOOLS_DIR/config
FABRIC_COMMANDS=(peer orderer configtxgen configtxlator cryptogen osnadmin discover)

FABRIC_HOME=$(realpath -m "${FABRIC_HOME:-$REPO_ROOT/.fabric}")
NET_CONFIG=$FABRIC_HOME/config
NET_CRYPTO=$FABRIC_HOME/crypto
NET_DATA=$FABRIC_HOME/data
NET_LOGS=$FABRIC_HOME/logs
NET_PIDS=$FABRIC_HOME/pids
NET_CHAINCODE=$FABRIC_HOME/chaincode
NET_STATE=$FABRIC_HOME/network.env
NET_PROFILE=$FABRIC_HOME/connection.json

BUILDER_DIR=$REPO_ROOT/fabric-network/builders/ccaas

# ---------------------------------------------------------------- messages

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
step() { printf '\n[%s] == %s\n' "$(date +%H:%M:%S)" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
    exit 1
}

# Prints the last lines of a log file to stderr, framed, so a failure shows why.
show_log_tail() {
    local file=$1 lines=${2:-40}
    [[ -f $file ]] || return 0
    printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2
    printf -- '----- end of %s -----\n' "$file" >&2
}

# Milliseconds since the epoch (for step timings).
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- go

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        echo /usr/local/go/bin/go
    else
        return 1
    fi
}

# The pinned github.com/hyperledger/fabric version, read from the tools module.
pinned_fabric_version() {
    awk '$1 == "require" && $2 == "github.com/hyperledger/fabric" { print $3; exit }' \
        "$FABRIC_TOOLS_MODULE/go.mod"
}

# ---------------------------------------------------------------- port plan
# One block of ten ports per node from FABRIC_PORT_BASE (default 7050):
#   orderer          base+0 listen (clients, Raft cluster)  base+1 admin (osnadmin)  base+2 operations
#   peer of site i   base+10*i listen (clients, gateway, gossip)  +1 chaincode listener
#                    +2 operations (health)  +3 the site's chaincode server (ccaas)

port_orderer() { echo $((PORT_BASE)); }
port_orderer_admin() { echo $((PORT_BASE + 1)); }
port_orderer_ops() { echo $((PORT_BASE + 2)); }
port_peer() { echo $((PORT_BASE + 10 * $1)); }
port_peer_cc() { echo $((PORT_BASE + 10 * $1 + 1)); }
port_peer_ops() { echo $((PORT_BASE + 10 * $1 + 2)); }
port_ccaas() { echo $((PORT_BASE + 10 * $1 + 3)); }

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- names

org_name() { echo "Org$1"; }
org_msp() { echo "Org$1MSP"; }
org_domain() { echo "org$1.example.com"; }
peer_host() { echo "peer0.org$1.example.com"; }
org_dir() { echo "$NET_CRYPTO/peerOrganizations/org$1.example.com"; }
peer_dir() { echo "$(org_dir "$1")/peers/peer0.org$1.example.com"; }
peer_tls_ca() { echo "$(peer_dir "$1")/tls/ca.crt"; }
admin_msp() { echo "$(org_dir "$1")/users/Admin@org$1.example.com/msp"; }
user_msp() { echo "$(org_dir "$1")/users/User1@org$1.example.com/msp"; }
ORDERER_ORG_DIR_REL=ordererOrganizations/example.com
orderer_dir() { echo "$NET_CRYPTO/$ORDERER_ORG_DIR_REL/orderers/orderer.example.com"; }
orderer_tls_ca() { echo "$(orderer_dir)/tls/ca.crt"; }

# Default site names: site-a, site-b, ... (site-27, site-28, ... past z).
default_site_name() {
    local i=$1 letters=abcdefghijklmnopqrstuvwxyz
    if ((i <= 26)); then
        echo "site-${letters:i-1:1}"
    else
        echo "site-$i"
    fi
}

# ---------------------------------------------------------------- PIDs
# .fabric/pids/NAME.pid holds the PID, NAME.exe the absolute path of the
# program started. A PID counts as ours only while /proc/PID/exe is still that
# program: a PID reused by some other process is never signalled.

pid_of() {
    local name=$1
    [[ -f $NET_PIDS/$name.pid ]] || return 1
    cat "$NET_PIDS/$name.pid"
}

# True when the process recorded under NAME is alive and is the program we started.
pid_alive() {
    local name=$1 pid exe actual
    pid=$(pid_of "$name") || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    exe=$(cat "$NET_PIDS/$name.exe" 2>/dev/null) || return 1
    actual=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    # a program rebuilt while running shows as "PATH (deleted)"
    [[ $actual == "$exe" || $actual == "$exe (deleted)" ]]
}

# Names of every process recorded in .fabric/pids (chaincode servers first,
# then peers, then the orderer: the order to stop them in).
recorded_names() {
    local f name
    [[ -d $NET_PIDS ]] || return 0
    for f in "$NET_PIDS"/chaincode-*.pid "$NET_PIDS"/peer-*.pid "$NET_PIDS"/orderer.pid; do
        [[ -f $f ]] || continue
        name=${f##*/}
        echo "${name%.pid}"
    done
}

# stop_recorded NAME...: stops the processes recorded under the NAMEs, all
# at once (SIGTERM; SIGKILL for any still alive after 10 s), and removes their
# PID files. Never signals a process that is not the program we started.
stop_recorded() {
    local name pid i live=() names=()
    for name in "$@"; do
        if pid_alive "$name"; then
            pid=$(pid_of "$name")
            kill -TERM "$pid" 2>/dev/null || true
            live+=("$pid")
            names+=("$name")
        else
            rm -f "$NET_PIDS/$name.pid" "$NET_PIDS/$name.exe"
        fi
    done
    ((${#live[@]})) || return 0
    for ((i = 0; i < 100; i++)); do # up to 10 s
        any_alive "${live[@]}" || break
        sleep 0.1
    done
    for i in "${!live[@]}"; do
        if kill -0 "${live[$i]}" 2>/dev/null; then
            warn "${names[$i]} (pid ${live[$i]}) ignored SIGTERM for 10 s: sending SIGKILL"
            kill -KILL "${live[$i]}" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 50; i++)); do
        any_alive "${live[@]}" || break
        sleep 0.1
    done
    for i in "${!live[@]}"; do
        rm -f "$NET_PIDS/${names[$i]}.pid" "$NET_PIDS/${names[$i]}.exe"
        log "stopped ${names[$i]} (pid ${live[$i]})"
    done
}

any_alive() {
    local pid
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}

# ---------------------------------------------------------------------------- configtx.yaml
# The pieces of the channel's configtx.yaml that start_network.sh (one host) and fabric_host.sh (across
# hosts) write alike; they differ only in addresses and in where the sites' MSP folders are.

# configtx_orderer_org HOST: the "Organizations:" list's first entry, the orderer organisation at HOST.
configtx_orderer_org() {
    cat <<EOF
Organizations:
  - &OrdererOrg
    Name: OrdererOrg
    ID: OrdererMSP
    MSPDir: $NET_CRYPTO/$ORDERER_ORG_DIR_REL/msp
    Policies:
      Readers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Writers: {Type: Signature, Rule: "OR('OrdererMSP.member')"}
      Admins: {Type: Signature, Rule: "OR('OrdererMSP.admin')"}
    OrdererEndpoints:
      - $1:$(port_orderer)
EOF
}

# configtx_site_org ANCHOR MSPID MSPDIR PEER_HOST PEER_PORT: one site's organisation entry.
configtx_site_org() {
    local anchor=$1 m=$2
    cat <<EOF
  - &$anchor
    Name: $m
    ID: $m
    MSPDir: $3
    Policies:
      Readers: {Type: Signature, Rule: "OR('$m.admin', '$m.peer', '$m.client')"}
      Writers: {Type: Signature, Rule: "OR('$m.admin', '$m.client')"}
      Admins: {Type: Signature, Rule: "OR('$m.admin')"}
      Endorsement: {Type: Signature, Rule: "OR('$m.peer')"}
    AnchorPeers:
      - Host: $4
        Port: $5
EOF
}

# configtx_profile HOST ANCHOR...: the "Profiles:" section, the raft consenter at HOST, the sites' entries.
configtx_profile() {
    local host=$1 anchor od
    shift
    od=$(orderer_dir)
    cat <<EOF

Profiles:
  SwarmChannel:
    Policies:
      Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
      Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
      Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
    Capabilities:
      V2_0: true
    Orderer:
      OrdererType: etcdraft
      BatchTimeout: $BATCH_TIMEOUT
      BatchSize:
        MaxMessageCount: $MAX_MESSAGE_COUNT
        AbsoluteMaxBytes: 10 MB
        PreferredMaxBytes: 2 MB
      EtcdRaft:
        Consenters:
          - Host: $host
            Port: $(port_orderer)
            ClientTLSCert: $od/tls/server.crt
            ServerTLSCert: $od/tls/server.crt
        Options:
          TickInterval: 100ms
          ElectionTick: 10
          HeartbeatTick: 1
          MaxInflightBlocks: 5
          SnapshotIntervalSize: 16 MB
      Organizations:
        - *OrdererOrg
      Policies:
        Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
        Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
        Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
        BlockValidation: {Type: ImplicitMeta, Rule: "ANY Writers"}
      Capabilities:
        V2_0: true
    Application:
      Organizations:
EOF
    for anchor in "$@"; do echo "        - *$anchor"; done
    cat <<EOF
      Policies:
        Readers: {Type: ImplicitMeta, Rule: "ANY Readers"}
        Writers: {Type: ImplicitMeta, Rule: "ANY Writers"}
        Admins: {Type: ImplicitMeta, Rule: "MAJORITY Admins"}
        LifecycleEndorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
        Endorsement: {Type: ImplicitMeta, Rule: "MAJORITY Endorsement"}
      Capabilities:
        V2_5: true
EOF
}
