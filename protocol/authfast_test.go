package protocol

import (
	"encoding/json"
	"reflect"
	"testing"
)

var authFastCases = []struct {
	in   string
	fast bool // the fast path decides it
}{
	{`{"mid":1,"key":"tcp-key-1","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}`, true},
	{` { "mid" : -42 , "accepts" : [ ] , "x":"y", "t":true, "f":false, "n":7 } `, true},
	{`{}`, true},
	{`{"accepts":[2147483647,-2147483648],"mid":-9223372036854775808}`, true},
	{`{"mid":9223372036854775807}`, true},
	{`{"mid":-0}`, true},
	{`{"accepts":[1],"accepts":[]}`, true},
	{`{"mid":9223372036854775808}`, false},
	{`{"accepts":[2147483648]}`, false},
	{`{"mid":1.0}`, false},
	{`{"mid":1e3}`, false},
	{`{"mid":01}`, false},
	{`{"mid":"1"}`, false},
	{`{"mid":null}`, false},
	{`{"MID":5}`, false},
	{`{"Room_ID":"x"}`, false},
	{`{"key":"a\"b"}`, false},
	{`{"key":"é"}`, false},
	{`{"x":{"y":1}}`, false},
	{`{"x":[1]}`, false},
	{`{"x":truex}`, false},
	{`{"mid":1}x`, false},
	{`{"mid":1,}`, false},
	{`{"mid":1`, false},
	{`[]`, false},
	{``, false},
	{`{"key":"a` + "\x01" + `"}`, false},
}

func TestParseAuthFast(t *testing.T) {
	for _, tc := range authFastCases {
		got, ok := parseAuthFast([]byte(tc.in))
		if ok != tc.fast {
			t.Errorf("%q: fast path %v, want %v", tc.in, ok, tc.fast)
		}
		if ok {
			checkAgainstJSON(t, []byte(tc.in), got)
		}
	}
}

// FuzzParseAuthFast: whatever the fast path accepts, encoding/json decodes
// the same way.
func FuzzParseAuthFast(f *testing.F) {
	for _, tc := range authFastCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, ok := parseAuthFast(b); ok {
			checkAgainstJSON(t, b, got)
		}
	})
}

func checkAgainstJSON(t *testing.T, b []byte, got Auth) {
	t.Helper()
	var want Auth
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%q: fast path accepted what encoding/json refuses: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast path %+v, encoding/json %+v", b, got, want)
	}
}

func BenchmarkParseAuthJSON(b *testing.B) {
	in := []byte(authFastCases[0].in)
	b.ReportAllocs()
	for b.Loop() {
		var a Auth
		if err := json.Unmarshal(in, &a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAuthFast(b *testing.B) {
	in := []byte(authFastCases[0].in)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := parseAuthFast(in); !ok {
			b.Fatal("fell back")
		}
	}
}
