package chaincode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// The world state is a flat map from key to a JSON object; the schemas are
// in contract/README.md. Field names and JSON types match the Python state
// exactly: pointers are the fields that may be null, maps are never null.

// Spec is a task's spec: these seven fields, and secure_aggregation only when true.
type Spec struct {
	Fingerprint     string `json:"fingerprint"`
	Layout          string `json:"layout"`
	MinPeers        int64  `json:"min_peers"`
	MergeMethod     string `json:"merge_method"`
	QuorumWaitMs    int64  `json:"quorum_wait_ms"`
	LeaderTimeoutMs int64  `json:"leader_timeout_ms"`
	MaxRounds       int64  `json:"max_rounds"`
	// SecureAggregation: sites upload masked models; the leader learns only their weighted mean.
	SecureAggregation bool `json:"secure_aggregation,omitempty"`
}

// Node statuses.
const (
	NodeActive   = "active"
	NodeFinished = "finished"
	NodeLeft     = "left"
)

// NodeInfo is one node of a task, bound to the identity that registered it.
type NodeInfo struct {
	Identity   string `json:"identity"`
	Endpoint   string `json:"endpoint"`
	Status     string `json:"status"`
	JoinedMs   int64  `json:"joined_ms"`
	LastSeenMs int64  `json:"last_seen_ms"`
}

// MergedModel names the newest published merged model and who holds it.
type MergedModel struct {
	Round  int64  `json:"round"`
	Sha256 string `json:"sha256"`
	Node   string `json:"node"`
}

// Task and round statuses.
const (
	StatusOpen   = "open"
	StatusClosed = "closed"
	StatusDone   = "done"
	// StatusAbandoned is a round every contributor failed to lead in turn: it merged nothing.
	StatusAbandoned = "abandoned"
)

// Task is the record at task/<task>.
type Task struct {
	Task         string               `json:"task"`
	Spec         Spec                 `json:"spec"`
	Status       string               `json:"status"`
	CreatedMs    int64                `json:"created_ms"`
	CreatedBy    string               `json:"created_by"`
	CurrentRound int64                `json:"current_round"`
	LatestMerged *MergedModel         `json:"latest_merged"`
	Nodes        map[string]*NodeInfo `json:"nodes"`
	// AbandonedRounds counts the rounds before CurrentRound that merged nothing (absent while none).
	AbandonedRounds int64 `json:"abandoned_rounds,omitempty"`
}

// Submission is one node's weights hash in a round.
type Submission struct {
	Sha256 string `json:"sha256"`
	Weight int64  `json:"weight"`
	TsMs   int64  `json:"ts_ms"`
}

// Round is the record at round/<task>/<round, 10 zero-padded digits>.
type Round struct {
	Task                 string                 `json:"task"`
	Round                int64                  `json:"round"`
	Status               string                 `json:"status"`
	OpenedMs             int64                  `json:"opened_ms"`
	Submissions          map[string]*Submission `json:"submissions"`
	FirstSubmitMs        *int64                 `json:"first_submit_ms"`
	ClosedMs             *int64                 `json:"closed_ms"`
	ClosedBy             *string                `json:"closed_by"`
	PreviousMergedSha256 *string                `json:"previous_merged_sha256"`
	Contributors         []string               `json:"contributors"`
	LeaderIndex          int64                  `json:"leader_index"`
	LeaderDeadlineMs     *int64                 `json:"leader_deadline_ms"`
	Failovers            int64                  `json:"failovers"`
	MergedSha256         *string                `json:"merged_sha256"`
	PublishedMs          *int64                 `json:"published_ms"`
	PublishedBy          *string                `json:"published_by"`
	// An abandoned round only: when, and by whose Failover.
	AbandonedMs *int64  `json:"abandoned_ms,omitempty"`
	AbandonedBy *string `json:"abandoned_by,omitempty"`
	// Secure aggregation only: the round keys advertised before submitting (never stored in the round
	// record: each is under its AdvertKey, gathered here by GetRound), each contributor's masked model
	// and sealed shares, and the leader's seal.
	Advertised map[string]*Advert      `json:"advertised,omitempty"`
	Masked     map[string]*MaskedEntry `json:"masked,omitempty"`
	Sealed     *Seal                   `json:"sealed,omitempty"`
}

// Advert is a round key a site of a secure task announced before submitting (a hint: Submit decides).
type Advert struct {
	Key  string `json:"key"`
	TsMs int64  `json:"ts_ms"`
}

// MaskedEntry is one contributor's masked model hash and sealed-shares hash in a secure round.
type MaskedEntry struct {
	Sha256       string `json:"sha256"`
	SharesSha256 string `json:"shares_sha256"`
	TsMs         int64  `json:"ts_ms"`
}

// Seal names the masked models a secure round's leader unmasks (survivors) and the dropped ones.
type Seal struct {
	Survivors []string `json:"survivors"`
	Dropped   []string `json:"dropped"`
	By        string   `json:"by"`
	TsMs      int64    `json:"ts_ms"`
}

// History is what GetHistory returns: every round below current_round, oldest first.
type History struct {
	Task   string   `json:"task"`
	Rounds []*Round `json:"rounds"`
}

// TaskKey is the state key of a task record.
func TaskKey(task string) string {
	return "task/" + task
}

// RoundKey is the state key of a round record; zero-padded so keys sort by round.
func RoundKey(task string, round int64) string {
	return fmt.Sprintf("round/%s/%010d", task, round)
}

// AdvertKey is the state key of a round key a node advertised: a key of its own, so that advertising
// writes no record another transaction writes (no MVCC conflict with a Submit or a Close).
func AdvertKey(task string, round int64, node string) string {
	return fmt.Sprintf("advert/%s/%010d/%s", task, round, node)
}

// newRound is an open round with nothing submitted yet.
func newRound(task string, round, ts int64) *Round {
	return &Round{
		Task:         task,
		Round:        round,
		Status:       StatusOpen,
		OpenedMs:     ts,
		Submissions:  map[string]*Submission{},
		Contributors: []string{},
	}
}

// stateView reads through to the ledger and buffers writes, so a refused
// transaction writes nothing and a transaction sees its own writes (Fabric's
// GetState does not).
type stateView struct {
	read   func(key string) ([]byte, error)
	writes map[string]any
}

func newStateView(read func(key string) ([]byte, error)) *stateView {
	return &stateView{read: read, writes: map[string]any{}}
}

// task returns the task record, or nil if there is none.
func (v *stateView) task(name string) (*Task, error) {
	key := TaskKey(name)
	if w, ok := v.writes[key]; ok {
		return w.(*Task), nil
	}
	var rec Task
	found, err := v.load(key, &rec)
	if err != nil || !found {
		return nil, err
	}
	if rec.Nodes == nil {
		rec.Nodes = map[string]*NodeInfo{}
	}
	return &rec, nil
}

// round returns a round record, or nil if there is none.
func (v *stateView) round(task string, round int64) (*Round, error) {
	key := RoundKey(task, round)
	if w, ok := v.writes[key]; ok {
		return w.(*Round), nil
	}
	var rec Round
	found, err := v.load(key, &rec)
	if err != nil || !found {
		return nil, err
	}
	if rec.Submissions == nil {
		rec.Submissions = map[string]*Submission{}
	}
	if rec.Contributors == nil {
		rec.Contributors = []string{}
	}
	return &rec, nil
}

func (v *stateView) load(key string, into any) (bool, error) {
	data, err := v.read(key)
	if err != nil {
		return false, fmt.Errorf("failed to read %s from world state: %v", key, err)
	}
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, into); err != nil {
		return false, fmt.Errorf("world state %s is not a valid record: %v", key, err)
	}
	return true, nil
}

// advert returns a node's advertisement in a round, or nil if there is none.
func (v *stateView) advert(task string, round int64, node string) (*Advert, error) {
	key := AdvertKey(task, round, node)
	if w, ok := v.writes[key]; ok {
		return w.(*Advert), nil
	}
	var rec Advert
	found, err := v.load(key, &rec)
	if err != nil || !found {
		return nil, err
	}
	return &rec, nil
}

func (v *stateView) putAdvert(task string, round int64, node string, rec *Advert) {
	v.writes[AdvertKey(task, round, node)] = rec
}

func (v *stateView) putTask(rec *Task) {
	v.writes[TaskKey(rec.Task)] = rec
}

func (v *stateView) putRound(rec *Round) {
	v.writes[RoundKey(rec.Task, rec.Round)] = rec
}

// flush writes the buffered records as JSON, in key order.
func (v *stateView) flush(write func(key string, value []byte) error) error {
	keys := make([]string, 0, len(v.writes))
	for key := range v.writes {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		data, err := encodeJSON(v.writes[key])
		if err != nil {
			return fmt.Errorf("failed to encode %s: %v", key, err)
		}
		if err := write(key, data); err != nil {
			return fmt.Errorf("failed to write %s to world state: %v", key, err)
		}
	}
	return nil
}

// encodeJSON marshals without HTML escaping (endpoints are URLs with '&').
func encodeJSON(value any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
