#!/usr/bin/env bash
# Starts a Hyperledger Fabric test network of native processes on 127.0.0.1
# (no Docker): one etcdraft orderer, one organisation with one peer per site,
# the channel "swarm", and the chaincode "swarm" run as a service (one
# chaincode server process per peer), endorsed by a majority of the sites.
# Writes .fabric/connection.json for the swarm-network service.
# See fabric-network/README.md for the layout, the ports and the profile.
set -euo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/fabric_lib.sh
source "$SCRIPTS_DIR/fabric_lib.sh"
# shellcheck source=scripts/install_fabric.sh
source "$SCRIPTS_DIR/install_fabric.sh"

usage() {
    cat <<EOF
Usage: scripts/start_network.sh [--sites N] [--channel NAME] [--port-base PORT] [--fresh] [--help]

Starts (or resumes) the Fabric test network in ${FABRIC_HOME#"$REPO_ROOT"/}/ and prints where
its logs and connection profile are. Builds the Fabric commands first if
${FABRIC_BIN#"$REPO_ROOT"/} does not hold the pinned version (once, a few minutes).

  --sites N         number of site organisations, one peer each (default 3; env SITES)
  --channel NAME    channel name (default swarm; env CHANNEL)
  --port-base PORT  first port of the port plan (default 7050; env FABRIC_PORT_BASE)
  --fresh           stop the network and wipe ${FABRIC_HOME#"$REPO_ROOT"/}/ first
  --help            this message

If the network is already running and healthy, nothing is done. If it was
stopped (scripts/stop_network.sh), its processes are started again on the
same ledgers. A half-made network (a start that failed) is wiped and made anew.

Environment:
  CHAINCODE_DIR      Go module of the chaincode to serve
                     (default fabric-network/chaincode/swarm)
  SITE_NAMES         comma-separated site names for the profile
                     (default site-a,site-b,...; their count sets SITES)
  BATCH_TIMEOUT      orderer batch timeout (default 50ms)
  MAX_MESSAGE_COUNT  orderer batch size in transactions (default 10)
  FABRIC_LOGGING_SPEC  log level of the Fabric processes (default info)
  FABRIC_HOME, FABRIC_TOOLS_DIR  move .fabric/ and .tools/fabric/
EOF
}

# ---------------------------------------------------------------- settings

SITES_ARG=${SITES:-}
CHANNEL_ARG=${CHANNEL:-}
PORT_BASE_ARG=${FABRIC_PORT_BASE:-}
SITE_NAMES_ARG=${SITE_NAMES:-}
FRESH=false
CC_NAME=swarm
CC_VERSION=1.0
CC_SEQUENCE=1
CC_LABEL=${CC_NAME}_${CC_VERSION}
CHAINCODE_DIR=$(realpath -m "${CHAINCODE_DIR:-$REPO_ROOT/fabric-network/chaincode/swarm}")
CHAINCODE_BUILD_OUT=$FABRIC_TOOLS_DIR/chaincode/swarm-chaincode
CHAINCODE_BIN=$FABRIC_HOME/bin/swarm-chaincode
BATCH_TIMEOUT=${BATCH_TIMEOUT:-50ms}
MAX_MESSAGE_COUNT=${MAX_MESSAGE_COUNT:-10}
LOG_SPEC=${FABRIC_LOGGING_SPEC:-info}
SMOKE_TASK=start-network-smoke-test
# Where the orderer and peers listen, and the address others reach them at. One machine:
# both loopback. scripts/fabric_host.sh (one host of a multi-host network) sets them.
LISTEN_HOST=${LISTEN_HOST:-127.0.0.1}
NODE_HOST=${NODE_HOST:-127.0.0.1}

parse_args() {
    while (($#)); do
        case $1 in
        --sites)
            [[ $# -ge 2 ]] || die "--sites needs a number"
            SITES_ARG=$2
            shift 2
            ;;
        --sites=*)
            SITES_ARG=${1#*=}
            shift
            ;;
        --channel)
            [[ $# -ge 2 ]] || die "--channel needs a name"
            CHANNEL_ARG=$2
            shift 2
            ;;
        --channel=*)
            CHANNEL_ARG=${1#*=}
            shift
            ;;
        --port-base)
            [[ $# -ge 2 ]] || die "--port-base needs a port"
            PORT_BASE_ARG=$2
            shift 2
            ;;
        --port-base=*)
            PORT_BASE_ARG=${1#*=}
            shift
            ;;
        --fresh)
            FRESH=true
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
        esac
    done
    if [[ -n $SITE_NAMES_ARG ]]; then
        local count
        count=$(tr ',' '\n' <<<"$SITE_NAMES_ARG" | grep -c .)
        if [[ -n $SITES_ARG && $SITES_ARG != "$count" ]]; then
            die "SITE_NAMES has $count names but --sites/SITES says $SITES_ARG"
        fi
        SITES_ARG=$count
    fi
    if [[ -n $SITES_ARG ]] && ! [[ $SITES_ARG =~ ^[1-9][0-9]*$ && $SITES_ARG -le 50 ]]; then
        die "--sites must be a number from 1 to 50 (got '$SITES_ARG')"
    fi
    if [[ -n $CHANNEL_ARG ]] && ! [[ $CHANNEL_ARG =~ ^[a-z][a-z0-9.-]{0,248}$ ]]; then
        die "--channel must be lower case letters, digits, '.' or '-', starting with a letter (got '$CHANNEL_ARG')"
    fi
    if [[ -n $PORT_BASE_ARG ]] && ! [[ $PORT_BASE_ARG =~ ^[0-9]+$ && $PORT_BASE_ARG -ge 1024 && $PORT_BASE_ARG -le 64000 ]]; then
        die "--port-base must be a port from 1024 to 64000 (got '$PORT_BASE_ARG')"
    fi
}

# Settles SITES, CHANNEL, PORT_BASE, SITE_NAMES: what was asked for, else what
# the existing network has, else the defaults.
settle_settings() {
    local old_sites="" old_channel="" old_port_base="" old_site_names=""
    # only a network that got ready counts: an unfinished one is made anew
    if [[ -f $NET_STATE && $(state_get READY) == 1 ]]; then
        old_sites=$(state_get SITES)
        old_channel=$(state_get CHANNEL)
        old_port_base=$(state_get PORT_BASE)
        old_site_names=$(state_get SITE_NAMES)
    fi
    SITES=${SITES_ARG:-${old_sites:-3}}
    CHANNEL=${CHANNEL_ARG:-${old_channel:-swarm}}
    PORT_BASE=${PORT_BASE_ARG:-${old_port_base:-7050}}
    if [[ -n $SITE_NAMES_ARG ]]; then
        SITE_NAMES=$SITE_NAMES_ARG
    elif [[ -n $old_site_names && $SITES == "$old_sites" ]]; then
        SITE_NAMES=$old_site_names
    else
        local i names=()
        for ((i = 1; i <= SITES; i++)); do names+=("$(default_site_name "$i")"); done
        SITE_NAMES=$(
            IFS=,
            echo "${names[*]}"
        )
    fi
    IFS=, read -r -a SITE_NAME_LIST <<<"$SITE_NAMES"
    local name
    for name in "${SITE_NAME_LIST[@]}"; do
        [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "site name '$name' is not 1-64 of [A-Za-z0-9._-] starting with a letter or digit"
    done
    if [[ -n $old_sites ]] && ! $FRESH; then
        if [[ $SITES != "$old_sites" || $CHANNEL != "$old_channel" || $PORT_BASE != "$old_port_base" || $SITE_NAMES != "$old_site_names" ]]; then
            die "the network in ${FABRIC_HOME#"$REPO_ROOT"/}/ has SITES=$old_sites CHANNEL=$old_channel PORT_BASE=$old_port_base SITE_NAMES=$old_site_names;" \
                "you asked for SITES=$SITES CHANNEL=$CHANNEL PORT_BASE=$PORT_BASE SITE_NAMES=$SITE_NAMES: add --fresh to make a new one"
        fi
    fi
}

# The chaincode endorsement policy: a strict majority of the site organisations.
endorsement_policy() {
    local i majority=$((SITES / 2 + 1)) policy
    policy="OutOf($majority"
    for ((i = 1; i <= SITES; i++)); do
        policy+=", '$(org_msp "$i").peer'"
    done
    echo "$policy)"
}

# ---------------------------------------------------------------- state file
# .fabric/network.env: KEY=VALUE lines describing the network made here.

state_get() {
    [[ -f $NET_STATE ]] || return 0
    sed -n "s/^$1=//p" "$NET_STATE" | tail -n 1
}

state_set() {
    local key=$1 value=$2
    mkdir -p "$FABRIC_HOME"
    touch "$NET_STATE"
    grep -v "^$key=" "$NET_STATE" >"$NET_STATE.tmp" || true
    printf '%s=%s\n' "$key" "$value" >>"$NET_STATE.tmp"
    mv "$NET_STATE.tmp" "$NET_STATE"
}

# ---------------------------------------------------------------- processes

# Names of the processes the network consists of.
expected_names() {
    local i
    echo orderer
    for ((i = 1; i <= SITES; i++)); do echo "peer-org$i"; done
    for ((i = 1; i <= SITES; i++)); do echo "chaincode-org$i"; done
}

# True when an HTTP GET of 127.0.0.1:PORT/PATH answers 200 (no curl needed).
http_ok() {
    local port=$1 path=$2
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        IFS= read -r -t 2 status <&3 || exit 1
        [[ $status == *" 200 "* ]]
    ) 2>/dev/null
}

# Prints the body of an HTTP GET of 127.0.0.1:PORT/PATH.
http_get() {
    local port=$1 path=$2
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        timeout 5 cat <&3 | sed '1,/^\r\{0,1\}$/d'
    ) 2>/dev/null
}

# True when the orderer leads the channel's Raft cluster (its Prometheus
# gauge consensus_etcdraft_is_leader says 1): it can order transactions.
orderer_is_leader() {
    http_get "$(port_orderer_ops)" /metrics | grep -q "^consensus_etcdraft_is_leader{channel=\"$CHANNEL\"} 1"
}

# True when the named process answers its health check.
process_healthy() {
    local name=$1 i
    case $name in
    orderer) http_ok "$(port_orderer_ops)" /healthz ;;
    peer-org*)
        i=${name#peer-org}
        http_ok "$(port_peer_ops "$i")" /healthz
        ;;
    chaincode-org*)
        i=${name#chaincode-org}
        port_open "$(port_ccaas "$i")"
        ;;
    *) return 1 ;;
    esac
}

# start_process NAME EXE [ARG...]: starts EXE in its own session with the
# environment of the caller plus the variables in the array PROC_ENV, output
# to .fabric/logs/NAME.log, and records its PID.
start_process() {
    local name=$1 exe=$2
    shift 2
    local logf=$NET_LOGS/$name.log pidf=$NET_PIDS/$name.pid i
    rm -f "$pidf"
    STARTED_PROCESSES=true
    printf '\n===== %s: starting %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$exe" "$*" >>"$logf"
    # The inner shell writes its own PID and then becomes EXE (exec keeps the
    # PID), so the PID recorded is the program's whether or not setsid forked.
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
    env "${PROC_ENV[@]}" setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
        "$pidf" "$exe" "$@" </dev/null >>"$logf" 2>&1 &
    for ((i = 0; i < 100; i++)); do
        [[ -s $pidf ]] && break
        sleep 0.05
    done
    [[ -s $pidf ]] || die "$name did not start (no PID after 5 s); log: $logf"
    echo "$exe" >"$NET_PIDS/$name.exe"
}

# wait_healthy TIMEOUT_S NAME...: waits until every named process passes its
# health check; fails at once, with its log, if one dies.
wait_healthy() {
    local timeout_s=$1
    shift
    local pending=("$@") still name pid deadline
    deadline=$(($(now_ms) + timeout_s * 1000))
    while ((${#pending[@]})); do
        still=()
        for name in "${pending[@]}"; do
            pid=$(pid_of "$name")
            if ! kill -0 "$pid" 2>/dev/null; then
                show_log_tail "$NET_LOGS/$name.log"
                die "$name (pid $pid) exited during start-up; log: $NET_LOGS/$name.log"
            fi
            process_healthy "$name" || still+=("$name")
        done
        pending=("${still[@]+"${still[@]}"}")
        ((${#pending[@]})) || break
        if (($(now_ms) > deadline)); then
            for name in "${pending[@]}"; do show_log_tail "$NET_LOGS/$name.log"; done
            die "not healthy after ${timeout_s}s: ${pending[*]}"
        fi
        sleep 0.1
    done
}

# Fails, naming them, if any port of the plan is taken by something else.
check_ports_free() {
    local ports=() port i busy=()
    ports+=("$(port_orderer)" "$(port_orderer_admin)" "$(port_orderer_ops)")
    for ((i = 1; i <= SITES; i++)); do
        ports+=("$(port_peer "$i")" "$(port_peer_cc "$i")" "$(port_peer_ops "$i")" "$(port_ccaas "$i")")
    done
    for port in "${ports[@]}"; do
        port_open "$port" && busy+=("$port")
    done
    if ((${#busy[@]})); then
        die "port(s) ${busy[*]} on 127.0.0.1 are already in use by another program" \
            "(another network? stop it, or pick other ports with --port-base)"
    fi
}

stop_everything_recorded() {
    local names
    mapfile -t names < <(recorded_names)
    ((${#names[@]} == 0)) || stop_recorded "${names[@]}"
}

# ---------------------------------------------------------------- CLI helpers

# cli ORG ROLE PEER-ARGS...: runs the peer CLI as ORG's Admin (ROLE admin) or
# User1 (ROLE user) against ORG's peer. Output goes to stdout/stderr.
cli() {
    local i=$1 role=$2 msp
    shift 2
    if [[ $role == admin ]]; then msp=$(admin_msp "$i"); else msp=$(user_msp "$i"); fi
    env FABRIC_CFG_PATH="$NET_CONFIG" \
        FABRIC_LOGGING_SPEC=warning \
        CORE_PEER_LOCALMSPID="$(org_msp "$i")" \
        CORE_PEER_MSPCONFIGPATH="$msp" \
        CORE_PEER_ADDRESS="127.0.0.1:$(port_peer "$i")" \
        CORE_PEER_TLS_ENABLED=true \
        CORE_PEER_TLS_ROOTCERT_FILE="$(peer_tls_ca "$i")" \
        "$FABRIC_BIN/peer" "$@"
}

# Orderer connection flags for peer CLI commands that submit transactions.
orderer_flags() {
    echo -o "127.0.0.1:$(port_orderer)" --tls --cafile "$(orderer_tls_ca)"
}

# run_logged DESCRIPTION CMD...: runs CMD with its output in .fabric/logs/cli.log;
# on failure shows that output and fails.
run_logged() {
    local what=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    printf '\n===== %s: %s (exit %s)\n%s\n' "$(date -u +%H:%M:%S)" "$what" "$rc" "$out" >>"$NET_LOGS/cli.log"
    if ((rc != 0)); then
        printf '%s\n' "$out" >&2
        die "$what failed (exit $rc); CLI log: $NET_LOGS/cli.log"
    fi
    LAST_OUTPUT=$out
}

# retry ATTEMPTS DELAY_S DESCRIPTION CMD...: runs CMD until it succeeds, at
# most ATTEMPTS times, DELAY_S apart; shows the last error when it gives up.
retry() {
    local attempts=$1 delay=$2 what=$3 n out rc
    shift 3
    for ((n = 1; n <= attempts; n++)); do
        rc=0
        out=$("$@" 2>&1) || rc=$?
        printf '\n===== %s: %s, attempt %s (exit %s)\n%s\n' "$(date -u +%H:%M:%S)" "$what" "$n" "$rc" "$out" >>"$NET_LOGS/cli.log"
        if ((rc == 0)); then
            LAST_OUTPUT=$out
            ((n == 1)) || log "$what succeeded on attempt $n"
            return 0
        fi
        if ((n < attempts)); then
            if ((n == 3 || n % 10 == 0)); then
                log "$what: not yet (attempt $n/$attempts)${out:+: $(tail -n 1 <<<"$out" | cut -c1-160)}"
            fi
            sleep "$delay"
        fi
    done
    printf '%s\n' "$out" >&2
    die "$what still failing after $attempts attempts; CLI log: $NET_LOGS/cli.log"
}

# parallel DESCRIPTION FUNCTION ARG...: runs FUNCTION ARG for every ARG at the
# same time and waits for all; fails if any failed (their messages are shown).
parallel() {
    local what=$1 fn=$2 arg pids=() failed=0 k
    shift 2
    local args=("$@")
    for arg in "${args[@]}"; do
        "$fn" "$arg" &
        pids+=($!)
    done
    for k in "${!pids[@]}"; do
        wait "${pids[$k]}" || failed=$((failed + 1))
    done
    ((failed == 0)) || die "$what failed for $failed of ${#args[@]}"
}

# ---------------------------------------------------------------- step 2: crypto

write_crypto_config() {
    local i f=$NET_CONFIG/crypto-config.yaml
    cat >"$f" <<EOF
# Generated by scripts/start_network.sh: the identities of the test network.
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS: [localhost, 127.0.0.1]
PeerOrgs:
EOF
    for ((i = 1; i <= SITES; i++)); do
        cat >>"$f" <<EOF
  - Name: $(org_name "$i")
    Domain: $(org_domain "$i")
    EnableNodeOUs: true
    Template:
      Count: 1
      SANS: [localhost, 127.0.0.1]
    Users:
      Count: 2   # User1: the site's swarm-network service; User2: spare
EOF
    done
}

make_crypto() {
    step "2/7 crypto material: 1 orderer org + $SITES site orgs (cryptogen, NodeOUs on)"
    write_crypto_config
    run_logged "cryptogen generate" "$FABRIC_BIN/cryptogen" generate \
        --config="$NET_CONFIG/crypto-config.yaml" --output="$NET_CRYPTO"
    local i
    for ((i = 1; i <= SITES; i++)); do
        [[ -f $(user_msp "$i")/keystore/priv_sk ]] || die "cryptogen made no User1 key for $(org_name "$i")"
    done
    log "identities in ${NET_CRYPTO#"$REPO_ROOT"/}/"
}

# ---------------------------------------------------------------- step 3: genesis block

write_configtx() {
    local i anchors=()
    {
        echo "# Generated by scripts/start_network.sh: the channel \"$CHANNEL\"."
        configtx_orderer_org 127.0.0.1
        for ((i = 1; i <= SITES; i++)); do
            configtx_site_org "$(org_name "$i")" "$(org_msp "$i")" "$(org_dir "$i")/msp" 127.0.0.1 "$(port_peer "$i")"
            anchors+=("$(org_name "$i")")
        done
        configtx_profile 127.0.0.1 "${anchors[@]}"
    } >"$NET_CONFIG/configtx.yaml"
}

make_genesis_block() {
    step "3/7 genesis block of channel '$CHANNEL' (etcdraft, 1 orderer, BatchTimeout $BATCH_TIMEOUT, MaxMessageCount $MAX_MESSAGE_COUNT, anchor peers for $SITES orgs)"
    write_configtx
    run_logged "configtxgen" env FABRIC_CFG_PATH="$NET_CONFIG" "$FABRIC_BIN/configtxgen" \
        -profile SwarmChannel -channelID "$CHANNEL" -outputBlock "$FABRIC_HOME/$CHANNEL.block"
    log "block: ${FABRIC_HOME#"$REPO_ROOT"/}/$CHANNEL.block"
}

# ---------------------------------------------------------------- step 4: processes

start_orderer() {
    local od
    od=$(orderer_dir)
    mkdir -p "$NET_DATA/orderer"
    PROC_ENV=(
        FABRIC_CFG_PATH="$NET_CONFIG"
        FABRIC_LOGGING_SPEC="$LOG_SPEC"
        ORDERER_GENERAL_LISTENADDRESS="$LISTEN_HOST"
        ORDERER_GENERAL_LISTENPORT="$(port_orderer)"
        ORDERER_GENERAL_LOCALMSPID=OrdererMSP
        ORDERER_GENERAL_LOCALMSPDIR="$od/msp"
        ORDERER_GENERAL_TLS_ENABLED=true
        ORDERER_GENERAL_TLS_PRIVATEKEY="$od/tls/server.key"
        ORDERER_GENERAL_TLS_CERTIFICATE="$od/tls/server.crt"
        ORDERER_GENERAL_TLS_ROOTCAS="[$od/tls/ca.crt]"
        ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE="$od/tls/server.crt"
        ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY="$od/tls/server.key"
        ORDERER_GENERAL_CLUSTER_ROOTCAS="[$od/tls/ca.crt]"
        ORDERER_GENERAL_BOOTSTRAPMETHOD=none
        ORDERER_CHANNELPARTICIPATION_ENABLED=true
        ORDERER_ADMIN_LISTENADDRESS="127.0.0.1:$(port_orderer_admin)"
        ORDERER_ADMIN_TLS_ENABLED=false
        ORDERER_OPERATIONS_LISTENADDRESS="127.0.0.1:$(port_orderer_ops)"
        ORDERER_METRICS_PROVIDER=prometheus
        ORDERER_FILELEDGER_LOCATION="$NET_DATA/orderer"
        ORDERER_CONSENSUS_WALDIR="$NET_DATA/orderer/etcdraft/wal"
        ORDERER_CONSENSUS_SNAPDIR="$NET_DATA/orderer/etcdraft/snapshot"
    )
    start_process orderer "$FABRIC_BIN/orderer"
}

start_peer() {
    local i=$1 pd addr
    pd=$(peer_dir "$i")
    addr=$NODE_HOST:$(port_peer "$i")
    mkdir -p "$NET_DATA/peer-org$i"
    PROC_ENV=(
        FABRIC_CFG_PATH="$NET_CONFIG"
        FABRIC_LOGGING_SPEC="$LOG_SPEC"
        CORE_PEER_ID="$(peer_host "$i")"
        CORE_PEER_LISTENADDRESS="$LISTEN_HOST:$(port_peer "$i")"
        CORE_PEER_ADDRESS="$addr"
        CORE_PEER_CHAINCODELISTENADDRESS="127.0.0.1:$(port_peer_cc "$i")"
        CORE_PEER_CHAINCODEADDRESS="127.0.0.1:$(port_peer_cc "$i")"
        CORE_PEER_GOSSIP_BOOTSTRAP="$addr"
        CORE_PEER_GOSSIP_ENDPOINT="$addr"
        CORE_PEER_GOSSIP_EXTERNALENDPOINT="$addr"
        CORE_PEER_GOSSIP_USELEADERELECTION=false
        CORE_PEER_GOSSIP_ORGLEADER=true
        # faster membership and state-info spread on one machine, so that the
        # Gateway's discovery knows every org's peer soon after start
        CORE_PEER_GOSSIP_ALIVETIMEINTERVAL=1s
        CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT=10s
        CORE_PEER_GOSSIP_RECONNECTINTERVAL=1s
        CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL=1s
        CORE_PEER_GOSSIP_REQUESTSTATEINFOINTERVAL=1s
        CORE_PEER_GOSSIP_PULLINTERVAL=1s
        CORE_PEER_GOSSIP_MEMBERSHIPTRACKERINTERVAL=1s
        CORE_PEER_GOSSIP_DIALTIMEOUT=1s
        CORE_PEER_GOSSIP_CONNTIMEOUT=1s
        CORE_PEER_LOCALMSPID="$(org_msp "$i")"
        CORE_PEER_MSPCONFIGPATH="$pd/msp"
        CORE_PEER_TLS_ENABLED=true
        CORE_PEER_TLS_CERT_FILE="$pd/tls/server.crt"
        CORE_PEER_TLS_KEY_FILE="$pd/tls/server.key"
        CORE_PEER_TLS_ROOTCERT_FILE="$pd/tls/ca.crt"
        CORE_PEER_GATEWAY_ENABLED=true
        CORE_PEER_FILESYSTEMPATH="$NET_DATA/peer-org$i"
        CORE_LEDGER_SNAPSHOTS_ROOTDIR="$NET_DATA/peer-org$i/snapshots"
        CORE_LEDGER_STATE_STATEDATABASE=goleveldb
        CORE_OPERATIONS_LISTENADDRESS="127.0.0.1:$(port_peer_ops "$i")"
        CORE_METRICS_PROVIDER=disabled
        CORE_PEER_PROFILE_ENABLED=false
        CORE_VM_ENDPOINT=
        CORE_CHAINCODE_EXTERNALBUILDERS="[{name: ccaas_builder, path: $BUILDER_DIR, propagateEnvironment: [CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG]}]"
        CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG="{\"address\":\"127.0.0.1:$(port_ccaas "$i")\"}"
    )
    start_process "peer-org$i" "$FABRIC_BIN/peer" node start
}

start_nodes() {
    local i names=(orderer)
    check_ports_free
    start_orderer
    for ((i = 1; i <= SITES; i++)); do
        start_peer "$i"
        names+=("peer-org$i")
    done
    log "started orderer and $SITES peers; waiting for /healthz on their operations ports"
    wait_healthy 60 "${names[@]}"
    log "orderer 127.0.0.1:$(port_orderer) healthy; peers $(for ((i = 1; i <= SITES; i++)); do printf '127.0.0.1:%s ' "$(port_peer "$i")"; done)healthy"
}

# ---------------------------------------------------------------- step 5: channel

join_peer() {
    local i=$1
    run_logged "peer channel join ($(org_name "$i"))" cli "$i" admin channel join -b "$FABRIC_HOME/$CHANNEL.block"
}

join_channel() {
    step "5/7 join channel '$CHANNEL': orderer (osnadmin), then every peer"
    run_logged "osnadmin channel join" "$FABRIC_BIN/osnadmin" channel join \
        --channelID "$CHANNEL" --config-block "$FABRIC_HOME/$CHANNEL.block" -o "127.0.0.1:$(port_orderer_admin)"
    retry 100 0.1 "orderer channel '$CHANNEL' active" orderer_channel_active
    wait_raft_leader
    local orgs=()
    for ((i = 1; i <= SITES; i++)); do orgs+=("$i"); done
    parallel "peer channel join" join_peer "${orgs[@]}"
    log "$SITES peers joined '$CHANNEL'"
}

wait_raft_leader() {
    retry 150 0.1 "Raft leader election on '$CHANNEL'" orderer_is_leader
    log "orderer is a consenter of '$CHANNEL' and its Raft leader"
}

# On resume only. Restarted on its existing write-ahead log, the orderer's Raft
# node sometimes never applies its own membership: its log shows "switched to
# configuration voters=()" and no campaign, for good (seen once after the
# orderer was SIGKILLed mid-training, with the pinned Fabric snapshot). A
# second start on the same log campaigns at once, so after 15 s without a
# leader the orderer is restarted once, saying so.
wait_raft_leader_on_resume() {
    local n
    for ((n = 1; n <= 100; n++)); do
        if orderer_is_leader; then
            log "orderer is a consenter of '$CHANNEL' and its Raft leader"
            return 0
        fi
        sleep 0.15
    done
    warn "the orderer has no Raft leader for '$CHANNEL' after a restart on its ledger (its Raft node did not campaign); restarting the orderer once"
    stop_recorded orderer
    start_orderer
    wait_healthy 60 orderer
    wait_raft_leader
}

orderer_channel_active() {
    local out
    out=$("$FABRIC_BIN/osnadmin" channel list --channelID "$CHANNEL" -o "127.0.0.1:$(port_orderer_admin)" 2>&1) || {
        echo "$out"
        return 1
    }
    echo "$out"
    if grep -q 'channel does not exist' <<<"$out"; then
        # osnadmin exits 0 even when the orderer refuses the join (as it can
        # while it is still starting, on a loaded machine): ask again.
        "$FABRIC_BIN/osnadmin" channel join --channelID "$CHANNEL" --config-block "$FABRIC_HOME/$CHANNEL.block" \
            -o "127.0.0.1:$(port_orderer_admin)" >>"$NET_LOGS/cli.log" 2>&1 || true
        return 1
    fi
    grep -q '"status": *"active"' <<<"$out"
}

# ---------------------------------------------------------------- step 6: chaincode

build_chaincode() {
    local go t0
    go=$(find_go) || die "Go is needed to build the chaincode"
    [[ -f $CHAINCODE_DIR/go.mod ]] ||
        die "no chaincode module at $CHAINCODE_DIR (no go.mod); set CHAINCODE_DIR to a Go chaincode-as-a-service module"
    # go build writes to .tools/ (kept by --fresh and stop --clean), where it
    # finds its last output up to date and skips the link (seconds on 2 cores);
    # a lock keeps networks started at the same time from building at once.
    # Each network runs its own copy, so a rebuild never swaps a running binary.
    mkdir -p "$(dirname "$CHAINCODE_BUILD_OUT")" "$(dirname "$CHAINCODE_BIN")"
    t0=$(now_ms)
    if ! (
        cd "$CHAINCODE_DIR" &&
            flock -w 600 9 &&
            "$go" build -o "$CHAINCODE_BUILD_OUT" . &&
            cp "$CHAINCODE_BUILD_OUT" "$CHAINCODE_BIN.new"
    ) 9>"$CHAINCODE_BUILD_OUT.lock" >"$NET_LOGS/chaincode-build.log" 2>&1; then
        return 1 # the caller shows the log
    fi
    mv -f "$CHAINCODE_BIN.new" "$CHAINCODE_BIN"
    log "chaincode server built from ${CHAINCODE_DIR#"$REPO_ROOT"/} in $(($(now_ms) - t0)) ms"
}

# The chaincode is compiled in the background while the network starts;
# wait_chaincode_build collects it (and reports a failure).
start_chaincode_build() {
    build_chaincode &
    CHAINCODE_BUILD_PID=$!
}

wait_chaincode_build() {
    if [[ -n ${CHAINCODE_BUILD_PID:-} ]]; then
        local pid=$CHAINCODE_BUILD_PID
        CHAINCODE_BUILD_PID=
        wait "$pid" && return 0
    else
        build_chaincode && return 0
    fi
    show_log_tail "$NET_LOGS/chaincode-build.log"
    die "building the chaincode in $CHAINCODE_DIR failed; log: $NET_LOGS/chaincode-build.log"
}

# The package: metadata.json (type ccaas) and code.tar.gz holding a
# connection.json whose address the builder fills in per peer. Made
# reproducibly (fixed owners and times), so its package ID is stable.
package_chaincode() {
    local dir=$NET_CHAINCODE/pkg
    rm -rf "$dir"
    mkdir -p "$dir/code"
    cat >"$dir/code/connection.json" <<'EOF'
{
  "address": "{{.address}}",
  "dial_timeout": "10s",
  "tls_required": false
}
EOF
    printf '{"type":"ccaas","label":"%s"}\n' "$CC_LABEL" >"$dir/metadata.json"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir/code" -cf - connection.json |
        gzip -n >"$dir/code.tar.gz"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir" -cf - code.tar.gz metadata.json |
        gzip -n >"$NET_CHAINCODE/$CC_LABEL.tgz"
    PACKAGE_ID=$(FABRIC_CFG_PATH=$NET_CONFIG "$FABRIC_BIN/peer" lifecycle chaincode calculatepackageid "$NET_CHAINCODE/$CC_LABEL.tgz" 2>/dev/null) ||
        die "peer lifecycle chaincode calculatepackageid failed"
    log "package ${NET_CHAINCODE#"$REPO_ROOT"/}/$CC_LABEL.tgz, id $PACKAGE_ID"
}

install_on_peer() {
    local i=$1
    run_logged "chaincode install ($(org_name "$i"))" cli "$i" admin lifecycle chaincode install "$NET_CHAINCODE/$CC_LABEL.tgz"
}

start_chaincode_servers() {
    local i names=()
    for ((i = 1; i <= SITES; i++)); do
        PROC_ENV=(
            CHAINCODE_SERVER_ADDRESS="127.0.0.1:$(port_ccaas "$i")"
            CHAINCODE_ID="$PACKAGE_ID"
        )
        start_process "chaincode-org$i" "$CHAINCODE_BIN"
        names+=("chaincode-org$i")
    done
    wait_healthy 30 "${names[@]}"
    log "$SITES chaincode servers listening on $(for ((i = 1; i <= SITES; i++)); do printf '127.0.0.1:%s ' "$(port_ccaas "$i")"; done)"
}

# One approval attempt; an approval that went through although the CLI
# reported an error (e.g. while waiting for the commit event) counts too.
approve_once() {
    local i=$1
    # shellcheck disable=SC2046 # orderer_flags is several words on purpose
    cli "$i" admin lifecycle chaincode approveformyorg \
        $(orderer_flags) --channelID "$CHANNEL" --name "$CC_NAME" --version "$CC_VERSION" \
        --sequence "$CC_SEQUENCE" --package-id "$PACKAGE_ID" ${POLICY:+--signature-policy "$POLICY"} && return 0
    cli "$i" admin lifecycle chaincode queryapproved --channelID "$CHANNEL" --name "$CC_NAME" \
        --sequence "$CC_SEQUENCE" 2>/dev/null | grep -q "$PACKAGE_ID"
}

approve_for_org() {
    local i=$1
    retry 60 0.5 "approveformyorg ($(org_name "$i"))" approve_once "$i"
}

# One commit attempt (as Org1's Admin, endorsed by every peer); a definition
# already committed counts as success.
commit_once() {
    # shellcheck disable=SC2046
    cli 1 admin lifecycle chaincode commit \
        $(orderer_flags) --channelID "$CHANNEL" --name "$CC_NAME" --version "$CC_VERSION" \
        --sequence "$CC_SEQUENCE" --signature-policy "$POLICY" "$@" && return 0
    cli 1 admin lifecycle chaincode querycommitted --channelID "$CHANNEL" --name "$CC_NAME" 2>/dev/null |
        grep -q "Sequence: $CC_SEQUENCE,"
}

commit_chaincode() {
    local i peer_flags=()
    for ((i = 1; i <= SITES; i++)); do
        peer_flags+=(--peerAddresses "127.0.0.1:$(port_peer "$i")" --tlsRootCertFiles "$(peer_tls_ca "$i")")
    done
    retry 10 0.5 "chaincode commit" commit_once "${peer_flags[@]}"
    run_logged "querycommitted" cli 1 admin lifecycle chaincode querycommitted --channelID "$CHANNEL" --name "$CC_NAME"
    log "committed: $(grep -m1 'Version' <<<"$LAST_OUTPUT")"
}

# Through every peer, GetTask of a task that does not exist must answer
# TASK_NOT_FOUND: the chaincode server is reached and runs the contract.
# Retried while the peer cannot reach the server yet; any other answer from
# the chaincode itself fails at once.
smoke_test() {
    local i n out rc
    for ((i = 1; i <= SITES; i++)); do
        for ((n = 1; ; n++)); do
            rc=0
            out=$(cli "$i" user chaincode query -C "$CHANNEL" -n "$CC_NAME" \
                -c "{\"Args\":[\"GetTask\",\"$SMOKE_TASK\"]}" 2>&1) || rc=$?
            printf '\n===== %s: smoke query via %s, attempt %s (exit %s)\n%s\n' \
                "$(date -u +%H:%M:%S)" "$(org_name "$i")" "$n" "$rc" "$out" >>"$NET_LOGS/cli.log"
            [[ $out == *TASK_NOT_FOUND* ]] && break
            if [[ $out == *"status:500"* || $n -ge 40 ]]; then
                printf '%s\n' "$out" >&2
                show_log_tail "$NET_LOGS/chaincode-org$i.log" 20
                show_log_tail "$NET_LOGS/peer-org$i.log" 20
                die "GetTask('$SMOKE_TASK') through $(peer_host "$i") did not answer TASK_NOT_FOUND"
            fi
            sleep 0.25
        done
    done
    log "GetTask('$SMOKE_TASK') -> TASK_NOT_FOUND through all $SITES peers: the chaincode serves"
}

# Waits until every peer's discovery service offers an endorsement plan for
# the chaincode that involves every organisation: what the Gateway needs.
discovery_ready_for() {
    local i=$1 out m missing=()
    out=$("$FABRIC_BIN/discover" --peerTLSCA "$(peer_tls_ca "$i")" \
        --userKey "$(user_msp "$i")/keystore/priv_sk" \
        --userCert "$(user_msp "$i")/signcerts/User1@$(org_domain "$i")-cert.pem" \
        --MSP "$(org_msp "$i")" endorsers --channel "$CHANNEL" --chaincode "$CC_NAME" \
        --server "127.0.0.1:$(port_peer "$i")" 2>&1) || {
        echo "$out"
        return 1
    }
    for ((m = 1; m <= SITES; m++)); do
        grep -q "\"$(org_msp "$m")\"" <<<"$out" || missing+=("$(org_msp "$m")")
    done
    if ((${#missing[@]})); then
        echo "discovery at $(peer_host "$i") does not know yet: ${missing[*]}"
        return 1
    fi
}

wait_discovery() {
    local i
    for ((i = 1; i <= SITES; i++)); do
        retry 120 0.25 "discovery of all orgs' peers via $(peer_host "$i")" discovery_ready_for "$i"
    done
    log "every peer's discovery service sees all $SITES orgs' peers with the chaincode (Gateway ready)"
}

deploy_chaincode() {
    step "6/7 chaincode '$CC_NAME' as a service; policy $POLICY"
    wait_chaincode_build
    package_chaincode
    local orgs=() i
    for ((i = 1; i <= SITES; i++)); do orgs+=("$i"); done
    parallel "chaincode install" install_on_peer "${orgs[@]}"
    log "installed on $SITES peers"
    start_chaincode_servers
    parallel "approveformyorg" approve_for_org "${orgs[@]}"
    log "approved by $SITES orgs"
    commit_chaincode
    smoke_test
    wait_discovery
}

# ---------------------------------------------------------------- step 7: profile

write_profile() {
    local i sep tmp=$NET_PROFILE.tmp
    {
        cat <<EOF
{
  "format": "swarm-fabric-profile/1",
  "fabric_version": "$(grep '^FABRIC_LABEL=' "$FABRIC_STAMP" | cut -d= -f2)",
  "channel": "$CHANNEL",
  "chaincode": "$CC_NAME",
  "endorsement_policy": "$POLICY",
  "orderer": {
    "address": "127.0.0.1:$(port_orderer)",
    "tls_ca_cert": "$(orderer_tls_ca)",
    "ssl_target_name_override": "orderer.example.com"
  },
  "sites": {
EOF
        for ((i = 1; i <= SITES; i++)); do
            sep=,
            ((i == SITES)) && sep=
            cat <<EOF
    "${SITE_NAME_LIST[i - 1]}": {
      "org": "$(org_name "$i")",
      "mspid": "$(org_msp "$i")",
      "msp_ca_cert": "$(org_dir "$i")/msp/cacerts/ca.$(org_domain "$i")-cert.pem",
      "peer": {
        "name": "$(peer_host "$i")",
        "gateway_address": "127.0.0.1:$(port_peer "$i")",
        "tls_ca_cert": "$(peer_tls_ca "$i")",
        "ssl_target_name_override": "$(peer_host "$i")",
        "operations_address": "127.0.0.1:$(port_peer_ops "$i")"
      },
      "client": {
        "name": "User1@$(org_domain "$i")",
        "cert": "$(user_msp "$i")/signcerts/User1@$(org_domain "$i")-cert.pem",
        "key": "$(user_msp "$i")/keystore/priv_sk"
      }
    }$sep
EOF
        done
        echo "  }"
        echo "}"
    } >"$tmp"
    if command -v jq >/dev/null 2>&1; then
        jq empty "$tmp" || die "the connection profile written is not valid JSON: $tmp"
    fi
    mv "$tmp" "$NET_PROFILE"
}

# ---------------------------------------------------------------- whole flows

# core.yaml and orderer.yaml: Fabric's own samples for the pinned version;
# every per-node setting is given by environment variables when a node starts.
# One edit: vm.endpoint is emptied (no Docker). CORE_VM_ENDPOINT= alone is not
# enough before Fabric 3.0, whose configuration ignores empty variables.
copy_node_config() {
    mkdir -p "$NET_CONFIG"
    cp "$FABRIC_SAMPLECONFIG/core.yaml" "$FABRIC_SAMPLECONFIG/orderer.yaml" "$NET_CONFIG/"
    chmod u+w "$NET_CONFIG"/core.yaml "$NET_CONFIG"/orderer.yaml
    sed -i 's#^\([[:space:]]*endpoint:[[:space:]]*\)unix:///var/run/docker.sock[[:space:]]*$#\1""#' "$NET_CONFIG/core.yaml"
    grep -Eq '^[[:space:]]*endpoint:[[:space:]]*unix://' "$NET_CONFIG/core.yaml" && die "could not empty vm.endpoint in $NET_CONFIG/core.yaml"
    return 0
}

fresh_start() {
    rm -rf "$FABRIC_HOME"
    mkdir -p "$NET_CONFIG" "$NET_CRYPTO" "$NET_DATA" "$NET_LOGS" "$NET_PIDS" "$NET_CHAINCODE"
    copy_node_config
    state_set SITES "$SITES"
    state_set CHANNEL "$CHANNEL"
    state_set PORT_BASE "$PORT_BASE"
    state_set SITE_NAMES "$SITE_NAMES"
    state_set READY 0
    check_ports_free
    start_chaincode_build
    make_crypto
    make_genesis_block
    step "4/7 start orderer and $SITES peers (native processes, TLS on, no Docker)"
    start_nodes
    join_channel
    deploy_chaincode
    state_set PACKAGE_ID "$PACKAGE_ID"
    step "7/7 connection profile"
    write_profile
    state_set FABRIC_LABEL "$(grep '^FABRIC_LABEL=' "$FABRIC_STAMP" | cut -d= -f2)"
    state_set READY 1
    log "wrote ${NET_PROFILE#"$REPO_ROOT"/}"
}

# Starts the processes of a network that was made before and stopped.
resume() {
    step "2/7..5/7 the network in ${FABRIC_HOME#"$REPO_ROOT"/}/ exists (made before, now stopped): starting its processes on the same ledgers"
    mkdir -p "$NET_LOGS" "$NET_PIDS"
    copy_node_config
    PACKAGE_ID=$(state_get PACKAGE_ID)
    [[ -n $PACKAGE_ID ]] || die "no PACKAGE_ID in $NET_STATE: run with --fresh"
    check_ports_free
    start_chaincode_build
    start_nodes
    wait_raft_leader_on_resume
    step "6/7 chaincode servers"
    wait_chaincode_build
    start_chaincode_servers
    smoke_test
    wait_discovery
    step "7/7 connection profile"
    write_profile
    log "wrote ${NET_PROFILE#"$REPO_ROOT"/}"
}

# none | running | stopped | broken
network_status() {
    local name alive=0 total=0 healthy=0
    if [[ ! -f $NET_STATE ]]; then
        if [[ -n $(recorded_names) || -e $FABRIC_HOME ]]; then echo broken; else echo none; fi
        return
    fi
    [[ $(state_get READY) == 1 ]] || {
        echo broken
        return
    }
    for name in $(expected_names); do
        total=$((total + 1))
        if pid_alive "$name"; then
            alive=$((alive + 1))
            process_healthy "$name" && healthy=$((healthy + 1))
        fi
    done
    if ((healthy == total)); then
        echo running
    else
        echo stopped
    fi
}

print_summary() {
    local i
    echo
    echo "Fabric network '$CHANNEL' is up ($(state_get FABRIC_LABEL)), $SITES sites, chaincode '$CC_NAME' ($POLICY)"
    echo "  orderer        127.0.0.1:$(port_orderer)   admin 127.0.0.1:$(port_orderer_admin)   health http://127.0.0.1:$(port_orderer_ops)/healthz"
    for ((i = 1; i <= SITES; i++)); do
        printf '  %-14s %s peer 127.0.0.1:%s   health http://127.0.0.1:%s/healthz   chaincode server 127.0.0.1:%s\n' \
            "${SITE_NAME_LIST[i - 1]}" "$(org_msp "$i")" "$(port_peer "$i")" "$(port_peer_ops "$i")" "$(port_ccaas "$i")"
    done
    echo "  profile        $NET_PROFILE"
    echo "  logs           $NET_LOGS/ (orderer.log, peer-orgN.log, chaincode-orgN.log, cli.log)"
    local env_prefix=""
    [[ $FABRIC_HOME == "$REPO_ROOT/.fabric" ]] || env_prefix="FABRIC_HOME=$FABRIC_HOME "
    echo "  stop with      ${env_prefix}scripts/stop_network.sh   (--clean also removes ${FABRIC_HOME#"$REPO_ROOT"/}/)"
}

main() {
    parse_args "$@"
    # Fabric reads CORE_* / ORDERER_* variables; none from the caller's shell may leak in.
    local v
    for v in $(compgen -e); do
        [[ $v == CORE_* || $v == ORDERER_* ]] && unset "$v"
    done

    local t0
    t0=$(now_ms)
    if $FRESH && [[ -e $FABRIC_HOME ]]; then
        log "--fresh: stopping the recorded processes and wiping ${FABRIC_HOME#"$REPO_ROOT"/}/"
        stop_everything_recorded
        rm -rf "$FABRIC_HOME"
    fi
    settle_settings
    POLICY=$(endorsement_policy)
    [[ -f $CHAINCODE_DIR/go.mod ]] ||
        die "no chaincode module at $CHAINCODE_DIR (no go.mod); set CHAINCODE_DIR to a Go chaincode-as-a-service module"

    step "1/7 Fabric commands"
    install_fabric
    local t_ready
    t_ready=$(now_ms)

    local status
    status=$(network_status)
    case $status in
    running)
        log "the network in ${FABRIC_HOME#"$REPO_ROOT"/}/ is already running and healthy: nothing to do"
        print_summary
        return 0
        ;;
    stopped)
        # stop whatever part of it still runs, then start it all again
        stop_everything_recorded
        resume
        ;;
    broken)
        log "${FABRIC_HOME#"$REPO_ROOT"/}/ holds an unfinished network: stopping its processes and starting over"
        stop_everything_recorded
        fresh_start
        ;;
    none) fresh_start ;;
    esac

    print_summary
    local t1
    t1=$(now_ms)
    printf '\nready in %s s (network %s s after the Fabric commands were in place)\n' \
        "$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", ms / 1000 }')" \
        "$(awk -v ms=$((t1 - t_ready)) 'BEGIN { printf "%.1f", ms / 1000 }')"
}

STARTED_PROCESSES=false

on_exit() {
    local rc=$?
    ((rc != 0)) || return 0
    # no stray output (or go build) after the error: let a background build end
    [[ -z ${CHAINCODE_BUILD_PID:-} ]] || wait "$CHAINCODE_BUILD_PID" >/dev/null 2>&1 || true
    echo >&2
    echo "start_network.sh failed (exit $rc)." >&2
    if $STARTED_PROCESSES; then
        echo "Logs: $NET_LOGS/. The processes it started are still running for a look;" >&2
        echo "scripts/stop_network.sh stops them, and the next start_network.sh starts over." >&2
    fi
    exit "$rc"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    trap on_exit EXIT
    main "$@"
fi
