package chaincode

import (
	"errors"
	"strings"
	"testing"
)

const (
	testLayout      = "f32[4,2];f32[2]"
	testFingerprint = "63d49f7e5c1c7e44b893b9924b4e5ac79fff960dcd93c3872e4c538b50d3279a" // sha256(testLayout)
	testSpecJSON    = `{"fingerprint": "` + testFingerprint + `", "layout": "` + testLayout + `", "min_peers": 2, ` +
		`"merge_method": "mean", "quorum_wait_ms": 5000, "leader_timeout_ms": 10000, "max_rounds": 0}`
)

// errorCode is the code before the first colon of a refusal's text.
func errorCode(message string) string {
	code, _, _ := strings.Cut(message, ":")
	return code
}

func codeOf(err error) string {
	var refusal *ContractError
	if errors.As(err, &refusal) {
		return refusal.Code
	}
	return ""
}

func TestParseIntTakesOnlyJSONIntegersInRange(t *testing.T) {
	good := map[string]int64{
		"0":                0,
		"7":                7,
		"1234567890":       1234567890,
		"9007199254740991": 1<<53 - 1,
		"-0":               0, // JSON's -0 is Python's int 0
	}
	for arg, want := range good {
		got, err := parseInt(arg, "round", 0)
		if err != nil || got != want {
			t.Errorf("parseInt(%q) = %d, %v; want %d", arg, got, err, want)
		}
	}
	bad := []string{
		"", " 1", "1 ", "+1", "01", "1.5", "1.0", "1e3", "0x10", `"0"`, "true", "null",
		"-1", "9007199254740992", "99999999999999999999999", "１",
	}
	for _, arg := range bad {
		if _, err := parseInt(arg, "round", 0); codeOf(err) != CodeInvalidArgument {
			t.Errorf("parseInt(%q): err %v, want %s", arg, err, CodeInvalidArgument)
		}
	}
	if _, err := parseInt("0", "spec.min_peers", 1); codeOf(err) != CodeInvalidArgument {
		t.Errorf("parseInt below the minimum: err %v, want %s", err, CodeInvalidArgument)
	}
	if err := refuse(CodeInvalidArgument, "x"); err.Error() != "INVALID_ARGUMENT: x" {
		t.Errorf("refusal text %q does not start with the code and a colon", err.Error())
	}
}

func TestCheckNameAndSha256(t *testing.T) {
	for _, name := range []string{"t1", "site-a", "a", "0.x_y-z", strings.Repeat("a", 64)} {
		if err := checkName(name, "node"); err != nil {
			t.Errorf("checkName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "-a", ".a", "_a", "bad name!", "t1\n", "é", strings.Repeat("a", 65)} {
		if err := checkName(name, "node"); codeOf(err) != CodeInvalidArgument {
			t.Errorf("checkName(%q): err %v, want %s", name, err, CodeInvalidArgument)
		}
	}
	if err := checkSha256(testFingerprint, "sha256"); err != nil {
		t.Errorf("checkSha256: %v", err)
	}
	for _, sha := range []string{"", "zz", strings.ToUpper(testFingerprint), testFingerprint + "\n", testFingerprint[:63]} {
		if err := checkSha256(sha, "sha256"); codeOf(err) != CodeInvalidArgument {
			t.Errorf("checkSha256(%q): err %v, want %s", sha, err, CodeInvalidArgument)
		}
	}
}

func TestParseSpec(t *testing.T) {
	spec, err := parseSpec(testSpecJSON)
	if err != nil {
		t.Fatalf("parseSpec: %v", err)
	}
	want := Spec{Fingerprint: testFingerprint, Layout: testLayout, MinPeers: 2, MergeMethod: "mean",
		QuorumWaitMs: 5000, LeaderTimeoutMs: 10000, MaxRounds: 0}
	if spec != want {
		t.Errorf("parseSpec = %+v, want %+v", spec, want)
	}

	replace := func(old, new string) string { return strings.Replace(testSpecJSON, old, new, 1) }
	bad := map[string]string{
		"not JSON":             "not an object",
		"a JSON string":        `"not an object"`,
		"null":                 "null",
		"an array":             "[1, 2]",
		"a float":              replace(`"min_peers": 2`, `"min_peers": 2.0`),
		"an exponent":          replace(`"max_rounds": 0`, `"max_rounds": 0e0`),
		"a bool":               replace(`"min_peers": 2`, `"min_peers": true`),
		"a string int":         replace(`"min_peers": 2`, `"min_peers": "2"`),
		"min_peers 0":          replace(`"min_peers": 2`, `"min_peers": 0`),
		"leader_timeout_ms 0":  replace(`"leader_timeout_ms": 10000`, `"leader_timeout_ms": 0`),
		"negative wait":        replace(`"quorum_wait_ms": 5000`, `"quorum_wait_ms": -1`),
		"unknown method":       replace(`"mean"`, `"median"`),
		"method not a string":  replace(`"mean"`, `1`),
		"fingerprint mismatch": replace(testFingerprint, strings.Repeat("0", 64)),
		"empty layout":         replace(`"`+testLayout+`"`, `""`),
		"layout not a string":  replace(`"`+testLayout+`"`, `4`),
		"missing field":        replace(`"max_rounds": 0`, `"max_roundz": 0`),
		"extra field":          replace(`"max_rounds": 0`, `"max_rounds": 0, "extra": 1`),
	}
	for what, arg := range bad {
		if _, err := parseSpec(arg); codeOf(err) != CodeInvalidArgument {
			t.Errorf("parseSpec with %s: err %v, want %s", what, err, CodeInvalidArgument)
		}
	}
}

func TestCallerAndTimestampChecks(t *testing.T) {
	if err := checkCaller("Org1MSP::CN=site-a"); err != nil {
		t.Errorf("checkCaller: %v", err)
	}
	for _, caller := range []string{"", strings.Repeat("x", 1025)} {
		if err := checkCaller(caller); codeOf(err) != CodeInvalidArgument {
			t.Errorf("checkCaller(%d chars): err %v, want %s", len(caller), err, CodeInvalidArgument)
		}
	}
	if err := checkCaller(strings.Repeat("é", 1024)); err != nil {
		t.Errorf("checkCaller counts characters, not bytes: %v", err)
	}
	for _, ts := range []int64{-1, 1 << 53} {
		if err := checkTimestamp(ts); codeOf(err) != CodeInvalidArgument {
			t.Errorf("checkTimestamp(%d): err %v, want %s", ts, err, CodeInvalidArgument)
		}
	}
}
