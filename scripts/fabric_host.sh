#!/usr/bin/env bash
# One host of a Fabric network that spans machines: the orderer operator's
# host, or one site's (hospital's) host. Each organisation makes its own keys
# on its own host (cryptogen for that one organisation); only public MSP
# material (CA certificates, NodeOU config, addresses) is handed to others,
# as a folder or a tar file. See docs/deploy.md for the whole procedure.
#
#   orderer operator                         each site (hospital)
#   ----------------                         --------------------
#                                            site-init      keys + export/OrgNMSP/
#   orderer-init   keys + export/orderer/
#   orderer-create-channel (founding orgs' exports) -> export/swarm.block
#                                            site-join      peer, channel, chaincode, approve
#                                            site-commit    (one site, once)
#                                            site-profile   connection.json for swarm-sn
#   later: a new site runs site-init, sends its export; then
#   orderer-add-org (its export) -> an update file
#                                            site-sign-update  (a majority of the member sites' admins)
#   orderer-submit-update
#                                            the new site: site-join --late, site-profile;
#                                            the others: site-profile again (the new org's CA)
#
# Everything a host makes lives in its --home folder (FABRIC_HOME layout of
# start_network.sh): crypto/ (this organisation's keys only), export/ (what
# may be given away), config/, data/, logs/, pids/. Ports: the plan of
# fabric-network/README.md, on the host's own address.
set -euo pipefail

# --home is needed before the shared scripts are sourced: they derive every path from FABRIC_HOME.
HOST_ARGS=("$@")
for ((k = 0; k < ${#HOST_ARGS[@]}; k++)); do
    if [[ ${HOST_ARGS[k]} == --home && $((k + 1)) -lt ${#HOST_ARGS[@]} ]]; then
        FABRIC_HOME=${HOST_ARGS[k + 1]}
        export FABRIC_HOME
    fi
done

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/start_network.sh
source "$SCRIPTS_DIR/start_network.sh"

HOST_ENV=$FABRIC_HOME/host.env
EXPORT_DIR=$FABRIC_HOME/export
CHANNEL=${CHANNEL:-swarm}
PORT_BASE=${FABRIC_PORT_BASE:-7050}
# The chaincode's endorsement policy is the channel's own (MAJORITY Endorsement of the member
# organisations), so an organisation added later counts without a new chaincode definition.
POLICY=""
# Peers and orderer listen on every interface of their host (the CLI reaches them on loopback);
# they are reached by others at the host's address, NODE_HOST.
LISTEN_HOST=0.0.0.0

usage() {
    cat <<EOF
Usage: scripts/fabric_host.sh COMMAND --home DIR [options]

Orderer operator:
  orderer-init --address IP            make the orderer organisation's keys (OrdererMSP);
                                       export/orderer/ is what sites need (public)
  orderer-create-channel --org DIR...  start the orderer and create channel '$CHANNEL' with the
                                       founding sites' exported folders; writes export/$CHANNEL.block
  orderer-add-org --org DIR --out FILE a channel config update adding that site's organisation,
                                       to be signed by a majority of the member sites' admins
  orderer-submit-update --update FILE  submit a signed update to the channel

Site (one organisation, one peer):
  site-init --org N --site NAME --address IP
                                       make organisation OrgN's keys on this host; export/OrgNMSP/
                                       is what the others need (public: no private key in it)
  site-join --orderer DIR --block FILE [--late]
                                       start the peer, join the channel, run and install the
                                       chaincode, approve its definition for this organisation;
                                       --late: the channel runs already (a site added later):
                                       also wait until the peer serves the committed chaincode
  site-commit --org DIR...             commit the chaincode definition, endorsed by those sites'
                                       peers (once, by one site, after a majority approved)
  site-sign-update --update FILE       sign a channel config update as this organisation's admin
  site-profile --org DIR...            write connection.json for swarm-sn: this site's peer and
                                       client identity, and the other sites' MSP CAs (public)
  stop                                 stop this host's Fabric processes (by recorded PID)
  start                                start them again on their ledgers (after stop or a reboot)

Every DIR given with --org / --orderer is another host's export folder (or its copy).
EOF
}

# ---------------------------------------------------------------- host state

host_get() {
    [[ -f $HOST_ENV ]] || die "$FABRIC_HOME is not a host folder made by $0 (no host.env): run site-init or orderer-init first"
    local v
    v=$(sed -n "s/^$1=//p" "$HOST_ENV" | tail -n 1)
    [[ -n $v ]] || die "$HOST_ENV has no $1"
    echo "$v"
}

# export_get DIR KEY: a value of another host's export folder (its org.env).
export_get() {
    local dir=$1 key=$2 v
    [[ -d $dir ]] || die "no such export folder: $dir (copy the other host's export/ folder here)"
    [[ -f $dir/org.env ]] || die "$dir is not an export folder made by $0 (no org.env in it)"
    v=$(sed -n "s/^$key=//p" "$dir/org.env" | tail -n 1)
    [[ -n $v ]] || die "$dir/org.env has no $key"
    echo "$v"
}

check_ip() {
    local ip=$1
    [[ $ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--address must be this host's IPv4 address that the other hosts reach (got '$ip')"
    [[ $ip != 0.0.0.0 ]] || die "--address 0.0.0.0 is no address another host can reach: give this host's own address"
}

# The orderer's TLS CA and address: the orderer's own files on its host, its export elsewhere.
ORDERER_EXPORT=""
orderer_tls_ca() {
    if [[ -n $ORDERER_EXPORT ]]; then echo "$ORDERER_EXPORT/tls-ca.crt"; else echo "$(orderer_dir)/tls/ca.crt"; fi
}
orderer_flags() {
    local endpoint
    if [[ -n $ORDERER_EXPORT ]]; then endpoint=$(export_get "$ORDERER_EXPORT" ORDERER_ADDRESS); else endpoint=127.0.0.1:$(port_orderer); fi
    echo -o "$endpoint" --tls --cafile "$(orderer_tls_ca)"
}

# Copies an organisation's public MSP (CA certificates, TLS CA certificates, NodeOU config) to DEST.
export_public_msp() {
    local msp=$1 dest=$2
    mkdir -p "$dest/cacerts" "$dest/tlscacerts"
    cp "$msp"/cacerts/*.pem "$dest/cacerts/"
    cp "$msp"/tlscacerts/*.pem "$dest/tlscacerts/"
    cp "$msp/config.yaml" "$dest/config.yaml"
}

# Fails, naming it, if an export folder holds anything that looks like a private key.
check_export_public() {
    local dir=$1 bad
    bad=$(grep -rlE -- '-----BEGIN (EC |RSA |ENCRYPTED )?PRIVATE KEY-----' "$dir" 2>/dev/null || true)
    [[ -z $bad ]] || die "private key material in the export folder, not sent: $bad"
}

# The org's MSP CA certificate in an export folder (one file in msp/cacerts).
export_msp_ca() {
    local dir=$1 f
    f=$(find "$dir/msp/cacerts" -name '*.pem' | head -n 1)
    [[ -n $f ]] || die "$dir/msp/cacerts holds no CA certificate"
    echo "$f"
}

# Checks that an export folder is another organisation's (not a copy of ours under another name).
check_foreign_export() {
    local dir=$1 mspid ca
    mspid=$(export_get "$dir" MSPID)
    ca=$(export_msp_ca "$dir")
    openssl x509 -in "$ca" -noout >/dev/null 2>&1 || die "$ca ($mspid) is not a PEM certificate"
    if [[ -f $HOST_ENV && $(sed -n 's/^ROLE=//p' "$HOST_ENV") == site ]]; then
        local own_mspid own_ca
        own_mspid=$(host_get MSPID)
        own_ca=$(org_dir "$(host_get ORG_INDEX)")/msp/cacerts/ca.$(org_domain "$(host_get ORG_INDEX)")-cert.pem
        if [[ $mspid != "$own_mspid" ]] && cmp -s "$ca" "$own_ca"; then
            die "$dir says it is $mspid but its MSP CA is this host's own ($own_mspid)"
        fi
    fi
}

# ---------------------------------------------------------------- orderer

orderer_init() {
    local address=$1
    check_ip "$address"
    [[ ! -e $HOST_ENV ]] || die "$FABRIC_HOME is already a host folder ($HOST_ENV): use another --home or remove it"
    install_fabric
    mkdir -p "$NET_CONFIG" "$NET_LOGS" "$NET_PIDS"
    [[ ! -O $FABRIC_HOME ]] || chmod go-rwx "$FABRIC_HOME" # (a folder made for us by an administrator stays as it is)
    copy_node_config
    cat >"$NET_CONFIG/crypto-config.yaml" <<EOF
# Generated by scripts/fabric_host.sh: the orderer organisation's identities, made on its own host.
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS: [localhost, 127.0.0.1, $address]
EOF
    run_logged "cryptogen generate (OrdererMSP)" "$FABRIC_BIN/cryptogen" generate \
        --config="$NET_CONFIG/crypto-config.yaml" --output="$NET_CRYPTO"
    chmod -R go-rwx "$NET_CRYPTO"
    printf 'ROLE=orderer\nMSPID=OrdererMSP\nADDRESS=%s\n' "$address" >"$HOST_ENV"
    local out=$EXPORT_DIR/orderer
    rm -rf "$out"
    mkdir -p "$out"
    export_public_msp "$NET_CRYPTO/$ORDERER_ORG_DIR_REL/msp" "$out/msp"
    cp "$(orderer_dir)/tls/ca.crt" "$out/tls-ca.crt"
    printf 'MSPID=OrdererMSP\nORDERER_ADDRESS=%s:%s\n' "$address" "$(port_orderer)" >"$out/org.env"
    check_export_public "$out"
    chmod -R a+rX "$out" # public: whoever receives it may read it
    log "OrdererMSP keys in ${NET_CRYPTO}/ (stay on this host); give the sites ${out}/"
}

# The organisation entry of configtx.yaml for a founding (or added) site's export folder.
configtx_org_entry() {
    local dir=$1 mspid
    mspid=$(export_get "$dir" MSPID)
    configtx_site_org "$mspid" "$mspid" "$(realpath "$dir")/msp" "$(export_get "$dir" PEER_HOST)" \
        "$(export_get "$dir" PEER_PORT)"
}

# write_host_configtx DIR...: configtx.yaml with the orderer org and the sites of the export folders.
write_host_configtx() {
    local address dir mspids=()
    address=$(host_get ADDRESS)
    {
        echo "# Generated by scripts/fabric_host.sh: the channel \"$CHANNEL\" across hosts."
        configtx_orderer_org "$address"
        for dir in "$@"; do
            configtx_org_entry "$dir"
            mspids+=("$(export_get "$dir" MSPID)")
        done
        configtx_profile "$address" "${mspids[@]}"
    } >"$NET_CONFIG/configtx.yaml"
}

orderer_create_channel() {
    [[ $(host_get ROLE) == orderer ]] || die "orderer-create-channel runs on the orderer host (this is a $(host_get ROLE) host)"
    (($# >= 1)) || die "orderer-create-channel needs the founding sites' export folders: --org DIR ..."
    local dir mspids=()
    for dir in "$@"; do
        check_foreign_export "$dir"
        check_export_public "$dir"
        mspids+=("$(export_get "$dir" MSPID)")
    done
    [[ $(printf '%s\n' "${mspids[@]}" | sort | uniq -d) == "" ]] || die "two export folders name the same organisation: ${mspids[*]}"
    install_fabric
    NODE_HOST=$(host_get ADDRESS)
    write_host_configtx "$@"
    run_logged "configtxgen" env FABRIC_CFG_PATH="$NET_CONFIG" "$FABRIC_BIN/configtxgen" \
        -profile SwarmChannel -channelID "$CHANNEL" -outputBlock "$FABRIC_HOME/$CHANNEL.block"
    start_orderer
    wait_healthy 60 orderer
    # /healthz answers before the admin endpoint does: orderer_channel_active joins once it answers
    retry 100 0.1 "orderer channel '$CHANNEL' active" orderer_channel_active
    wait_raft_leader
    cp "$FABRIC_HOME/$CHANNEL.block" "$EXPORT_DIR/$CHANNEL.block"
    log "channel '$CHANNEL' created with ${mspids[*]}; give the sites $EXPORT_DIR/$CHANNEL.block and $EXPORT_DIR/orderer/"
}

# peer CLI as the orderer organisation's admin (to fetch the channel config and submit updates).
orderer_admin_cli() {
    env FABRIC_CFG_PATH="$NET_CONFIG" FABRIC_LOGGING_SPEC=warning \
        CORE_PEER_LOCALMSPID=OrdererMSP \
        CORE_PEER_MSPCONFIGPATH="$NET_CRYPTO/$ORDERER_ORG_DIR_REL/users/Admin@example.com/msp" \
        CORE_PEER_TLS_ENABLED=true CORE_PEER_TLS_ROOTCERT_FILE="$(orderer_dir)/tls/ca.crt" \
        "$FABRIC_BIN/peer" "$@"
}

txl() { "$FABRIC_BIN/configtxlator" "$@"; }

orderer_add_org() {
    local dir=$1 out=$2 mspid work
    [[ $(host_get ROLE) == orderer ]] || die "orderer-add-org runs on the orderer host"
    check_foreign_export "$dir"
    check_export_public "$dir"
    mspid=$(export_get "$dir" MSPID)
    work=$FABRIC_HOME/updates/$mspid
    rm -rf "$work"
    mkdir -p "$work"
    run_logged "fetch the config of '$CHANNEL'" orderer_admin_cli channel fetch config "$work/config_block.pb" \
        -o "127.0.0.1:$(port_orderer)" --ordererTLSHostnameOverride orderer.example.com -c "$CHANNEL" \
        --tls --cafile "$(orderer_dir)/tls/ca.crt"
    txl proto_decode --input "$work/config_block.pb" --type common.Block --output "$work/config_block.json"
    jq .data.data[0].payload.data.config "$work/config_block.json" >"$work/config.json"
    if jq -e --arg m "$mspid" '.channel_group.groups.Application.groups[$m]' "$work/config.json" >/dev/null; then
        die "$mspid is already a member of channel '$CHANNEL'"
    fi
    # the new organisation's group, as configtxgen makes it from its public MSP folder
    mkdir -p "$work/cfg"
    {
        echo "Organizations:"
        configtx_org_entry "$dir"
    } >"$work/cfg/configtx.yaml"
    FABRIC_CFG_PATH="$work/cfg" "$FABRIC_BIN/configtxgen" -printOrg "$mspid" >"$work/org.json" 2>"$work/printOrg.log" || {
        show_log_tail "$work/printOrg.log"
        die "configtxgen -printOrg $mspid failed for the export folder $dir"
    }
    # printOrg leaves out anchor peers: add the new peer as its organisation's anchor
    jq --arg m "$mspid" --arg h "$(export_get "$dir" PEER_HOST)" --argjson p "$(export_get "$dir" PEER_PORT)" \
        --slurpfile org "$work/org.json" \
        '.channel_group.groups.Application.groups[$m] = ($org[0] | .values.AnchorPeers = {mod_policy: "Admins", value: {anchor_peers: [{host: $h, port: $p}]}, version: "0"})' \
        "$work/config.json" >"$work/modified.json"
    txl proto_encode --input "$work/config.json" --type common.Config --output "$work/config.pb"
    txl proto_encode --input "$work/modified.json" --type common.Config --output "$work/modified.pb"
    txl compute_update --channel_id "$CHANNEL" --original "$work/config.pb" --updated "$work/modified.pb" \
        --output "$work/update.pb"
    txl proto_decode --input "$work/update.pb" --type common.ConfigUpdate --output "$work/update.json"
    jq --arg c "$CHANNEL" '{payload: {header: {channel_header: {channel_id: $c, type: 2}}, data: {config_update: .}}}' \
        "$work/update.json" >"$work/envelope.json"
    txl proto_encode --input "$work/envelope.json" --type common.Envelope --output "$out"
    log "update adding $mspid to '$CHANNEL': $out. Channel policy /Channel/Application/Admins is MAJORITY Admins:" \
        "have a majority of the member sites sign it (site-sign-update), then orderer-submit-update"
}

orderer_submit_update() {
    local file=$1
    [[ $(host_get ROLE) == orderer ]] || die "orderer-submit-update runs on the orderer host"
    [[ -f $file ]] || die "no update file $file"
    local out rc=0
    out=$(orderer_admin_cli channel update -f "$file" -c "$CHANNEL" \
        -o "127.0.0.1:$(port_orderer)" --ordererTLSHostnameOverride orderer.example.com \
        --tls --cafile "$(orderer_dir)/tls/ca.crt" 2>&1) || rc=$?
    printf '\n===== %s: submit the config update %s (exit %s)\n%s\n' "$(date -u +%H:%M:%S)" "$file" "$rc" "$out" >>"$NET_LOGS/cli.log"
    if ((rc != 0)); then
        printf '%s\n' "$out" >&2
        if [[ $out == *"sub-policies were satisfied"* ]]; then
            die "the channel refused $file: not signed by enough member admins (see above); have more of them run site-sign-update on it, then submit again"
        fi
        die "submitting $file failed (exit $rc); CLI log: $NET_LOGS/cli.log"
    fi
    log "channel '$CHANNEL' updated with $file"
}

# ---------------------------------------------------------------- site

site_init() {
    local i=$1 site=$2 address=$3 out
    [[ $i =~ ^[1-9][0-9]*$ ]] || die "--org must be the organisation's number N (OrgNMSP), got '$i'"
    [[ $site =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "--site '$site' is not 1-64 of [A-Za-z0-9._-]"
    check_ip "$address"
    [[ ! -e $HOST_ENV ]] || die "$FABRIC_HOME is already a host folder ($HOST_ENV): use another --home or remove it"
    install_fabric
    mkdir -p "$NET_CONFIG" "$NET_LOGS" "$NET_PIDS"
    [[ ! -O $FABRIC_HOME ]] || chmod go-rwx "$FABRIC_HOME" # (a folder made for us by an administrator stays as it is)
    copy_node_config
    cat >"$NET_CONFIG/crypto-config.yaml" <<EOF
# Generated by scripts/fabric_host.sh: one site's organisation, made on its own host.
PeerOrgs:
  - Name: $(org_name "$i")
    Domain: $(org_domain "$i")
    EnableNodeOUs: true
    Template:
      Count: 1
      SANS: [localhost, 127.0.0.1, $address]
    Users:
      Count: 1   # User1: the site's swarm-network service
EOF
    run_logged "cryptogen generate ($(org_msp "$i"))" "$FABRIC_BIN/cryptogen" generate \
        --config="$NET_CONFIG/crypto-config.yaml" --output="$NET_CRYPTO"
    chmod -R go-rwx "$NET_CRYPTO"
    printf 'ROLE=site\nORG_INDEX=%s\nMSPID=%s\nSITE=%s\nADDRESS=%s\n' "$i" "$(org_msp "$i")" "$site" "$address" >"$HOST_ENV"
    out=$EXPORT_DIR/$(org_msp "$i")
    rm -rf "$out"
    mkdir -p "$out"
    export_public_msp "$(org_dir "$i")/msp" "$out/msp"
    cp "$(peer_tls_ca "$i")" "$out/peer-tls-ca.crt"
    printf 'MSPID=%s\nORG_INDEX=%s\nSITE=%s\nPEER_HOST=%s\nPEER_PORT=%s\nPEER_NAME=%s\n' \
        "$(org_msp "$i")" "$i" "$site" "$address" "$(port_peer "$i")" "$(peer_host "$i")" >"$out/org.env"
    check_export_public "$out"
    chmod -R a+rX "$out" # public: whoever receives it may read it
    log "$(org_msp "$i") keys in $NET_CRYPTO/ (stay on this host); give the orderer operator and the other sites $out/"
}

site_join() {
    local orderer=$1 block=$2 late=$3 i
    [[ $(host_get ROLE) == site ]] || die "site-join runs on a site host"
    ORDERER_EXPORT=$(realpath "$orderer")
    export_get "$ORDERER_EXPORT" ORDERER_ADDRESS >/dev/null
    [[ -f $ORDERER_EXPORT/tls-ca.crt ]] || die "no tls-ca.crt in the orderer's export folder $ORDERER_EXPORT"
    [[ -f $block ]] || die "no channel block $block: the orderer operator makes it with orderer-create-channel"
    i=$(host_get ORG_INDEX)
    NODE_HOST=$(host_get ADDRESS)
    install_fabric
    start_peer "$i"
    wait_healthy 60 "peer-org$i"
    # /healthz answers before the peer's gRPC listener is up: retried while refused
    retry 60 0.25 "peer channel join ($(org_name "$i"))" cli "$i" admin channel join -b "$block"
    # the chaincode server: the build of .tools/ if there is one, else built here
    mkdir -p "$(dirname "$CHAINCODE_BIN")" "$NET_CHAINCODE"
    if [[ -x $CHAINCODE_BUILD_OUT ]]; then cp "$CHAINCODE_BUILD_OUT" "$CHAINCODE_BIN"; else wait_chaincode_build; fi
    package_chaincode
    install_on_peer "$i"
    PROC_ENV=(CHAINCODE_SERVER_ADDRESS="127.0.0.1:$(port_ccaas "$i")" CHAINCODE_ID="$PACKAGE_ID")
    start_process "chaincode-org$i" "$CHAINCODE_BIN"
    wait_healthy 30 "chaincode-org$i"
    approve_for_org "$i"
    log "$(org_msp "$i") approved chaincode '$CC_NAME' $CC_VERSION sequence $CC_SEQUENCE"
    [[ $late == yes ]] || return 0 # a founding site: one of them commits (site-commit)
    # joining a running channel: the definition is committed already; wait for the peer to catch up
    retry 240 0.25 "chaincode '$CC_NAME' committed as seen by $(peer_host "$i")" \
        cli "$i" admin lifecycle chaincode querycommitted --channelID "$CHANNEL" --name "$CC_NAME"
    smoke_test_site "$i"
}

smoke_test_site() {
    local i=$1
    retry 120 0.25 "GetTask('$SMOKE_TASK') -> TASK_NOT_FOUND via $(peer_host "$i")" smoke_once "$i"
}

smoke_once() {
    local out
    out=$(cli "$1" user chaincode query -C "$CHANNEL" -n "$CC_NAME" -c "{\"Args\":[\"GetTask\",\"$SMOKE_TASK\"]}" 2>&1) || true
    echo "$out"
    [[ $out == *TASK_NOT_FOUND* ]]
}

site_commit() {
    local i dir peer_flags=()
    [[ $(host_get ROLE) == site ]] || die "site-commit runs on a site host"
    [[ -n $ORDERER_EXPORT ]] || die "site-commit needs --orderer DIR (the orderer's export folder)"
    i=$(host_get ORG_INDEX)
    peer_flags+=(--peerAddresses "127.0.0.1:$(port_peer "$i")" --tlsRootCertFiles "$(peer_tls_ca "$i")")
    for dir in "$@"; do
        check_foreign_export "$dir"
        peer_flags+=(--peerAddresses "$(export_get "$dir" PEER_HOST):$(export_get "$dir" PEER_PORT)"
            --tlsRootCertFiles "$dir/peer-tls-ca.crt")
    done
    retry 20 0.5 "chaincode commit" commit_once_site "$i" "${peer_flags[@]}"
    smoke_test_site "$i"
    log "chaincode '$CC_NAME' committed on '$CHANNEL'"
}

commit_once_site() {
    local i=$1
    shift
    # shellcheck disable=SC2046 # orderer_flags is several words on purpose
    cli "$i" admin lifecycle chaincode commit $(orderer_flags) --channelID "$CHANNEL" --name "$CC_NAME" \
        --version "$CC_VERSION" --sequence "$CC_SEQUENCE" "$@" && return 0
    cli "$i" admin lifecycle chaincode querycommitted --channelID "$CHANNEL" --name "$CC_NAME" 2>/dev/null |
        grep -q "Sequence: $CC_SEQUENCE,"
}

site_sign_update() {
    local file=$1 i
    [[ $(host_get ROLE) == site ]] || die "site-sign-update runs on a site host"
    [[ -f $file ]] || die "no update file $file"
    i=$(host_get ORG_INDEX)
    run_logged "sign $file as $(org_msp "$i") admin" cli "$i" admin channel signconfigtx -f "$file"
    log "signed $file as Admin@$(org_domain "$i"); pass it on"
}

site_profile() {
    local i site dir tmp=$NET_PROFILE.tmp own_mspid
    [[ $(host_get ROLE) == site ]] || die "site-profile runs on a site host"
    i=$(host_get ORG_INDEX)
    site=$(host_get SITE)
    own_mspid=$(host_get MSPID)
    local others='{}' mspid osite
    for dir in "$@"; do
        check_foreign_export "$dir"
        mspid=$(export_get "$dir" MSPID)
        osite=$(export_get "$dir" SITE)
        [[ $mspid != "$own_mspid" ]] || continue
        [[ $osite != "$site" ]] || die "$dir names site '$osite' ($mspid), the name of this host's own site ($own_mspid)"
        others=$(jq --arg s "$osite" --arg m "$mspid" --arg ca "$(realpath "$(export_msp_ca "$dir")")" \
            '.[$s] = {org: ($m | sub("MSP$"; "")), mspid: $m, msp_ca_cert: $ca}' <<<"$others")
    done
    jq -n --arg ch "$CHANNEL" --arg cc "$CC_NAME" --arg site "$site" --arg org "$(org_name "$i")" \
        --arg mspid "$own_mspid" --arg ca "$(org_dir "$i")/msp/cacerts/ca.$(org_domain "$i")-cert.pem" \
        --arg pname "$(peer_host "$i")" --arg gw "127.0.0.1:$(port_peer "$i")" --arg ptls "$(peer_tls_ca "$i")" \
        --arg ops "127.0.0.1:$(port_peer_ops "$i")" --arg uname "User1@$(org_domain "$i")" \
        --arg cert "$(user_msp "$i")/signcerts/User1@$(org_domain "$i")-cert.pem" \
        --arg key "$(user_msp "$i")/keystore/priv_sk" --arg ver "$(grep '^FABRIC_LABEL=' "$FABRIC_STAMP" | cut -d= -f2)" \
        --argjson others "$others" \
        '{format: "swarm-fabric-profile/1", fabric_version: $ver, channel: $ch, chaincode: $cc,
          endorsement_policy: "/Channel/Application/Endorsement (MAJORITY Endorsement)",
          sites: ($others + {($site): {org: $org, mspid: $mspid, msp_ca_cert: $ca,
            peer: {name: $pname, gateway_address: $gw, tls_ca_cert: $ptls, ssl_target_name_override: $pname,
                   operations_address: $ops},
            client: {name: $uname, cert: $cert, key: $key}}})}' >"$tmp"
    mv "$tmp" "$NET_PROFILE"
    log "profile $NET_PROFILE: $site ($own_mspid) through its own peer; trusts the MSP CAs of $(jq -r '.sites | keys | join(", ")' "$NET_PROFILE")"
}

# ---------------------------------------------------------------- restart

# Starts a stopped host's processes again on its ledgers (after stop, or a reboot).
host_start() {
    local role name i
    role=$(host_get ROLE)
    for name in $(recorded_names); do
        pid_alive "$name" && die "$name is running already (pid $(pid_of "$name")): stop first"
    done
    install_fabric
    NODE_HOST=$(host_get ADDRESS)
    if [[ $role == orderer ]]; then
        [[ -f $FABRIC_HOME/$CHANNEL.block ]] || die "this orderer host never created channel '$CHANNEL' (orderer-create-channel)"
        start_orderer
        wait_healthy 60 orderer
        wait_raft_leader_on_resume
        log "orderer started again on its ledger"
        return 0
    fi
    i=$(host_get ORG_INDEX)
    [[ -d $NET_DATA/peer-org$i ]] || die "this site host never joined the channel (site-join)"
    start_peer "$i"
    wait_healthy 60 "peer-org$i"
    package_chaincode
    PROC_ENV=(CHAINCODE_SERVER_ADDRESS="127.0.0.1:$(port_ccaas "$i")" CHAINCODE_ID="$PACKAGE_ID")
    start_process "chaincode-org$i" "$CHAINCODE_BIN"
    wait_healthy 30 "chaincode-org$i"
    smoke_test_site "$i"
    log "peer and chaincode server of $(org_msp "$i") started again on their ledger"
}

# ---------------------------------------------------------------- main

host_main() {
    local cmd=${1:-}
    (($#)) && shift
    local address="" org="" site="" out="" update="" block="" late=no dirs=()
    while (($#)); do
        case $1 in
        --home) shift ;;
        --address) address=${2:?--address needs an IP}; shift ;;
        --org)
            [[ $# -ge 2 ]] || die "--org needs a value"
            org=$2
            dirs+=("$2")
            shift
            ;;
        --site) site=${2:?--site needs a name}; shift ;;
        --out) out=${2:?--out needs a file}; shift ;;
        --update) update=${2:?--update needs a file}; shift ;;
        --block) block=${2:?--block needs a file}; shift ;;
        --orderer) ORDERER_EXPORT=$(realpath -m "${2:?--orderer needs a folder}"); shift ;;
        --late) late=yes ;;
        -h | --help) usage; return 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
        shift
    done
    [[ -n ${FABRIC_HOME:-} && $FABRIC_HOME != "$REPO_ROOT/.fabric" ]] || [[ $cmd == "" || $cmd == help ]] ||
        die "give this host's folder with --home DIR"
    local v
    for v in $(compgen -e); do
        [[ $v == CORE_* || $v == ORDERER_* ]] && unset "$v"
    done
    case $cmd in
    orderer-init) orderer_init "${address:?orderer-init needs --address IP}" ;;
    orderer-create-channel) orderer_create_channel "${dirs[@]}" ;;
    orderer-add-org) orderer_add_org "${org:?orderer-add-org needs --org DIR}" "${out:?orderer-add-org needs --out FILE}" ;;
    orderer-submit-update) orderer_submit_update "${update:?needs --update FILE}" ;;
    site-init) site_init "${org:?site-init needs --org N}" "${site:?site-init needs --site NAME}" "${address:?site-init needs --address IP}" ;;
    site-join) site_join "${ORDERER_EXPORT:?site-join needs --orderer DIR}" "${block:?site-join needs --block FILE}" "$late" ;;
    site-commit) site_commit "${dirs[@]}" ;;
    site-sign-update) site_sign_update "${update:?needs --update FILE}" ;;
    site-profile) site_profile "${dirs[@]+"${dirs[@]}"}" ;;
    stop) stop_everything_recorded ;;
    start) host_start ;;
    "" | help | -h | --help) usage ;;
    *) usage >&2; die "unknown command: $cmd" ;;
    esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    host_main "$@"
fi
