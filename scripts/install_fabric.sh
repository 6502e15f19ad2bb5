#!/usr/bin/env bash
# Builds the Hyperledger Fabric commands (peer, orderer, configtxgen,
# cryptogen, osnadmin, discover) from source through the Go module proxy into
# .tools/fabric/bin, once. The version is pinned by fabric-network/tools/go.mod
# and every dependency's checksum by its go.sum; a stamp file
# (.tools/fabric/VERSION) records what was built, and a later run with the same
# pin does nothing. start_network.sh calls this; it can also be run alone.
set -euo pipefail

# shellcheck source=scripts/fabric_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/fabric_lib.sh"

usage() {
    cat <<EOF
Usage: scripts/install_fabric.sh [--force] [--help]

Builds ${FABRIC_COMMANDS[*]} from the Fabric version pinned in
fabric-network/tools/go.mod into ${FABRIC_BIN#"$REPO_ROOT"/}, and copies Fabric's
sample core.yaml / orderer.yaml / configtx.yaml into ${FABRIC_SAMPLECONFIG#"$REPO_ROOT"/}.
Needs Go (on PATH or at /usr/local/go/bin/go) and the Go module proxy; no Docker.

  --force   rebuild even when the stamp says the pinned version is installed
  --help    this message
EOF
}

# True when the stamp names the pinned version and every command and config file is there.
fabric_installed() {
    local version=$1 cmd
    [[ -f $FABRIC_STAMP ]] || return 1
    grep -qx "FABRIC_MODULE_VERSION=$version" "$FABRIC_STAMP" || return 1
    for cmd in "${FABRIC_COMMANDS[@]}"; do
        [[ -x $FABRIC_BIN/$cmd ]] || return 1
    done
    [[ -f $FABRIC_SAMPLECONFIG/core.yaml && -f $FABRIC_SAMPLECONFIG/orderer.yaml ]]
}

# install_fabric [--force]: the whole step; prints what it did.
install_fabric() {
    local force=${1:-} go version
    go=$(find_go) || die "Go is needed to build Fabric: put 'go' on PATH (Go >= 1.26; /usr/local/go/bin/go is also looked at)"
    version=$(pinned_fabric_version)
    [[ -n $version ]] || die "no github.com/hyperledger/fabric requirement in $FABRIC_TOOLS_MODULE/go.mod"

    if [[ $force != --force ]] && fabric_installed "$version"; then
        log "Fabric commands present: $(grep '^FABRIC_LABEL=' "$FABRIC_STAMP" | cut -d= -f2) ($version) in ${FABRIC_BIN#"$REPO_ROOT"/}"
        return 0
    fi

    log "building Fabric $version with $("$go" env GOVERSION) (first time only: about 1.5-3 min on 2 cores)"
    local t0 tmp pkgs=() cmd moddir fabric_ver short label build_log
    t0=$(now_ms)
    mkdir -p "$FABRIC_TOOLS_DIR"
    tmp=$(mktemp -d "$FABRIC_TOOLS_DIR/build.XXXXXX")
    build_log=$FABRIC_TOOLS_DIR/build.log
    for cmd in "${FABRIC_COMMANDS[@]}"; do
        pkgs+=("github.com/hyperledger/fabric/cmd/$cmd")
    done

    # The module's source (with sampleconfig/ and the Makefile's version).
    if ! moddir=$(cd "$FABRIC_TOOLS_MODULE" && GOFLAGS=-mod=readonly "$go" mod download -json github.com/hyperledger/fabric 2>"$build_log" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || [[ -z $moddir ]]; then
        show_log_tail "$build_log"
        rm -rf "$tmp"
        die "the Go module proxy did not give github.com/hyperledger/fabric@$version (log: $build_log)"
    fi
    fabric_ver=$(awk '$1 == "FABRIC_VER" { print $3; exit }' "$moddir/Makefile" 2>/dev/null || true)
    short=${version##*-}
    if [[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
        label=${version#v}
    else
        label=${fabric_ver:-unknown}-snapshot-$short
    fi

    if ! (cd "$FABRIC_TOOLS_MODULE" && GOFLAGS=-mod=readonly "$go" build -trimpath \
        -ldflags "-X github.com/hyperledger/fabric/common/metadata.Version=$label -X github.com/hyperledger/fabric/common/metadata.CommitSHA=$short" \
        -o "$tmp/" "${pkgs[@]}") >>"$build_log" 2>&1; then
        show_log_tail "$build_log"
        rm -rf "$tmp"
        die "building the Fabric commands failed (log: $build_log)"
    fi

    mkdir -p "$FABRIC_BIN" "$FABRIC_SAMPLECONFIG"
    for cmd in "${FABRIC_COMMANDS[@]}"; do
        mv -f "$tmp/$cmd" "$FABRIC_BIN/$cmd"
    done
    rm -rf "$tmp"
    cp "$moddir"/sampleconfig/{core.yaml,orderer.yaml,configtx.yaml} "$FABRIC_SAMPLECONFIG/"
    chmod u+w "$FABRIC_SAMPLECONFIG"/*.yaml

    local secs
    secs=$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f", ms / 1000 }')
    cat >"$FABRIC_STAMP" <<EOF
FABRIC_MODULE_VERSION=$version
FABRIC_LABEL=$label
GO_VERSION=$("$go" env GOVERSION)
BUILT_SECONDS=$secs
BUILT_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
    log "built Fabric $label ($version) in ${secs}s: $(du -sh "$FABRIC_BIN" | cut -f1) in ${FABRIC_BIN#"$REPO_ROOT"/}"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    case ${1:-} in
    -h | --help) usage ;;
    --force | "") install_fabric "${1:-}" ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
fi
