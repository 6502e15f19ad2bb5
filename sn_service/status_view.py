"""The answer to "why is it stuck?": a task's state as the ledger has it, and rendered for a terminal.

``snapshot`` reads the task, its current round and its recent rounds from a
ledger (for ``swarm-status`` and the HTTP status and dashboard routes alike);
``render_task`` is pure: it turns them into lines of text.
"""

from __future__ import annotations

from sn_service.contract import closable, leads_last
from sn_service.ledger.base import Ledger

#: How many finished rounds ``swarm-status`` lists.
RECENT = 5


def snapshot(ledger: Ledger, task: str, recent: int = RECENT) -> tuple[dict, dict, list[dict]]:
    """The task, its current round and its last few finished rounds, from a ledger."""
    rec = ledger.get_task(task)
    current = ledger.get_round(task, rec["current_round"])
    first = max(0, rec["current_round"] - recent)
    rounds = [ledger.get_round(task, r) for r in range(first, rec["current_round"])]
    return rec, current, rounds


def _age(now_ms: int, then_ms: int | None) -> str:
    if then_ms is None:
        return "-"
    s = max(0, now_ms - then_ms) / 1000
    return f"{s:.1f} s ago" if s < 120 else f"{s / 60:.1f} min ago"


def render_privacy(task: dict, privacy: dict[str, dict[str, float]]) -> str | None:
    """One line: the epsilon each site has spent (its latest ``dp_*`` metrics), or None if no site uses DP."""
    if not privacy:
        return None
    parts = []
    for node in sorted(task["nodes"]):
        dp = privacy.get(node)
        if dp is None or "dp_epsilon" not in dp:
            parts.append(f"{node} not reported")
            continue
        syncs = f", {int(dp['dp_syncs'])} noisy syncs" if "dp_syncs" in dp else ""
        delta = f" at delta {dp['dp_delta']:g}" if "dp_delta" in dp else ""
        parts.append(f"{node} {dp['dp_epsilon']:.3g}{delta}{syncs}")
    return "  differential privacy, epsilon spent: " + "; ".join(parts)


def render_task(
    task: dict, current: dict, recent: list[dict], now_ms: int, privacy: dict[str, dict[str, float]] | None = None
) -> str:
    """Several lines: the sites, who submitted and who is awaited, the leader, recent rounds.

    ``privacy``: each site's latest differential-privacy metrics (``dp_epsilon``, ...), when known.
    """
    spec = task["spec"]
    r = current
    lines = [
        f"task {task['task']} ({task['status']}) - round {r['round']} {r['status']} since "
        f"{_age(now_ms, r['opened_ms'])} - min_peers {spec['min_peers']}, merge {spec['merge_method']}, "
        f"quorum wait {spec['quorum_wait_ms'] / 1000:g} s, leader timeout {spec['leader_timeout_ms'] / 1000:g} s",
        f"  {'site':14s} {'status':9s} {'last seen':13s} round {r['round']}",
    ]
    # A secure round's submission is a round key, not a model's hash; the masked model comes after Close.
    # Round 0 (the leader's initial weights) is not masked: a round after the first merge is. An open round's
    # previous merged hash is set only at Close, so an open round looks at the task's latest merge.
    first_merge_done = task["latest_merged"] is not None if r["status"] == "open" else r["previous_merged_sha256"]
    secure = bool(spec.get("secure_aggregation")) and bool(first_merge_done)
    masked = r.get("masked", {})
    for node, info in sorted(task["nodes"].items()):
        sub = r["submissions"].get(node)
        if sub is not None and secure:
            what = f"submitted round key {sub['sha256'][:12]} (weight {sub['weight']}, {_age(now_ms, sub['ts_ms'])})"
            if node in masked:
                what += f", masked model {masked[node]['sha256'][:12]} ({_age(now_ms, masked[node]['ts_ms'])})"
            elif r["status"] == "closed" and node in r["contributors"]:
                what += ", masked model not in yet"
        elif sub is not None:
            what = f"submitted {sub['sha256'][:12]} (weight {sub['weight']}, {_age(now_ms, sub['ts_ms'])})"
        elif info["status"] == "left":
            what = "left the task"
        elif r["status"] == "open" and task["status"] != "done":
            waiting = "" if r["first_submit_ms"] is None else f" for {_age(now_ms, r['first_submit_ms'])[:-4]}"
            advert = r.get("advertised", {}).get(node)  # only secure tasks advertise
            if advert is not None:  # alive and training: its key is in, its model not yet
                what = (
                    f"training - round key {advert['key'][:12]} advertised {_age(now_ms, advert['ts_ms'])}, "
                    f"the round waits for its model{waiting}"
                )
            else:
                what = f"MISSING - the round waits for it{waiting}"
        else:
            what = "not in this round"
        lines.append(f"  {node:14s} {info['status']:9s} {_age(now_ms, info['last_seen_ms']):13s} {what}")
    dp_line = render_privacy(task, privacy or {})
    if dp_line:
        lines.append(dp_line)
    if task["status"] == "done":
        lines.append("  task done: no further rounds; the swarm's model is the latest merged one below")
    elif r["status"] == "open":
        ok, why = closable(task, r, now_ms)
        lines.append(f"  round {r['round']}: {'can close now' if ok else 'cannot close: ' + why}")
    elif r["status"] == "closed":
        leader = r["contributors"][r["leader_index"]]
        left = (r["leader_deadline_ms"] - now_ms) / 1000
        due = "abandoned" if leads_last(r) else "failover"
        deadline = f"deadline in {left:.1f} s" if left >= 0 else f"deadline passed {-left:.1f} s ago: {due} due"
        doing = f"merging {len(r['contributors'])} models"
        if secure:
            sealed = r.get("sealed")
            in_yet = sum(1 for n in r["contributors"] if n in masked)
            doing = (
                f"unmasking the sum of {len(sealed['survivors'])} sealed by {sealed['by']}"
                + (f" (dropped {', '.join(sealed['dropped'])})" if sealed["dropped"] else "")
                if sealed
                else f"collecting masked models, {in_yet} of {len(r['contributors'])} in"
            )
        lines.append(
            f"  round {r['round']}: closed, leader {leader} {doing}; {deadline}"
            + (f"; {r['failovers']} failovers" if r["failovers"] else "")
        )
    latest = task["latest_merged"]
    lines.append(
        "  latest merged: "
        + (f"round {latest['round']} by {latest['node']} {latest['sha256'][:12]}" if latest else "none yet")
    )
    if recent:
        lines.append("  recent rounds:")
        for rnd in recent:
            if rnd["status"] == "abandoned":
                lines.append(
                    f"    {rnd['round']:5d}  ABANDONED after {rnd['failovers']} failovers: none of its "
                    f"{len(rnd['contributors'])} contributors ({', '.join(rnd['contributors'])}) could merge it"
                )
                continue
            took = (rnd["published_ms"] - rnd["opened_ms"]) / 1000 if rnd["published_ms"] else float("nan")
            leader = rnd["published_by"] or "-"
            lines.append(
                f"    {rnd['round']:5d}  leader {leader:12s} {len(rnd['contributors'])} contributors"
                f"  {took:7.2f} s  {(rnd['merged_sha256'] or '')[:12]}"
                + (f"  ({rnd['failovers']} failovers)" if rnd["failovers"] else "")
            )
    return "\n".join(lines)
