package chaincode

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MergeMethods are the merge methods a task spec may name.
var MergeMethods = []string{"mean", "coordmedian", "geomedian", "trimmedmean", "krum", "multikrum"}

// SpecFields are the fields of a task spec, exactly, in the order they are checked.
var SpecFields = []string{
	"fingerprint",
	"layout",
	"min_peers",
	"merge_method",
	"quorum_wait_ms",
	"leader_timeout_ms",
	"max_rounds",
}

// OptionalSpecFields may be absent (off); the normalised spec holds them only when on.
var OptionalSpecFields = []string{"secure_aggregation"}

const (
	maxLayoutChars   = 1 << 20
	maxEndpointChars = 512
	maxCallerChars   = 1024
	// maxInt is the largest integer exact in JSON doubles, Go int64 and Python alike.
	maxInt = 1<<53 - 1
)

var (
	// \z, not $: a name or hash may not end in a newline.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z`)
	shaRE  = regexp.MustCompile(`^[0-9a-f]{64}\z`)
	// A JSON integer literal: what Python's json.loads turns into an int.
	intRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)\z`)
)

// checkName accepts 1-64 of [A-Za-z0-9._-], starting with a letter or digit.
func checkName(value, what string) error {
	if !nameRE.MatchString(value) {
		return refuse(CodeInvalidArgument,
			"%s %q is not a valid name: use 1-64 characters of letters, digits, '.', '_' or '-', "+
				"starting with a letter or digit", what, value)
	}
	return nil
}

// checkSha256 accepts 64 lowercase hex characters.
func checkSha256(value, what string) error {
	if !shaRE.MatchString(value) {
		return refuse(CodeInvalidArgument, "%s must be 64 lowercase hex characters (sha256), got %q", what, value)
	}
	return nil
}

// parseInt reads an integer argument: Fabric carries it as the decimal text of
// a JSON integer ("12", not "12.0", "1e1", "+12" or "\"12\""), in [minimum, 2^53-1].
func parseInt(value, what string, minimum int64) (int64, error) {
	n, err := strconv.ParseInt(value, 10, 64)
	if !intRE.MatchString(value) || err != nil || n < minimum || n > maxInt {
		return 0, refuse(CodeInvalidArgument, "%s must be an integer >= %d, got %q", what, minimum, value)
	}
	return n, nil
}

// checkCaller accepts a non-empty caller identity of at most 1024 characters.
func checkCaller(caller string) error {
	if caller == "" || utf8.RuneCountInString(caller) > maxCallerChars {
		return refuse(CodeInvalidArgument, "the caller identity is empty or too long")
	}
	return nil
}

// checkTimestamp accepts a transaction timestamp in [0, 2^53-1] milliseconds.
func checkTimestamp(ts int64) error {
	if ts < 0 || ts > maxInt {
		return refuse(CodeInvalidArgument, "timestamp must be an integer >= 0, got %d", ts)
	}
	return nil
}

// checkEndpoint accepts a non-empty UTF-8 string of at most 512 characters.
func checkEndpoint(endpoint string) error {
	if endpoint == "" || !utf8.ValidString(endpoint) || utf8.RuneCountInString(endpoint) > maxEndpointChars {
		return refuse(CodeInvalidArgument, "endpoint must be a non-empty string, got %q", endpoint)
	}
	return nil
}

// parseSpec checks a task spec, given as the text of a JSON object, and
// returns it normalised (exactly SpecFields). Mirrors validate_spec in
// sn_service/contract.py, check for check.
func parseSpec(specJSON string) (Spec, error) {
	var fields map[string]json.RawMessage
	if !utf8.ValidString(specJSON) || json.Unmarshal([]byte(specJSON), &fields) != nil || fields == nil {
		return Spec{}, refuse(CodeInvalidArgument, "spec must be a JSON object, got %q", truncate(specJSON, 80))
	}
	var unknown, missing []string
	for name := range fields {
		if !slices.Contains(SpecFields, name) && !slices.Contains(OptionalSpecFields, name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range SpecFields {
		if _, ok := fields[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(unknown) > 0 || len(missing) > 0 {
		return Spec{}, refuse(CodeInvalidArgument, "spec fields: unknown %v, missing %v; expected %v",
			unknown, missing, SpecFields)
	}

	layout, ok := jsonString(fields["layout"])
	if !ok || layout == "" || utf8.RuneCountInString(layout) > maxLayoutChars {
		return Spec{}, refuse(CodeInvalidArgument, "spec.layout must be a non-empty string")
	}
	fingerprint, ok := jsonString(fields["fingerprint"])
	if !ok {
		return Spec{}, refuse(CodeInvalidArgument, "spec.fingerprint must be 64 lowercase hex characters (sha256), got %s",
			fields["fingerprint"])
	}
	if err := checkSha256(fingerprint, "spec.fingerprint"); err != nil {
		return Spec{}, err
	}
	digest := sha256.Sum256([]byte(layout))
	if hex.EncodeToString(digest[:]) != fingerprint {
		return Spec{}, refuse(CodeInvalidArgument, "spec.fingerprint is not the sha256 of spec.layout")
	}
	method, ok := jsonString(fields["merge_method"])
	if !ok || !slices.Contains(MergeMethods, method) {
		return Spec{}, refuse(CodeInvalidArgument, "spec.merge_method %s is not one of %v",
			fields["merge_method"], MergeMethods)
	}
	secure := false
	if raw, ok := fields["secure_aggregation"]; ok {
		switch string(bytes.TrimSpace(raw)) {
		case "true":
			secure = true
		case "false":
		default:
			return Spec{}, refuse(CodeInvalidArgument, "spec.secure_aggregation must be true or false, got %s", raw)
		}
	}
	if secure && method != "mean" {
		return Spec{}, refuse(CodeInvalidArgument,
			"spec.secure_aggregation works with merge_method 'mean' only, not '%s': a median or Krum must see "+
				"every model, which secure aggregation hides", method)
	}
	spec := Spec{Fingerprint: fingerprint, Layout: layout, MergeMethod: method, SecureAggregation: secure}
	ints := []struct {
		name    string
		minimum int64
		into    *int64
	}{
		{"min_peers", 1, &spec.MinPeers},
		{"quorum_wait_ms", 0, &spec.QuorumWaitMs},
		{"leader_timeout_ms", 1, &spec.LeaderTimeoutMs},
		{"max_rounds", 0, &spec.MaxRounds},
	}
	for _, field := range ints {
		n, err := parseInt(string(bytes.TrimSpace(fields[field.name])), "spec."+field.name, field.minimum)
		if err != nil {
			return Spec{}, err
		}
		*field.into = n
	}
	return spec, nil
}

// jsonString decodes a JSON value that must be a string.
func jsonString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
