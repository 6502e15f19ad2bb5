package chaincode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The conformance vectors in contract/vectors/ are shared with the Python
// contract (sn_service/contract.py): every step runs here through
// contractapi's real dispatch (ContractChaincode.Invoke) on an in-memory stub,
// with the step's caller identity and timestamp.
//
// Fabric carries every argument as a string. A vector's typed arguments are
// sent the way a Fabric client sends them: a string parameter as the string
// itself; spec, round and weight as JSON text (an integer's decimal digits, an
// object's JSON). So a vector's "0" where a round belongs arrives as "\"0\""
// and is refused like the Python refuses a str round.

// vectorsEnv overrides where the vectors are read from.
const vectorsEnv = "SWARM_CONTRACT_VECTORS"

// jsonParams marks, per function, the parameters carried as JSON text.
var jsonParams = map[string][]bool{
	"InitTask":     {false, true},
	"Submit":       {false, true, false, false, true},
	"Close":        {false, true},
	"Publish":      {false, true, false, false},
	"Failover":     {false, true},
	"GetRound":     {false, true},
	"SubmitMasked": {false, true, false, false, false},
	"Seal":         {false, true, false, false},
	"AdvertiseKey": {false, true, false, false},
}

type vectorFile struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Steps       []vectorStep   `json:"steps"`
	State       map[string]any `json:"state"`
}

type vectorStep struct {
	Fn     string         `json:"fn"`
	Caller string         `json:"caller"`
	Ts     json.Number    `json:"ts"`
	Args   []any          `json:"args"`
	Expect map[string]any `json:"expect"`
}

// vectorsDir finds contract/vectors: $SWARM_CONTRACT_VECTORS, or the nearest
// ancestor of the working directory that has it (the repository root).
func vectorsDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv(vectorsEnv); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		candidate := filepath.Join(dir, "contract", "vectors")
		if info, err := os.Stat(candidate); err == nil && info.IsDir() {
			return candidate
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("no contract/vectors above %s; set %s to the vectors folder", wd, vectorsEnv)
		}
	}
}

func decodeJSON(data []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// fabricArg encodes the i-th argument of fn as Fabric carries it. ok is false
// when the value cannot be carried: a non-string where Fabric has a plain string.
func fabricArg(fn string, i int, value any) (arg string, ok bool) {
	kinds := jsonParams[fn]
	asJSON := i < len(kinds) && kinds[i]
	if !asJSON {
		if s, isString := value.(string); isString {
			return s, true
		}
		if _, known := functionArity[fn]; known && i < functionArity[fn] {
			return "", false
		}
	}
	data, err := json.Marshal(value)
	if err != nil {
		return "", false
	}
	return string(data), true
}

func TestConformanceVectors(t *testing.T) {
	dir := vectorsDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatalf("glob %s: %v", dir, err)
	}
	if len(files) == 0 {
		t.Fatalf("no vectors (*.json) in %s", dir)
	}
	sort.Strings(files)
	totalSteps, passedVectors := 0, 0
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		ok := t.Run(name, func(t *testing.T) {
			totalSteps += runVector(t, path)
		})
		if ok {
			passedVectors++
		}
	}
	t.Logf("conformance: %d of %d vectors passed, %d steps run, from %s", passedVectors, len(files), totalSteps, dir)
}

// runVector runs one vector file and returns how many steps it ran.
func runVector(t *testing.T, path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var vec vectorFile
	if err := decodeJSON(data, &vec); err != nil {
		t.Fatalf("%s is not a vector file: %v", path, err)
	}
	if len(vec.Steps) == 0 || vec.State == nil {
		t.Fatalf("%s: a vector needs steps and a state", path)
	}
	cc := newTestChaincode(t)
	stub := newFakeStub()
	for i, step := range vec.Steps {
		where := fmt.Sprintf("step %d (%s %s by %s at %s)", i, step.Fn, compactJSON(step.Args), step.Caller, step.Ts)
		ts, err := step.Ts.Int64()
		if err != nil {
			t.Fatalf("%s: ts %q is not an integer a Fabric timestamp can carry", where, step.Ts)
		}
		args := make([]string, len(step.Args))
		carried := true
		for j, value := range step.Args {
			args[j], carried = fabricArg(step.Fn, j, value)
			if !carried {
				break
			}
		}
		wantCode, wantsError := step.Expect["error"].(string)
		wantResult, wantsResult := step.Expect["result"]
		if wantsError == wantsResult {
			t.Fatalf("%s: expect must hold exactly one of error (a code) or result, got %s", where, compactJSON(step.Expect))
		}
		if !carried {
			if wantCode == CodeInvalidArgument {
				t.Logf("%s: a non-string where Fabric carries a string cannot be sent over Fabric; skipped", where)
				continue
			}
			t.Fatalf("%s: a non-string where Fabric carries a string, and the vector expects %s", where, compactJSON(step.Expect))
		}

		resp, puts := stub.invoke(cc, step.Caller, ts, step.Fn, args...)
		if wantsError {
			if resp.GetStatus() == 200 {
				t.Errorf("%s: want error %s, got result %s", where, wantCode, resp.GetPayload())
				continue
			}
			code, _, hasColon := strings.Cut(resp.GetMessage(), ":")
			if !hasColon || code != wantCode {
				t.Errorf("%s: want error %s, got %q", where, wantCode, resp.GetMessage())
			}
			if puts != 0 {
				t.Errorf("%s: a refused transaction wrote %d keys", where, puts)
			}
			continue
		}
		if resp.GetStatus() != 200 {
			t.Errorf("%s: want a result, got error %q", where, resp.GetMessage())
			continue
		}
		var got any
		if err := decodeJSON(resp.GetPayload(), &got); err != nil {
			t.Errorf("%s: the result %q is not JSON: %v", where, resp.GetPayload(), err)
			continue
		}
		if _, isObject := got.(map[string]any); !isObject {
			t.Errorf("%s: the result is not a JSON object: %s", where, resp.GetPayload())
		}
		if diff := subsetDiff(wantResult, got, "result"); diff != "" {
			t.Errorf("%s: %s\n  got %s", where, diff, resp.GetPayload())
		}
		if strings.HasPrefix(step.Fn, "Get") && puts != 0 {
			t.Errorf("%s: a query wrote %d keys", where, puts)
		}
	}

	// After every step the world state is exactly the vector's state.
	got := map[string]any{}
	for key, value := range stub.state {
		var decoded any
		if err := decodeJSON(value, &decoded); err != nil {
			t.Fatalf("state %s is not JSON: %v", key, err)
		}
		got[key] = decoded
	}
	if diff := exactDiff(vec.State, got, "state"); diff != "" {
		t.Errorf("final state: %s", diff)
	}
	return len(vec.Steps)
}

// subsetDiff describes how got fails to contain want: objects recursively as
// subsets, arrays and everything else exactly, numbers numerically. "" if it does.
func subsetDiff(want, got any, path string) string {
	wantObj, ok := want.(map[string]any)
	if !ok {
		return exactDiff(want, got, path)
	}
	gotObj, ok := got.(map[string]any)
	if !ok {
		return fmt.Sprintf("%s: want an object, got %s", path, compactJSON(got))
	}
	for _, key := range slices.Sorted(maps.Keys(wantObj)) {
		gotValue, present := gotObj[key]
		if !present {
			return fmt.Sprintf("%s.%s: missing", path, key)
		}
		if diff := subsetDiff(wantObj[key], gotValue, path+"."+key); diff != "" {
			return diff
		}
	}
	return ""
}

// exactDiff describes how got differs from want as parsed JSON (numbers
// numerically, objects by their key sets). "" if they are equal.
func exactDiff(want, got any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %s", path, compactJSON(got))
		}
		for _, key := range slices.Sorted(maps.Keys(w)) {
			if _, present := g[key]; !present {
				return fmt.Sprintf("%s.%s: missing", path, key)
			}
		}
		for _, key := range slices.Sorted(maps.Keys(g)) {
			if _, expected := w[key]; !expected {
				return fmt.Sprintf("%s.%s: unexpected, value %s", path, key, compactJSON(g[key]))
			}
			if diff := exactDiff(w[key], g[key], path+"."+key); diff != "" {
				return diff
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %s, got %s", path, compactJSON(want), compactJSON(got))
		}
		for i := range w {
			if diff := exactDiff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); diff != "" {
				return diff
			}
		}
		return ""
	case json.Number:
		g, ok := got.(json.Number)
		if !ok || !sameNumber(w, g) {
			return fmt.Sprintf("%s: want %s, got %s", path, w, compactJSON(got))
		}
		return ""
	default: // string, bool, nil
		if !reflect.DeepEqual(want, got) {
			return fmt.Sprintf("%s: want %s, got %s", path, compactJSON(want), compactJSON(got))
		}
		return ""
	}
}

func sameNumber(a, b json.Number) bool {
	x, okX := new(big.Rat).SetString(string(a))
	y, okY := new(big.Rat).SetString(string(b))
	return okX && okY && x.Cmp(y) == 0
}

func compactJSON(value any) string {
	data, err := json.Marshal(value)
	if err != nil {
		return fmt.Sprintf("%v", value)
	}
	return string(data)
}
