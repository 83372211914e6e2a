package logic

import (
	"net/http"
	"strings"
	"testing"
)

// TestEveryEndpoint answers 200 with the JSON envelope on both prefixes.
func TestEveryEndpoint(t *testing.T) {
	endpoints := []struct {
		method string
		path   string // after the prefix
		query  string
		body   string
	}{
		{http.MethodPost, "push/keys", "operation=1000&keys=k1a", "m"},
		{http.MethodPost, "push/mids", "operation=1000&mids=1", "m"},
		{http.MethodPost, "push/room", "operation=1000&type=live&room=1000", "m"},
		{http.MethodPost, "push/all", "operation=1000", "m"},
		{http.MethodGet, "online/top", "type=live&limit=10", ""},
		{http.MethodGet, "online/room", "type=live&rooms=1000", ""},
		{http.MethodGet, "online/total", "", ""},
		{http.MethodGet, "nodes/weighted", "platform=web", ""},
		{http.MethodGet, "nodes/instances", "", ""},
	}
	for _, prefix := range []string{"/goim/", "/im/"} {
		for _, ep := range endpoints {
			target := prefix + ep.path + "?" + ep.query
			t.Run(target, func(t *testing.T) {
				e := newEnv(t, envOpts{})
				a := e.do(ep.method, target, "", strings.NewReader(ep.body))
				if a.Status != http.StatusOK || a.Code != 0 || a.Message != "" || a.Data == nil {
					t.Errorf("%d %s", a.Status, a.Body)
				}
				if ep.method == http.MethodGet {
					h := e.do(http.MethodHead, target, "", nil)
					if h.Status != http.StatusOK {
						t.Errorf("HEAD: %d", h.Status)
					}
					if h.Header.Get("Content-Length") != a.Header.Get("Content-Length") {
						t.Errorf("HEAD Content-Length %s, GET %s", h.Header.Get("Content-Length"), a.Header.Get("Content-Length"))
					}
				}
			})
		}
	}
}

func TestRouting(t *testing.T) {
	tests := []struct {
		method string
		target string
		status int
		allow  string
		msg    string
	}{
		{http.MethodGet, "/goim/push/mids?operation=1000&mids=1", 405, "POST", `method "GET" not allowed on /goim/push/mids, use POST`},
		{http.MethodHead, "/im/push/all", 405, "POST", ""},
		{http.MethodPut, "/im/push/room", 405, "POST", `method "PUT" not allowed on /im/push/room, use POST`},
		{http.MethodPost, "/goim/online/top?type=live&limit=1", 405, "GET, HEAD", `method "POST" not allowed on /goim/online/top, use GET, HEAD`},
		{http.MethodDelete, "/im/nodes/instances", 405, "GET, HEAD", `method "DELETE" not allowed on /im/nodes/instances, use GET, HEAD`},
		{http.MethodOptions, "/goim/nodes/weighted", 405, "GET, HEAD", `method "OPTIONS" not allowed on /goim/nodes/weighted, use GET, HEAD`},
		{http.MethodGet, "/", 404, "", `no such endpoint: "/"`},
		{http.MethodPost, "/goim/push/nothing", 404, "", `no such endpoint: "/goim/push/nothing"`},
		{http.MethodPost, "/goim/push/mids/", 404, "", `no such endpoint: "/goim/push/mids/"`},
		{http.MethodGet, "/GOIM/online/total", 404, "", `no such endpoint: "/GOIM/online/total"`},
		{http.MethodGet, "/push/mids", 404, "", `no such endpoint: "/push/mids"`},
		{http.MethodHead, "/nothing", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.do(tt.method, tt.target, "", nil)
			if a.Status != tt.status {
				t.Errorf("status %d, want %d", a.Status, tt.status)
			}
			if got := a.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if tt.msg != "" && a.Message != tt.msg {
				t.Errorf("message %q, want %q", a.Message, tt.msg)
			}
			if e.q.Len() != 0 {
				t.Error("a refused request published")
			}
		})
	}
}

// TestExactBytes pins whole answers: goim's envelope, no trailing newline.
func TestExactBytes(t *testing.T) {
	e := newEnv(t, envOpts{})
	tests := []struct {
		method, target, want string
	}{
		{http.MethodGet, "/goim/online/total", `{"code":0,"message":"","data":{"conn_count":20,"ip_count":3}}`},
		{http.MethodGet, "/goim/online/room?type=test&rooms=1&rooms=2", `{"code":0,"message":"","data":{"1":4,"2":0}}`},
		{http.MethodGet, "/goim/online/top?type=test&limit=10", `{"code":0,"message":"","data":[{"room_id":"1","count":4}]}`},
		{http.MethodPost, "/goim/push/room?room=1000", `{"code":-400,"message":"operation: required (an integer >= 1000)"}`},
		{http.MethodGet, "/nope", `{"code":-404,"message":"no such endpoint: \"/nope\""}`},
	}
	for _, tt := range tests {
		a := e.do(tt.method, tt.target, "", strings.NewReader("m"))
		if string(a.Body) != tt.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tt.method, tt.target, a.Body, tt.want)
		}
	}
}
