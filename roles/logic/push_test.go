package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imcloud/imcloud/protocol/pb"
	"github.com/imcloud/imcloud/queue"
)

// TestPushMids covers both prefixes, every list form, grouping by node and
// ignoring bindings to dead nodes, with the exact messages published.
func TestPushMids(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	mpType, mpBody := multipartForm("mids[]", "2", "mids[]", "1", "operation", "1200", "msg", "from multipart")
	tests := []struct {
		name     string
		target   string
		ct, body string
		sessions int64
		want     []*pb.PushMsg // id filled in from the answer
	}{
		{"goim repeated", "/goim/push/mids?operation=1001&mids=1&mids=2", "", "hello", 3, []*pb.PushMsg{
			pushMsg("", 1001, "n1", "hello", "k1a", "k2"),
			pushMsg("", 1001, "n2", "hello", "k1b"),
		}},
		{"im default operation", "/im/push/mids?mids=2", "", "hello", 1, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "hello", "k2"),
		}},
		{"im explicit operation", "/im/push/mids?mids=2&operation=2000", "", "hi", 1, []*pb.PushMsg{
			pushMsg("", 2000, "n1", "hi", "k2"),
		}},
		{"comma separated", "/goim/push/mids?operation=1000&mids=1,2", "", "m", 3, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "m", "k1a", "k2"),
			pushMsg("", 1000, "n2", "m", "k1b"),
		}},
		{"comma with spaces and empties", "/goim/push/mids?operation=1000&mids=1,%202,,", "", "m", 3, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "m", "k1a", "k2"),
			pushMsg("", 1000, "n2", "m", "k1b"),
		}},
		{"php style", "/goim/push/mids?operation=1000&mids[]=1&mids%5B%5D=2", "", "m", 3, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "m", "k1a", "k2"),
			pushMsg("", 1000, "n2", "m", "k1b"),
		}},
		{"duplicates removed", "/goim/push/mids?operation=1000&mids=2,2,02&mids[]=2", "", "m", 1, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "m", "k2"),
		}},
		{"form body", "/goim/push/mids", form, "operation=1000&mids=1&mids=2&msg=from+form", 3, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "from form", "k1a", "k2"),
			pushMsg("", 1000, "n2", "from form", "k1b"),
		}},
		{"form body php style", "/im/push/mids", form + "; charset=utf-8", "mids%5B%5D=2&mids[]=1&msg=x", 3, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "x", "k1a", "k2"),
			pushMsg("", 1000, "n2", "x", "k1b"),
		}},
		{"query and form lists merge", "/goim/push/mids?operation=1000&mids=2", form, "mids=1&msg=x", 3, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "x", "k1a", "k2"),
			pushMsg("", 1000, "n2", "x", "k1b"),
		}},
		{"form operation wins over query", "/goim/push/mids?operation=1000&mids=2", form, "operation=1500&msg=x", 1, []*pb.PushMsg{
			pushMsg("", 1500, "n1", "x", "k2"),
		}},
		{"multipart form body php style", "/goim/push/mids?operation=1000", mpType, mpBody, 3, []*pb.PushMsg{
			pushMsg("", 1200, "n1", "from multipart", "k1a", "k2"),
			pushMsg("", 1200, "n2", "from multipart", "k1b"),
		}},
		{"dead node ignored", "/goim/push/mids?operation=1000&mids=4", "", "m", 1, []*pb.PushMsg{
			pushMsg("", 1000, "n2", "m", "k4a"),
		}},
		{"only on a dead node", "/goim/push/mids?operation=1000&mids=3", "", "m", 0, nil},
		{"offline user", "/goim/push/mids?operation=1000&mids=999999", "", "nobody", 0, nil},
		// goim's push benchmark sends mids=0: like goim, nobody, not a 400.
		{"mid 0 is nobody, not the anonymous", "/goim/push/mids?operation=1000&mids=0", "", "m", 0, nil},
		{"negative mid is nobody", "/im/push/mids?mids=-7", "", "m", 0, nil},
		{"mid 0 beside a user", "/goim/push/mids?operation=1000&mids=0,2", "", "m", 1, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "m", "k2"),
		}},
		{"the largest mid is an id too", "/goim/push/mids?operation=1000&mids=9223372036854775807", "", "m", 0, nil},
		{"a parameter repeated alike", "/goim/push/mids?operation=1500&operation=1500&mids=2", "", "m", 1, []*pb.PushMsg{
			pushMsg("", 1500, "n1", "m", "k2"),
		}},
		{"spaces around numbers", "/goim/push/mids?operation=%201500%20&mids=%202", "", "m", 1, []*pb.PushMsg{
			pushMsg("", 1500, "n1", "m", "k2"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.post(tt.target, tt.ct, tt.body)
			if a.Status != http.StatusOK {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			p := a.push(t)
			if p.Sessions != tt.sessions {
				t.Errorf("sessions = %d, want %d", p.Sessions, tt.sessions)
			}
			got := e.drain()
			if len(got) != len(tt.want) {
				t.Fatalf("published %d messages, want %d: %v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				w.Id = p.ID
				sameMsg(t, got[i], w)
			}
		})
	}
}

func TestPushKeys(t *testing.T) {
	tests := []struct {
		name     string
		target   string
		sessions int64
		want     []*pb.PushMsg
	}{
		{"goim", "/goim/push/keys?operation=1000&keys=k1a&keys=k2,k1b", 3, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "body", "k1a", "k2"),
			pushMsg("", 1000, "n2", "body", "k1b"),
		}},
		{"im", "/im/push/keys?keys[]=k2&keys[]=k1a", 2, []*pb.PushMsg{
			pushMsg("", 1000, "n1", "body", "k1a", "k2"),
		}},
		{"dead node and unknown key ignored", "/goim/push/keys?operation=1000&keys=k4b,k4a,nokey,k3", 1, []*pb.PushMsg{
			pushMsg("", 1000, "n2", "body", "k4a"),
		}},
		{"unknown key", "/goim/push/keys?operation=1000&keys=nokey", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.post(tt.target, "text/plain", "body")
			if a.Status != http.StatusOK {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			p := a.push(t)
			if p.Sessions != tt.sessions {
				t.Errorf("sessions = %d, want %d", p.Sessions, tt.sessions)
			}
			got := e.drain()
			if len(got) != len(tt.want) {
				t.Fatalf("published %d messages, want %d: %v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				w.Id = p.ID
				sameMsg(t, got[i], w)
			}
		})
	}
}

// TestFormNamesRouteParams: a form-typed body is a form only if it gives a
// value to a parameter of its own route; one naming another route's
// parameter is a message.
func TestFormNamesRouteParams(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	mpRoom, mpRoomBody := multipartForm("room", "full")
	tests := []struct {
		target string
		ct     string
		body   string
		want   string
	}{
		{"/goim/push/keys?operation=1000&keys=k1a", form, "mids=5", "mids=5"},
		{"/goim/push/keys?operation=1000&keys=k1a", form, "speed=5", "speed=5"},
		{"/goim/push/keys?operation=1000&keys=k1a", mpRoom, mpRoomBody, mpRoomBody},
		{"/goim/push/keys?operation=1000&keys=k1a", form, "id=ab&msg=x", "x"},
		{"/goim/push/mids?operation=1000&mids=1", form, "keys=k9", "keys=k9"},
		{"/goim/push/mids?operation=1000&mids=1", form, "type=live", "type=live"},
		{"/goim/push/mids?operation=1000&mids=1", form, "mids[]=2&msg=x", "x"},
		{"/goim/push/room?operation=1000&type=live&room=1000", form, "mids=1", "mids=1"},
		{"/goim/push/room?operation=1000&type=live&room=1000", form, "speed=1", "speed=1"},
		{"/goim/push/room?operation=1000&type=live&room=1000", form, "room=1000&msg=x", "x"},
		{"/goim/push/all?operation=1000", form, "room=full", "room=full"},
		{"/goim/push/all?operation=1000", form, "keys=a,b", "keys=a,b"},
		{"/goim/push/all?operation=1000", form, "speed=9&msg=x", "x"},
		{"/goim/push/all?operation=1000", form, "operation=1001&msg=", ""},
	}
	for _, tt := range tests {
		t.Run(tt.target+" "+tt.body, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.post(tt.target, tt.ct, tt.body)
			if a.Status != http.StatusOK {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			got := e.drain()
			if len(got) == 0 {
				t.Fatal("nothing published")
			}
			for _, m := range got {
				if string(m.Msg) != tt.want {
					t.Errorf("message %q, want %q", m.Msg, tt.want)
				}
			}
		})
	}
}

func TestPushRoomAndAll(t *testing.T) {
	room := func(op int32, room, msg string) *pb.PushMsg {
		return &pb.PushMsg{Version: 1, CreatedAt: fixedNow.UnixMilli(), Type: pb.PushMsg_ROOM, Operation: op, Room: room, Msg: []byte(msg)}
	}
	all := func(op, speed int32, msg string) *pb.PushMsg {
		return &pb.PushMsg{Version: 1, CreatedAt: fixedNow.UnixMilli(), Type: pb.PushMsg_BROADCAST, Operation: op, Speed: speed, Msg: []byte(msg)}
	}
	tests := []struct {
		name     string
		target   string
		sessions int64
		want     *pb.PushMsg
	}{
		{"goim room", "/goim/push/room?operation=1000&type=live&room=1000", 7, room(1000, "live://1000", "hello-room")},
		{"im room", "/im/push/room?type=test&room=1", 4, room(1000, "test://1", "hello-room")},
		{"empty room", "/goim/push/room?operation=1234&type=live&room=nobody", 0, room(1234, "live://nobody", "hello-room")},
		{"goim all", "/goim/push/all?operation=1000&speed=0", 20, all(1000, 0, "hello-room")},
		{"goim all with speed", "/goim/push/all?operation=1002&speed=500", 20, all(1002, 500, "hello-room")},
		{"im all", "/im/push/all", 20, all(1000, 0, "hello-room")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.post(tt.target, "application/octet-stream", "hello-room")
			if a.Status != http.StatusOK {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			p := a.push(t)
			if p.Sessions != tt.sessions {
				t.Errorf("sessions = %d, want %d", p.Sessions, tt.sessions)
			}
			got := e.drain()
			if len(got) != 1 {
				t.Fatalf("published %d messages, want 1", len(got))
			}
			tt.want.Id = p.ID
			sameMsg(t, got[0], tt.want)
		})
	}
}

// TestPushOnlineDown: a room or broadcast push stands when its count cannot
// be had; the count is then 0.
func TestPushOnlineDown(t *testing.T) {
	for _, target := range []string{"/goim/push/room?operation=1000&type=live&room=1000", "/im/push/all"} {
		e := newEnv(t, envOpts{})
		e.online.err = errors.New("redis down")
		a := e.post(target, "", "m")
		if a.Status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", target, a.Status, a.Body)
		}
		if p := a.push(t); p.Sessions != 0 {
			t.Errorf("%s: sessions %d, want 0", target, p.Sessions)
		}
		if n := len(e.drain()); n != 1 {
			t.Errorf("%s: published %d, want 1", target, n)
		}
	}
}

// TestMessageSource: msg parameter versus raw body, whatever the
// Content-Type; a form-typed body is a form only if it names a parameter.
func TestMessageSource(t *testing.T) {
	binary := "\x00\xff\x01bin\r\n%zz&="
	mpBinary, mpBinaryBody := multipartForm("msg", binary)
	mpKeys, mpKeysBody := multipartForm("keys", "k2", "msg", "hi")
	mpNoMsg, mpNoMsgBody := multipartForm("keys", "k2")
	mpOther, mpOtherBody := multipartForm("a", "b")
	mpEmpty, mpEmptyBody := multipartForm("msg", "")
	mpCut := mpKeysBody[:len(mpKeysBody)-10]
	tests := []struct {
		name   string
		query  string
		ct     string
		body   string
		want   string
		keys   []string // default k1a
		status int
		errMsg string
	}{
		{"raw, no content type", "", "", "hello", "hello", nil, 200, ""},
		{"raw octet-stream bytes unchanged", "", "application/octet-stream", binary, binary, nil, 200, ""},
		{"raw text/plain", "", "text/plain; charset=utf-8", "a=b&msg=c", "a=b&msg=c", nil, 200, ""},
		{"raw json", "", "application/json", `{"msg":"hi","keys":["x"]}`, `{"msg":"hi","keys":["x"]}`, nil, 200, ""},
		{"curl -d hello is a message", "", "application/x-www-form-urlencoded", "hello", "hello", nil, 200, ""},
		{"form-typed json is a message", "", "application/x-www-form-urlencoded", `{"a":"b=c"}`, `{"a":"b=c"}`, nil, 200, ""},
		{"form-typed, bad escape, is a message", "", "application/x-www-form-urlencoded", "100% msg=x", "100% msg=x", nil, 200, ""},
		{"form naming msg, bad escape, is refused", "", "application/x-www-form-urlencoded", "msg=50%off", "", nil, 400,
			`form body: invalid URL escape "%of" (percent-encode the values, or send the message raw with another Content-Type)`},
		{"form-typed, no known names, is a message", "", "application/x-www-form-urlencoded", "a=b", "a=b", nil, 200, ""},
		{"form-typed json holding &msg= is a message", "", "application/x-www-form-urlencoded", `{"text":"see /chat?room=5&msg=hello"}`,
			`{"text":"see /chat?room=5&msg=hello"}`, nil, 200, ""},
		{"form-typed json holding &id= is a message", "", "application/x-www-form-urlencoded", `{"url":"/x?a=1&id=a b"}`, `{"url":"/x?a=1&id=a b"}`, nil, 200, ""},
		{"form-typed json with a bad escape holding &msg= is a message", "", "application/x-www-form-urlencoded", `{"a":"100%"}&msg=5`, `{"a":"100%"}&msg=5`, nil, 200, ""},
		{"a sentence holding &msg= is a message", "", "application/x-www-form-urlencoded", "fish & chips&msg=x", "fish & chips&msg=x", nil, 200, ""},
		{"form with fields of its own", "", "application/x-www-form-urlencoded", "sign=ab12&app_id=7&msg=hi", "hi", nil, 200, ""},
		{"form with msg", "", "application/x-www-form-urlencoded", "msg=hi%20there", "hi there", nil, 200, ""},
		{"form content type is case-insensitive", "", "Application/X-WWW-Form-Urlencoded;charset=UTF-8", "msg=hi", "hi", nil, 200, ""},
		{"form keys merge with query", "", "application/x-www-form-urlencoded", "keys=k2&msg=hi", "hi", []string{"k1a", "k2"}, 200, ""},
		{"query msg, form body of params", "&msg=q", "application/x-www-form-urlencoded", "keys=k2", "q", []string{"k1a", "k2"}, 200, ""},
		{"query msg, form-typed body not a form", "&msg=q", "application/x-www-form-urlencoded", "hello", "q", nil, 200, ""},
		{"multipart msg bytes unchanged", "", mpBinary, mpBinaryBody, binary, nil, 200, ""},
		{"multipart keys merge with query", "", mpKeys, mpKeysBody, "hi", []string{"k1a", "k2"}, 200, ""},
		{"multipart content type is case-insensitive", "", strings.ToUpper(mpKeys[:19]) + mpKeys[19:], mpKeysBody, "hi", []string{"k1a", "k2"}, 200, ""},
		{"multipart, no known names, is a message", "", mpOther, mpOtherBody, mpOtherBody, nil, 200, ""},
		{"multipart without boundary is a message", "", "multipart/form-data", "hello", "hello", nil, 200, ""},
		{"multipart, no parts, is a message", "", mpKeys, "hello", "hello", nil, 200, ""},
		{"multipart cut short is a message", "", mpKeys, mpCut, mpCut, nil, 200, ""},
		{"query msg, multipart of params", "&msg=q", mpNoMsg, mpNoMsgBody, "q", []string{"k1a", "k2"}, 200, ""},
		{"multipart of params without msg", "", mpNoMsg, mpNoMsgBody, "", nil, 400, "msg: required when the parameters come in a form body (msg= pushes the op alone)"},
		{"query msg wins over raw body", "&msg=from%20query", "text/plain", "ignored", "from query", nil, 200, ""},
		{"query msg, empty body", "&msg=q", "", "", "q", nil, 200, ""},
		{"empty msg param falls back to body", "&msg=", "", "body", "body", nil, 200, ""},
		{"form of params without msg", "", "application/x-www-form-urlencoded", "keys=k2", "", nil, 400, "msg: required when the parameters come in a form body (msg= pushes the op alone)"},
		{"form msg= pushes the op alone", "", "application/x-www-form-urlencoded", "keys=k2&msg=", "", []string{"k1a", "k2"}, 200, ""},
		{"multipart empty msg pushes the op alone", "", mpEmpty, mpEmptyBody, "", nil, 200, ""},
		{"a bare word naming a parameter is a message", "", "application/x-www-form-urlencoded", "keys", "keys", nil, 200, ""},
		{"bare words naming parameters are a message", "", "application/x-www-form-urlencoded", "keys&msg", "keys&msg", nil, 200, ""},
		{"a bare word beside a form", "", "application/x-www-form-urlencoded", "keys&msg=hi", "hi", nil, 200, ""},
		{"another route's parameter is a message", "", "application/x-www-form-urlencoded", "room=full", "room=full", nil, 200, ""},
		{"form with a trailing &", "", "application/x-www-form-urlencoded", "msg=hi&", "hi", nil, 200, ""},
		{"form with a leading &", "", "application/x-www-form-urlencoded", "&msg=hi", "hi", nil, 200, ""},
		{"form with an empty pair", "", "application/x-www-form-urlencoded", "keys=k2&&msg=hi", "hi", []string{"k1a", "k2"}, 200, ""},
		{"empty body: the op alone", "", "", "", "", nil, 200, ""},
		{"empty form-typed body: the op alone", "", "application/x-www-form-urlencoded", "", "", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.post("/goim/push/keys?operation=1000&keys=k1a"+tt.query, tt.ct, tt.body)
			if a.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.Status, tt.status, a.Body)
			}
			if tt.status != http.StatusOK {
				if a.Message != tt.errMsg {
					t.Errorf("message %q, want %q", a.Message, tt.errMsg)
				}
				return
			}
			keys := tt.keys
			if keys == nil {
				keys = []string{"k1a"}
			}
			p := a.push(t)
			got := e.drain()
			if len(got) != 1 {
				t.Fatalf("published %d messages, want 1", len(got))
			}
			sameMsg(t, got[0], pushMsg(p.ID, 1000, "n1", tt.want, keys...))
		})
	}
}

func TestPushErrors(t *testing.T) {
	cfg := Config{MaxIDs: 3}
	tests := []struct {
		name   string
		target string
		status int
		msg    string
	}{
		{"goim missing operation", "/goim/push/mids?mids=1", 400, "operation: required (an integer >= 1000)"},
		{"goim empty operation", "/goim/push/room?operation=&type=a&room=b", 400, "operation: required (an integer >= 1000)"},
		{"goim all missing operation", "/goim/push/all", 400, "operation: required (an integer >= 1000)"},
		{"non-numeric operation", "/goim/push/mids?operation=abc&mids=1", 400, `operation: must be an integer >= 1000, got "abc"`},
		{"im non-numeric operation", "/im/push/keys?operation=abc&keys=k", 400, `operation: must be an integer >= 1000, got "abc"`},
		{"operation below 1000", "/goim/push/keys?operation=999&keys=k", 400, `operation: must be an integer >= 1000, got "999"`},
		{"operation over int32", "/goim/push/all?operation=2147483648", 400, `operation: must be an integer >= 1000, got "2147483648"`},
		{"room given twice", "/goim/push/room?operation=1000&type=live&room=1&room=2", 400, `room: given more than once, with different values ("1" and "2")`},
		{"operation given twice", "/goim/push/all?operation=1000&operation=1001", 400, `operation: given more than once, with different values ("1000" and "1001")`},
		{"id given twice", "/goim/push/all?operation=1000&id=a&id=b", 400, `id: given more than once, with different values ("a" and "b")`},
		{"missing mids", "/goim/push/mids?operation=1000", 400, "mids: at least one is required"},
		{"empty mids", "/im/push/mids?mids=,,&mids[]=", 400, "mids: at least one is required"},
		{"bad mid", "/goim/push/mids?operation=1000&mids=1,x2", 400, `mids: must be 64-bit integers, got "x2"`},
		{"mid over int64", "/goim/push/mids?operation=1000&mids=9223372036854775808", 400, `mids: must be 64-bit integers, got "9223372036854775808"`},
		{"too many mids counting 0", "/goim/push/mids?operation=1000&mids=1,2,3,0", 400, "mids: at most 3 distinct values allowed per request"},
		{"too many mids", "/goim/push/mids?operation=1000&mids=1,2,3,4", 400, "mids: at most 3 distinct values allowed per request"},
		{"missing keys", "/goim/push/keys?operation=1000", 400, "keys: at least one is required"},
		{"too many keys", "/goim/push/keys?operation=1000&keys=a&keys=b&keys[]=c,d", 400, "keys: at most 3 distinct values allowed per request"},
		{"key too long", "/goim/push/keys?operation=1000&keys=" + strings.Repeat("k", 129), 400, `keys: "` + strings.Repeat("k", 64) + `"... is longer than 128 bytes`},
		{"missing type", "/goim/push/room?operation=1000&room=1000", 400, "type: required"},
		{"missing room", "/im/push/room?type=live", 400, "room: required"},
		{"room id too long", "/im/push/room?type=live&room=" + strings.Repeat("r", 300), 400, "type and room: room id longer than 256 bytes"},
		{"negative speed", "/goim/push/all?operation=1000&speed=-1", 400, `speed: must be an integer >= 0, got "-1"`},
		{"malformed query", "/goim/push/mids?operation=1000&mids=1&mids=%zz", 400, `query string: invalid URL escape "%zz"`},
		{"semicolon in query", "/goim/push/mids?operation=1000&mids=1;2", 400, "query string: invalid semicolon separator in query"},
		{"bad speed", "/im/push/all?speed=fast", 400, `speed: must be an integer >= 0, got "fast"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{cfg: cfg})
			a := e.post(tt.target, "", "body")
			if a.Status != tt.status || a.Message != tt.msg {
				t.Errorf("got %d %q, want %d %q", a.Status, a.Message, tt.status, tt.msg)
			}
			if n := e.q.Len(); n != 0 {
				t.Errorf("%d messages published by a refused push", n)
			}
		})
	}
}

// TestTooManyAfterDedup: the id limit counts distinct ids.
func TestTooManyAfterDedup(t *testing.T) {
	e := newEnv(t, envOpts{cfg: Config{MaxIDs: 2}})
	a := e.post("/goim/push/mids?operation=1000&mids=1,1,1,2,2&mids[]=1", "", "m")
	if a.Status != http.StatusOK {
		t.Fatalf("status %d: %s", a.Status, a.Body)
	}
}

// countingReader yields n bytes of 'x' and counts what was read.
type countingReader struct{ n, read int }

func (r *countingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n)
	for i := range k {
		p[i] = 'x'
	}
	r.n -= k
	r.read += k
	return k, nil
}

func TestTooLarge(t *testing.T) {
	const max = 100
	fits := strings.Repeat("m", max)
	over := fits + "m"
	mpType, mpFits := multipartForm("msg", fits)
	_, mpOver := multipartForm("msg", over)
	_, mpHuge := multipartForm("msg", strings.Repeat("m", 9000))
	tests := []struct {
		name   string
		target string
		ct     string
		body   io.Reader
		status int
		msg    string
	}{
		{"raw at the limit", "/goim/push/keys?operation=1000&keys=k1a", "", strings.NewReader(fits), 200, ""},
		{"raw over, Content-Length", "/goim/push/keys?operation=1000&keys=k1a", "", strings.NewReader(over), 413, "request body larger than 100 bytes"},
		{"raw over, chunked", "/goim/push/keys?operation=1000&keys=k1a", "", io.MultiReader(strings.NewReader(over)), 413, "request body larger than 100 bytes"},
		{"query msg over", "/goim/push/keys?operation=1000&keys=k1a&msg=" + over, "", http.NoBody, 413, "message larger than 100 bytes"},
		{"form msg at the limit", "/goim/push/keys?operation=1000&keys=k1a", "application/x-www-form-urlencoded", strings.NewReader("msg=" + fits), 200, ""},
		{"form msg over", "/goim/push/keys?operation=1000&keys=k1a", "application/x-www-form-urlencoded", strings.NewReader("msg=" + over), 413, "message larger than 100 bytes"},
		{"form-typed raw over", "/goim/push/keys?operation=1000&keys=k1a", "application/x-www-form-urlencoded", strings.NewReader(over), 413, "message larger than 100 bytes"},
		{"multipart msg at the limit", "/goim/push/keys?operation=1000&keys=k1a", mpType, strings.NewReader(mpFits), 200, ""},
		{"multipart msg over", "/goim/push/keys?operation=1000&keys=k1a", mpType, strings.NewReader(mpOver), 413, "message larger than 100 bytes"},
		{"multipart body over its limit", "/goim/push/keys?operation=1000&keys=k1a", mpType, io.MultiReader(strings.NewReader(mpHuge)), 413, "request body larger than 8868 bytes"},
		{"form body over its limit", "/goim/push/keys?operation=1000&keys=k1a", "application/x-www-form-urlencoded", io.MultiReader(strings.NewReader("msg=" + strings.Repeat("m", 5000))), 413, "request body larger than 4588 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{cfg: Config{MaxMessage: max, MaxIDs: 3}})
			a := e.do(http.MethodPost, tt.target, tt.ct, tt.body)
			if a.Status != tt.status || a.Message != tt.msg {
				t.Errorf("got %d %q, want %d %q", a.Status, a.Message, tt.status, tt.msg)
			}
		})
	}
}

// TestTooLargeNotReadWhole: an oversized body is cut off at the limit, over
// a real server too.
func TestTooLargeNotReadWhole(t *testing.T) {
	e := newEnv(t, envOpts{cfg: Config{MaxMessage: 1000}})
	r := &countingReader{n: 10 << 20}
	a := e.do(http.MethodPost, "/goim/push/keys?operation=1000&keys=k1a", "", r)
	if a.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", a.Status, a.Body)
	}
	if r.read > 64<<10 {
		t.Errorf("read %d bytes of a 10 MiB body with a 1000-byte limit", r.read)
	}

	srv := httptest.NewServer(e.h)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/goim/push/keys?operation=1000&keys=k1a", "text/plain", bytes.NewReader(make([]byte, 5000)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != contentType {
		t.Errorf("real server: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if want := `{"code":-413,"message":"request body larger than 1000 bytes"}`; string(body) != want {
		t.Errorf("body %s, want %s", body, want)
	}
}

func TestBackendsDown(t *testing.T) {
	t.Run("queue full", func(t *testing.T) {
		e := newEnv(t, envOpts{queue: 1})
		if err := e.q.Publish(context.Background(), pushMsg("x", 1000, "n1", "m", "k")); err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{
			"/goim/push/mids?operation=1000&mids=1",
			"/goim/push/keys?operation=1000&keys=k2",
			"/im/push/room?type=live&room=1",
			"/im/push/all",
		} {
			a := e.post(target, "", "m")
			if a.Status != http.StatusServiceUnavailable || a.Message != "push queue full, retry later" {
				t.Errorf("%s: %d %q", target, a.Status, a.Message)
			}
			if got := a.Header.Get("Retry-After"); got != "1" {
				t.Errorf("%s: Retry-After %q, want 1", target, got)
			}
		}
	})
	t.Run("queue closed", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		_ = e.q.Close()
		a := e.post("/im/push/all", "", "m")
		if a.Status != http.StatusServiceUnavailable || a.Message != "push queue unavailable" {
			t.Errorf("%d %q", a.Status, a.Message)
		}
	})
	t.Run("sessions down", func(t *testing.T) {
		e := newEnv(t, envOpts{sessions: failingSessions{}})
		for _, target := range []string{"/goim/push/mids?operation=1000&mids=1", "/im/push/keys?keys=k2"} {
			a := e.post(target, "", "m")
			if a.Status != http.StatusServiceUnavailable || a.Message != "session store unavailable" {
				t.Errorf("%s: %d %q", target, a.Status, a.Message)
			}
		}
	})
	t.Run("registry down", func(t *testing.T) {
		e := newEnv(t, envOpts{nodes: failingNodes{}})
		for _, a := range []answer{
			e.post("/goim/push/mids?operation=1000&mids=1", "", "m"),
			e.post("/goim/push/keys?operation=1000&keys=k1a", "", "m"),
			e.do(http.MethodGet, "/goim/nodes/instances", "", nil),
			e.do(http.MethodGet, "/im/nodes/weighted", "", nil),
		} {
			if a.Status != http.StatusServiceUnavailable || a.Message != "node registry unavailable" {
				t.Errorf("%d %q", a.Status, a.Message)
			}
		}
		// An offline user needs no registry.
		if a := e.post("/goim/push/mids?operation=1000&mids=999", "", "m"); a.Status != http.StatusOK {
			t.Errorf("offline user with the registry down: %d %s", a.Status, a.Body)
		}
	})
	t.Run("online down", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.online.err = errors.New("redis down")
		for _, target := range []string{"/goim/online/top?type=live&limit=1", "/goim/online/room?type=live&rooms=1", "/im/online/total"} {
			a := e.do(http.MethodGet, target, "", nil)
			if a.Status != http.StatusServiceUnavailable || a.Message != "online store unavailable" {
				t.Errorf("%s: %d %q", target, a.Status, a.Message)
			}
		}
	})
	t.Run("request canceled", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/im/push/all", strings.NewReader("m"))
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "canceled") {
			t.Errorf("%d %s", rec.Code, rec.Body)
		}
	})
}

// TestPublishPartial: a publish failing after others answers 503; the
// messages already published stand.
func TestPublishPartial(t *testing.T) {
	e := newEnv(t, envOpts{queue: 1})
	a := e.post("/goim/push/mids?operation=1000&mids=1", "", "m") // n1 fits, n2 does not
	if a.Status != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", a.Status, a.Body)
	}
	got := e.drain()
	if len(got) != 1 || got[0].Server != "n1" {
		t.Errorf("published %v, want n1's message only", got)
	}
}

// TestPushIDs: ids are unique, 24 hex digits and ordered by creation even
// under one clock reading.
func TestPushIDs(t *testing.T) {
	g := newIDGen("node-a")
	prev := ""
	for range 1000 {
		id := g.next(fixedNow)
		if len(id) != 24 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not 24 hex digits", id)
		}
		if id <= prev {
			t.Fatalf("id %q not after %q", id, prev)
		}
		prev = id
	}
	// Concurrent callers never share an id.
	seen := make(chan string, 4000)
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 1000 {
				seen <- g.next(fixedNow)
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	close(seen)
	ids := map[string]bool{}
	for id := range seen {
		if ids[id] {
			t.Fatalf("duplicate id %q", id)
		}
		ids[id] = true
	}
	// One request's messages share the id; two requests do not.
	e := newEnv(t, envOpts{})
	a1 := e.post("/goim/push/mids?operation=1000&mids=1", "", "m").push(t)
	a2 := e.post("/goim/push/mids?operation=1000&mids=1", "", "m").push(t)
	if a1.ID == a2.ID {
		t.Errorf("two pushes share id %q", a1.ID)
	}
	for _, m := range e.drain() {
		if m.Id != a1.ID && m.Id != a2.ID {
			t.Errorf("message id %q is neither answer's", m.Id)
		}
	}
}

// TestCallerPushID: the caller may name the push (its id is then the push id, so
// a retry is delivered once); a bad id is a 400.
func TestCallerPushID(t *testing.T) {
	tests := []struct {
		name, target, ct, body string
		status                 int
		wantID                 string
	}{
		{"query id", "/goim/push/room?operation=1000&type=live&room=1&id=order-42:a.b_c", "", "m", 200, "order-42:a.b_c"},
		{"form id", "/goim/push/all?operation=1000", "application/x-www-form-urlencoded", "id=x1&msg=m", 200, "x1"},
		{"mids", "/im/push/mids?mids=1&id=retry-1", "", "m", 200, "retry-1"},
		{"bad character", "/goim/push/all?operation=1000&id=a%20b", "", "m", 400, ""},
		{"too long", "/goim/push/all?operation=1000&id=" + strings.Repeat("i", 65), "", "m", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.post(tt.target, tt.ct, tt.body)
			if a.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.Status, tt.status, a.Body)
			}
			if tt.status != http.StatusOK {
				if !strings.HasPrefix(a.Message, "id: ") {
					t.Errorf("message %q does not name the id parameter", a.Message)
				}
				return
			}
			var p pushAnswer
			if err := json.Unmarshal(a.Data, &p); err != nil || p.ID != tt.wantID {
				t.Errorf("answered %s (%v), want id %q", a.Data, err, tt.wantID)
			}
			for _, m := range e.drain() {
				if m.Id != tt.wantID {
					t.Errorf("published id %q, want %q", m.Id, tt.wantID)
				}
			}
		})
	}
}

// flakyProducer fails the publishes numbered in fail (from 1) with err.
type flakyProducer struct {
	err   error
	fail  map[int]bool
	calls int
}

func (p *flakyProducer) Publish(context.Context, *pb.PushMsg) error {
	p.calls++
	if p.fail[p.calls] {
		return p.err
	}
	return nil
}

// TestQueueFailureSaysIfDeliveryMayFollow: a publish that timed out, or a
// push to several nodes of which some were published, may still be
// delivered; the 503 says so and how to retry without a duplicate. A
// publish refused outright says nothing of the kind.
func TestQueueFailureSaysIfDeliveryMayFollow(t *testing.T) {
	const may = "may still be delivered: retry with id="
	tests := []struct {
		name    string
		target  string
		err     error
		fail    map[int]bool
		wantMay bool
	}{
		{"timed out", "/goim/push/room?operation=1000&type=live&room=1&id=r1", fmt.Errorf("no ack: %w", context.DeadlineExceeded), map[int]bool{1: true}, true},
		{"refused", "/goim/push/room?operation=1000&type=live&room=1&id=r1", queue.ErrUnavailable, map[int]bool{1: true}, false},
		{"second node refused", "/goim/push/mids?operation=1000&mids=1&id=r1", queue.ErrUnavailable, map[int]bool{2: true}, true},
		{"first node refused", "/goim/push/mids?operation=1000&mids=1&id=r1", queue.ErrUnavailable, map[int]bool{1: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := postWithProducer(t, tt.target, &flakyProducer{err: tt.err, fail: tt.fail})
			if a.Status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503: %s", a.Status, a.Body)
			}
			if got := strings.Contains(a.Message, may+"r1"); got != tt.wantMay {
				t.Errorf("message %q: says delivery may follow = %v, want %v", a.Message, got, tt.wantMay)
			}
		})
	}
}

// postWithProducer posts target ("m" as the message) to a logic whose
// queue is p.
func postWithProducer(t *testing.T, target string, p Producer) answer {
	t.Helper()
	e := newEnv(t, envOpts{})
	l, err := New(Config{}, e.st, p, e.reg, e.online, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.h = l.Handler()
	return e.post(target, "", "m")
}

// TestQueueTooLarge: a push the queue can never take (over Kafka's record
// size) is a 413 that says what to change, not a 503 to retry.
func TestQueueTooLarge(t *testing.T) {
	tooLarge := fmt.Errorf("publish: %w", queue.ErrTooLarge)
	tests := []struct {
		name, target string
		fail         map[int]bool
		want         string
	}{
		{"room", "/goim/push/room?operation=1000&type=live&room=1&id=r1", map[int]bool{1: true},
			"push too large for the push queue: send a shorter message or fewer keys per request"},
		{"second node", "/goim/push/mids?operation=1000&mids=1&id=r1", map[int]bool{2: true},
			"push too large for the push queue: send a shorter message or fewer keys per request; push r1 was queued for some of the keys' nodes already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := postWithProducer(t, tt.target, &flakyProducer{err: tooLarge, fail: tt.fail})
			if a.Status != http.StatusRequestEntityTooLarge || a.Message != tt.want {
				t.Errorf("%d %q, want 413 %q", a.Status, a.Message, tt.want)
			}
		})
	}
}

// TestMaxIDsAsRepeatedParams: logic.max_ids ids may come as that many
// repeated parameters beside the others, in the query or a form body
// (net/url's own default cap is 10,000 parameters in all; go.mod raises it).
func TestMaxIDsAsRepeatedParams(t *testing.T) {
	const n = 10000
	var q strings.Builder
	q.WriteString("operation=1000")
	for i := range n {
		fmt.Fprintf(&q, "&keys=k%d", i)
	}
	e := newEnv(t, envOpts{cfg: Config{MaxIDs: n}})
	if a := e.post("/goim/push/keys?"+q.String(), "", "m"); a.Status != http.StatusOK {
		t.Errorf("query of %d keys: %d %s", n, a.Status, a.Message)
	}
	if a := e.post("/goim/push/keys", "application/x-www-form-urlencoded", q.String()+"&msg=m"); a.Status != http.StatusOK {
		t.Errorf("form of %d keys: %d %s", n, a.Status, a.Message)
	}
}
