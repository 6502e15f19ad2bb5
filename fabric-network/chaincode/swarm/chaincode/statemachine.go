package chaincode

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// The round protocol as a pure state machine: every function below decides
// from the state it reads through the view, its arguments (as the strings
// Fabric delivers), the caller identity and the timestamp. No clock, no
// randomness, no map iteration without sorting. Each function mirrors its
// namesake in sn_service/contract.py check for check, in the same order,
// because the conformance vectors pin which error wins.

// leaderOrder orders a round's contributors: the first is the leader.
//
// The order is sha256(previous merged hash | round | node) as hex, ascending,
// ties by node name; previous is "" before the first merge. It rotates from
// round to round and nobody can choose to lead.
func leaderOrder(previousMerged string, round int64, nodes []string) []string {
	rank := make(map[string]string, len(nodes))
	for _, node := range nodes {
		digest := sha256.Sum256([]byte(fmt.Sprintf("%s|%d|%s", previousMerged, round, node)))
		rank[node] = hex.EncodeToString(digest[:])
	}
	ordered := append([]string{}, nodes...)
	sort.Slice(ordered, func(i, j int) bool {
		a, b := ordered[i], ordered[j]
		if rank[a] != rank[b] {
			return rank[a] < rank[b]
		}
		return a < b
	})
	return ordered
}

// sortedNodes returns a task's node names in sorted order.
func sortedNodes(rec *Task) []string {
	names := make([]string, 0, len(rec.Nodes))
	for name := range rec.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func loadTask(v *stateView, task string) (*Task, error) {
	if err := checkName(task, "task"); err != nil {
		return nil, err
	}
	rec, err := v.task(task)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, refuse(CodeTaskNotFound, "task '%s' does not exist; InitTask it first", task)
	}
	return rec, nil
}

func loadRound(v *stateView, task string, round int64) (*Round, error) {
	rnd, err := v.round(task, round)
	if err != nil {
		return nil, err
	}
	if rnd == nil {
		return nil, refuse(CodeRoundNotFound, "task '%s' has no round %d", task, round)
	}
	return rnd, nil
}

// nodeOfCaller finds the node bound to the caller (one identity, one node).
func nodeOfCaller(rec *Task, caller string) (string, error) {
	for _, node := range sortedNodes(rec) {
		if rec.Nodes[node].Identity == caller {
			return node, nil
		}
	}
	return "", refuse(CodeNodeNotRegistered,
		"identity %q is not registered in task '%s'; Register first", caller, rec.Task)
}

// checkNodeCaller checks that node is registered and bound to the caller.
func checkNodeCaller(rec *Task, node, caller string) (*NodeInfo, error) {
	if err := checkName(node, "node"); err != nil {
		return nil, err
	}
	info, ok := rec.Nodes[node]
	if !ok {
		return nil, refuse(CodeNodeNotRegistered, "node '%s' is not registered in task '%s'", node, rec.Task)
	}
	if info.Identity != caller {
		return nil, refuse(CodeIdentityMismatch,
			"node '%s' is bound to another identity; %q may not act for it", node, caller)
	}
	return info, nil
}

func requireOpenTask(rec *Task) error {
	if rec.Status == StatusDone {
		return refuse(CodeTaskDone, "task '%s' is over", rec.Task)
	}
	return nil
}

// touch records that node acted at ts.
func touch(rec *Task, node string, ts int64) {
	info := rec.Nodes[node]
	info.LastSeenMs = max(info.LastSeenMs, ts)
}

// expectedNodes are the nodes a round waits for: those training and those
// standing in with a final model.
func expectedNodes(rec *Task) []string {
	var expected []string
	for _, node := range sortedNodes(rec) {
		if status := rec.Nodes[node].Status; status == NodeActive || status == NodeFinished {
			expected = append(expected, node)
		}
	}
	return expected
}

// maybeDone ends the task once no node is still training.
func maybeDone(rec *Task) {
	for _, info := range rec.Nodes {
		if info.Status == NodeActive {
			return
		}
	}
	rec.Status = StatusDone
}

// closable says whether the round may close at ts, and if not, why.
func closable(rec *Task, rnd *Round, ts int64) (bool, string) {
	spec := rec.Spec
	if rnd.Status != StatusOpen {
		return false, fmt.Sprintf("round %d is %s, not open", rnd.Round, rnd.Status)
	}
	var missing []string
	for _, node := range expectedNodes(rec) {
		if _, ok := rnd.Submissions[node]; !ok {
			missing = append(missing, node)
		}
	}
	submitted := int64(len(rnd.Submissions))
	if submitted < spec.MinPeers {
		waiting := strings.Join(missing, ", ")
		if waiting == "" {
			waiting = "more nodes to join"
		}
		return false, fmt.Sprintf("%d of min_peers %d submitted; waiting for %s", submitted, spec.MinPeers, waiting)
	}
	if len(missing) == 0 {
		return true, "every expected node submitted"
	}
	first := *rnd.FirstSubmitMs // set: at least min_peers >= 1 submitted
	if ts >= first+spec.QuorumWaitMs {
		return true, "quorum wait passed without " + strings.Join(missing, ", ")
	}
	end := first + spec.QuorumWaitMs
	return false, fmt.Sprintf("waiting for %s until the quorum wait ends in %.1f s (at %d ms)",
		strings.Join(missing, ", "), float64(end-ts)/1000, end)
}

// initTask creates a task with its spec; the same spec again is a no-op.
func initTask(v *stateView, caller string, ts int64, task, specJSON string) (any, error) {
	if err := checkName(task, "task"); err != nil {
		return nil, err
	}
	spec, err := parseSpec(specJSON)
	if err != nil {
		return nil, err
	}
	existing, err := v.task(task)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		if existing.Spec != spec {
			return nil, refuse(CodeSpecMismatch, "task '%s' exists with another spec (%s)",
				task, strings.Join(specDifferences(existing.Spec, spec), ", "))
		}
		return existing, nil
	}
	rec := &Task{
		Task:         task,
		Spec:         spec,
		Status:       StatusOpen,
		CreatedMs:    ts,
		CreatedBy:    caller,
		CurrentRound: 0,
		LatestMerged: nil,
		Nodes:        map[string]*NodeInfo{},
	}
	v.putTask(rec)
	v.putRound(newRound(task, 0, ts))
	return rec, nil
}

// specDifferences names the spec fields that differ, with both values (layout by name only).
func specDifferences(have, given Spec) []string {
	var differ []string
	field := func(name string, a, b any) {
		if a != b {
			if name == "layout" {
				differ = append(differ, "layout")
			} else {
				differ = append(differ, fmt.Sprintf("%s: task has %v, given %v", name, a, b))
			}
		}
	}
	field("fingerprint", have.Fingerprint, given.Fingerprint)
	field("layout", have.Layout, given.Layout)
	field("min_peers", have.MinPeers, given.MinPeers)
	field("merge_method", have.MergeMethod, given.MergeMethod)
	field("quorum_wait_ms", have.QuorumWaitMs, given.QuorumWaitMs)
	field("leader_timeout_ms", have.LeaderTimeoutMs, given.LeaderTimeoutMs)
	field("max_rounds", have.MaxRounds, given.MaxRounds)
	field("secure_aggregation", have.SecureAggregation, given.SecureAggregation)
	return differ
}

// register adds a node bound to the caller's identity, or re-activates it.
func register(v *stateView, caller string, ts int64, task, node, endpoint, fingerprint string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	if err := checkName(node, "node"); err != nil {
		return nil, err
	}
	if err := checkEndpoint(endpoint); err != nil {
		return nil, err
	}
	if err := checkSha256(fingerprint, "fingerprint"); err != nil {
		return nil, err
	}
	if err := requireOpenTask(rec); err != nil {
		return nil, err
	}
	if fingerprint != rec.Spec.Fingerprint {
		return nil, refuse(CodeFingerprintMismatch,
			"node '%s' has model fingerprint %s..., the task's model is %s...: "+
				"same layers, shapes and dtypes are required", node, fingerprint[:12], rec.Spec.Fingerprint[:12])
	}
	for _, other := range sortedNodes(rec) {
		if other != node && rec.Nodes[other].Identity == caller {
			return nil, refuse(CodeIdentityInUse, "identity %q is already registered as node '%s'", caller, other)
		}
	}
	info, known := rec.Nodes[node]
	if !known {
		rec.Nodes[node] = &NodeInfo{
			Identity:   caller,
			Endpoint:   endpoint,
			Status:     NodeActive,
			JoinedMs:   ts,
			LastSeenMs: ts,
		}
	} else {
		if info.Identity != caller {
			return nil, refuse(CodeIdentityMismatch, "node '%s' is bound to another identity than %q", node, caller)
		}
		info.Endpoint = endpoint
		info.Status = NodeActive
		touch(rec, node, ts)
	}
	v.putTask(rec)
	return rec, nil
}

// submit records a node's weights hash for the open round; one per node per round.
func submit(v *stateView, caller string, ts int64, task, roundArg, node, sha, weightArg string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	if err := checkSha256(sha, "sha256"); err != nil {
		return nil, err
	}
	weight, err := parseInt(weightArg, "weight", 0)
	if err != nil {
		return nil, err
	}
	if err := requireOpenTask(rec); err != nil {
		return nil, err
	}
	info, err := checkNodeCaller(rec, node, caller)
	if err != nil {
		return nil, err
	}
	rnd, err := roundOfActiveNode(v, rec, round, node, info)
	if err != nil {
		return nil, err
	}
	if previous, ok := rnd.Submissions[node]; ok {
		if previous.Sha256 == sha && previous.Weight == weight {
			return rnd, nil // a replay: idempotent, nothing changes
		}
		return nil, refuse(CodeDuplicateSubmission, "node '%s' already submitted %s... to round %d",
			node, previous.Sha256[:min(12, len(previous.Sha256))], round)
	}
	if rnd.Status == StatusAbandoned {
		return nil, refuse(CodeRoundClosed,
			"round %d was abandoned (no contributor could merge it); submit to round %d", round, rec.CurrentRound)
	}
	if rnd.Status != StatusOpen {
		return nil, refuse(CodeRoundClosed, "round %d is %s; take its merged model instead", round, rnd.Status)
	}
	rnd.Submissions[node] = &Submission{Sha256: sha, Weight: weight, TsMs: ts}
	if rnd.FirstSubmitMs == nil {
		rnd.FirstSubmitMs = &ts
	}
	touch(rec, node, ts)
	v.putRound(rnd)
	v.putTask(rec)
	return rnd, nil
}

// roundOfActiveNode is the round for node (its info) to submit to: it refuses a node that left and a
// round not open yet.
func roundOfActiveNode(v *stateView, rec *Task, round int64, node string, info *NodeInfo) (*Round, error) {
	if info.Status == NodeLeft {
		return nil, refuse(CodeNodeNotActive, "node '%s' has left task '%s'; Register again", node, rec.Task)
	}
	if round > rec.CurrentRound {
		return nil, refuse(CodeWrongRound, "round %d is not open yet; the open round is %d", round, rec.CurrentRound)
	}
	return loadRound(v, rec.Task, round)
}

// closeRound freezes a round's contributors and elects its leader.
func closeRound(v *stateView, caller string, ts int64, task, roundArg string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	if err := requireOpenTask(rec); err != nil { // a task over has its final model: no round closes any more
		return nil, err
	}
	node, err := nodeOfCaller(rec, caller)
	if err != nil {
		return nil, err
	}
	rnd, err := loadRound(v, task, round)
	if err != nil {
		return nil, err
	}
	if rnd.Status != StatusOpen {
		return nil, refuse(CodeRoundNotOpen, "round %d is %s, not open", round, rnd.Status)
	}
	if ok, why := closable(rec, rnd, ts); !ok {
		return nil, refuse(CodeNotClosable, "round %d cannot close yet: %s", round, why)
	}
	var previous *string
	prev := ""
	if rec.LatestMerged != nil {
		prev = rec.LatestMerged.Sha256
		previous = &prev
	}
	submitted := make([]string, 0, len(rnd.Submissions))
	for name := range rnd.Submissions {
		submitted = append(submitted, name)
	}
	deadline := ts + rec.Spec.LeaderTimeoutMs
	rnd.Status = StatusClosed
	rnd.ClosedMs = &ts
	rnd.ClosedBy = &node
	rnd.PreviousMergedSha256 = previous
	rnd.Contributors = leaderOrder(prev, round, submitted)
	rnd.LeaderIndex = 0
	rnd.LeaderDeadlineMs = &deadline
	touch(rec, node, ts)
	v.putRound(rnd)
	v.putTask(rec)
	return rnd, nil
}

// currentLeader is the contributor leading a closed round.
func currentLeader(rnd *Round) (string, error) {
	if rnd.LeaderIndex < 0 || rnd.LeaderIndex >= int64(len(rnd.Contributors)) {
		return "", fmt.Errorf("world state %s is corrupt: leader_index %d of %d contributors",
			RoundKey(rnd.Task, rnd.Round), rnd.LeaderIndex, len(rnd.Contributors))
	}
	return rnd.Contributors[rnd.LeaderIndex], nil
}

// publish records the leader's merged model hash; the next round opens.
func publish(v *stateView, caller string, ts int64, task, roundArg, node, mergedSha string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	if err := checkSha256(mergedSha, "merged_sha256"); err != nil {
		return nil, err
	}
	if err := requireOpenTask(rec); err != nil { // the final model of a task over does not change
		return nil, err
	}
	if _, err := checkNodeCaller(rec, node, caller); err != nil {
		return nil, err
	}
	rnd, err := loadRound(v, task, round)
	if err != nil {
		return nil, err
	}
	if rnd.Status != StatusClosed {
		return nil, refuse(CodeRoundNotClosed, "round %d is %s, not closed", round, rnd.Status)
	}
	leader, err := currentLeader(rnd)
	if err != nil {
		return nil, err
	}
	if node != leader {
		return nil, refuse(CodeNotLeader, "node '%s' does not lead round %d; '%s' does", node, round, leader)
	}
	if rec.Spec.SecureAggregation && rnd.PreviousMergedSha256 != nil && (rnd.Sealed == nil || rnd.Sealed.By != node) {
		return nil, refuse(CodeNotSealed,
			"round %d is a secure aggregation: '%s' must Seal the survivors it unmasks first", round, node)
	}
	rnd.Status = StatusDone
	rnd.MergedSha256 = &mergedSha
	rnd.PublishedMs = &ts
	rnd.PublishedBy = &node
	rec.LatestMerged = &MergedModel{Round: round, Sha256: mergedSha, Node: node}
	rec.CurrentRound = round + 1
	if rec.Spec.MaxRounds > 0 && mergedRounds(rec) >= rec.Spec.MaxRounds {
		rec.Status = StatusDone
	}
	touch(rec, node, ts)
	v.putRound(rnd)
	v.putRound(newRound(task, round+1, ts))
	v.putTask(rec)
	return rnd, nil
}

// mergedRounds is how many of the task's rounds were merged: the rounds before the open one, but the abandoned.
func mergedRounds(rec *Task) int64 {
	return rec.CurrentRound - rec.AbandonedRounds
}

// failover hands a closed round to the next contributor after the leader's deadline; after the last
// contributor in leader order, it abandons the round: it merges nothing, and the next round opens.
func failover(v *stateView, caller string, ts int64, task, roundArg string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	if err := requireOpenTask(rec); err != nil {
		return nil, err
	}
	node, err := nodeOfCaller(rec, caller)
	if err != nil {
		return nil, err
	}
	rnd, err := loadRound(v, task, round)
	if err != nil {
		return nil, err
	}
	if rnd.Status != StatusClosed {
		return nil, refuse(CodeRoundNotClosed, "round %d is %s, not closed", round, rnd.Status)
	}
	leader, err := currentLeader(rnd)
	if err != nil {
		return nil, err
	}
	if rnd.LeaderDeadlineMs == nil || ts < *rnd.LeaderDeadlineMs {
		return nil, refuse(CodeDeadlineNotPassed, "leader '%s' has until %s ms; now is %d ms",
			leader, formatOptional(rnd.LeaderDeadlineMs), ts)
	}
	rnd.Failovers++
	touch(rec, node, ts)
	if rnd.LeaderIndex+1 < int64(len(rnd.Contributors)) {
		deadline := ts + rec.Spec.LeaderTimeoutMs
		rnd.LeaderIndex++
		rnd.LeaderDeadlineMs = &deadline
	} else {
		rnd.Status = StatusAbandoned
		rnd.AbandonedMs = &ts
		rnd.AbandonedBy = &node
		rec.AbandonedRounds++
		rec.CurrentRound = round + 1
		v.putRound(newRound(task, round+1, ts))
	}
	v.putRound(rnd)
	v.putTask(rec)
	return rnd, nil
}

// secureClosedRound is the closed round of a secure task that node (the caller) acts in.
func secureClosedRound(v *stateView, rec *Task, caller string, round int64, node string) (*Round, error) {
	if _, err := checkNodeCaller(rec, node, caller); err != nil {
		return nil, err
	}
	if !rec.Spec.SecureAggregation {
		return nil, refuse(CodeNotSecure, "task '%s' does not use secure aggregation", rec.Task)
	}
	rnd, err := loadRound(v, rec.Task, round)
	if err != nil {
		return nil, err
	}
	if rnd.Status != StatusClosed {
		return nil, refuse(CodeRoundNotClosed, "round %d is %s, not closed", round, rnd.Status)
	}
	return rnd, nil
}

// submitMasked records a contributor's masked model and sealed shares in a closed secure round.
func submitMasked(v *stateView, caller string, ts int64, task, roundArg, node, maskedSha, sharesSha string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	if err := checkSha256(maskedSha, "masked_sha256"); err != nil {
		return nil, err
	}
	if err := checkSha256(sharesSha, "shares_sha256"); err != nil {
		return nil, err
	}
	if err := requireOpenTask(rec); err != nil {
		return nil, err
	}
	rnd, err := secureClosedRound(v, rec, caller, round, node)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(rnd.Contributors, node) {
		return nil, refuse(CodeNotContributor, "node '%s' is not a contributor of round %d", node, round)
	}
	if previous, ok := rnd.Masked[node]; ok {
		if previous.Sha256 == maskedSha && previous.SharesSha256 == sharesSha {
			return rnd, nil // a replay: idempotent, nothing changes
		}
		return nil, refuse(CodeDuplicateSubmission, "node '%s' already submitted its masked model to round %d", node, round)
	}
	if rnd.Masked == nil {
		rnd.Masked = map[string]*MaskedEntry{}
	}
	rnd.Masked[node] = &MaskedEntry{Sha256: maskedSha, SharesSha256: sharesSha, TsMs: ts}
	touch(rec, node, ts)
	v.putRound(rnd)
	v.putTask(rec)
	return rnd, nil
}

// withAdverts returns an open round of a secure task with Advertised filled from the nodes'
// advertisements. The result is for the caller only: the round record is never stored with them. Only
// while the round is open: once it closed, its submissions are what counts.
func withAdverts(v *stateView, rec *Task, rnd *Round) (*Round, error) {
	if !rec.Spec.SecureAggregation || rnd.Status != StatusOpen {
		return rnd, nil
	}
	adverts := map[string]*Advert{}
	for _, node := range sortedNodes(rec) {
		advert, err := v.advert(rec.Task, rnd.Round, node)
		if err != nil {
			return nil, err
		}
		if advert != nil {
			adverts[node] = advert
		}
	}
	if len(adverts) == 0 {
		return rnd, nil
	}
	out := *rnd
	out.Advertised = adverts
	return &out, nil
}

// advertiseKey lets a site of a secure task announce its round key for the open round before its model
// is ready, so that the others can sum their pairwise masks with it while they train. Only a hint: the
// key the node submits is the one the round uses. One per node per round; it writes only its own
// AdvertKey. Returns the round as GetRound does.
func advertiseKey(v *stateView, caller string, ts int64, task, roundArg, node, key string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	if err := checkSha256(key, "key"); err != nil {
		return nil, err
	}
	if err := requireOpenTask(rec); err != nil {
		return nil, err
	}
	info, err := checkNodeCaller(rec, node, caller)
	if err != nil {
		return nil, err
	}
	if !rec.Spec.SecureAggregation {
		return nil, refuse(CodeNotSecure, "task '%s' does not use secure aggregation", task)
	}
	rnd, err := roundOfActiveNode(v, rec, round, node, info)
	if err != nil {
		return nil, err
	}
	previous, err := v.advert(task, round, node)
	if err != nil {
		return nil, err
	}
	if previous != nil {
		if previous.Key == key {
			return withAdverts(v, rec, rnd) // a replay: idempotent, nothing changes
		}
		return nil, refuse(CodeDuplicateSubmission, "node '%s' already advertised key %s... in round %d",
			node, previous.Key[:min(12, len(previous.Key))], round)
	}
	if rnd.Status != StatusOpen {
		return nil, refuse(CodeRoundClosed, "round %d is %s; advertising a key is too late", round, rnd.Status)
	}
	if _, ok := rnd.Submissions[node]; ok {
		return nil, refuse(CodeDuplicateSubmission, "node '%s' already submitted its key to round %d", node, round)
	}
	v.putAdvert(task, round, node, &Advert{Key: key, TsMs: ts})
	return withAdverts(v, rec, rnd)
}

// seal lets the leader of a closed secure round name the masked models it unmasks; the rest are dropped.
// A leader after a failover may seal again.
func seal(v *stateView, caller string, ts int64, task, roundArg, node, survivorsArg string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	names := strings.Split(survivorsArg, ",")
	for _, name := range names {
		if err := checkName(name, "survivor"); err != nil {
			return nil, err
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			return nil, refuse(CodeInvalidArgument, "survivors must be sorted and distinct, got %q", survivorsArg)
		}
	}
	if err := requireOpenTask(rec); err != nil {
		return nil, err
	}
	rnd, err := secureClosedRound(v, rec, caller, round, node)
	if err != nil {
		return nil, err
	}
	leader, err := currentLeader(rnd)
	if err != nil {
		return nil, err
	}
	if node != leader {
		return nil, refuse(CodeNotLeader, "node '%s' does not lead round %d; '%s' does", node, round, leader)
	}
	var missing []string
	for _, name := range names {
		if _, ok := rnd.Masked[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, refuse(CodeNotMasked, "%s submitted no masked model to round %d", strings.Join(missing, ", "), round)
	}
	need := len(rnd.Contributors)/2 + 1
	if len(names) < need {
		return nil, refuse(CodeTooFewSurvivors, "%d survivors of %d contributors; unmasking needs at least %d",
			len(names), len(rnd.Contributors), need)
	}
	dropped := []string{}
	sorted := append([]string{}, rnd.Contributors...)
	sort.Strings(sorted)
	for _, name := range sorted {
		if !slices.Contains(names, name) {
			dropped = append(dropped, name)
		}
	}
	rnd.Sealed = &Seal{Survivors: names, Dropped: dropped, By: node, TsMs: ts}
	touch(rec, node, ts)
	v.putRound(rnd)
	v.putTask(rec)
	return rnd, nil
}

func formatOptional(n *int64) string {
	if n == nil {
		return "null"
	}
	return fmt.Sprint(*n)
}

// setStatus moves a node to finished or left; a node that left stays left.
func setStatus(v *stateView, caller string, ts int64, task, node, status string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	info, err := checkNodeCaller(rec, node, caller)
	if err != nil {
		return nil, err
	}
	if info.Status == NodeLeft {
		return rec, nil // leaving twice, or finishing after leaving: nothing changes
	}
	info.Status = status
	touch(rec, node, ts)
	maybeDone(rec)
	v.putTask(rec)
	return rec, nil
}

// finish marks the node's training as ended; its service keeps contributing its final model.
func finish(v *stateView, caller string, ts int64, task, node string) (any, error) {
	return setStatus(v, caller, ts, task, node, NodeFinished)
}

// leave takes the node out of the task; rounds stop waiting for it.
func leave(v *stateView, caller string, ts int64, task, node string) (any, error) {
	return setStatus(v, caller, ts, task, node, NodeLeft)
}

// getTask returns the task record.
func getTask(v *stateView, task string) (any, error) {
	return loadTask(v, task)
}

// getRound returns one round record.
func getRound(v *stateView, task, roundArg string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	round, err := parseInt(roundArg, "round", 0)
	if err != nil {
		return nil, err
	}
	rnd, err := loadRound(v, task, round)
	if err != nil {
		return nil, err
	}
	return withAdverts(v, rec, rnd)
}

// getHistory returns every finished round of the task (merged or abandoned), oldest first.
func getHistory(v *stateView, task string) (any, error) {
	rec, err := loadTask(v, task)
	if err != nil {
		return nil, err
	}
	history := &History{Task: task, Rounds: []*Round{}}
	for r := int64(0); r < rec.CurrentRound; r++ {
		rnd, err := v.round(task, r)
		if err != nil {
			return nil, err
		}
		if rnd != nil {
			history.Rounds = append(history.Rounds, rnd)
		}
	}
	return history, nil
}
