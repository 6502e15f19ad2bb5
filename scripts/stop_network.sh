#!/usr/bin/env bash
# Stops the Fabric test network started by scripts/start_network.sh: every
# process whose PID it recorded in .fabric/pids/ (chaincode servers, peers,
# orderer), and nothing else. --clean also removes .fabric/.
set -euo pipefail

# shellcheck source=scripts/fabric_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/fabric_lib.sh"

usage() {
    cat <<EOF
Usage: scripts/stop_network.sh [--clean] [--help]

Stops the processes recorded in ${NET_PIDS#"$REPO_ROOT"/}/ (SIGTERM, then SIGKILL after 10 s).
A recorded PID that now belongs to another program is left alone.
The ledgers stay, so scripts/start_network.sh starts the same network again.

  --clean   also remove ${FABRIC_HOME#"$REPO_ROOT"/}/ (crypto, ledgers, logs): the next start makes a new network
  --help    this message
EOF
}

main() {
    local clean=false
    while (($#)); do
        case $1 in
        --clean) clean=true ;;
        -h | --help)
            usage
            return 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
        esac
        shift
    done

    local names name running=() stale=()
    mapfile -t names < <(recorded_names)
    if ((${#names[@]} == 0)); then
        log "no recorded processes in ${NET_PIDS#"$REPO_ROOT"/}/: nothing to stop"
    else
        for name in "${names[@]}"; do
            if pid_alive "$name"; then running+=("$name"); else stale+=("$name"); fi
        done
        for name in "${stale[@]+"${stale[@]}"}"; do
            log "$name: not running (stale PID file removed)"
        done
        stop_recorded "${names[@]}"
        log "stopped ${#running[@]} process(es)"
    fi

    if $clean; then
        if [[ -e $FABRIC_HOME ]]; then
            rm -rf "$FABRIC_HOME"
            log "removed ${FABRIC_HOME#"$REPO_ROOT"/}/"
        fi
    elif [[ -d $FABRIC_HOME ]]; then
        log "ledgers and crypto kept in ${FABRIC_HOME#"$REPO_ROOT"/}/ (scripts/start_network.sh resumes; --clean removes them)"
    fi
}

main "$@"
