package ws

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// AcceptOptions configures the upgrade.
type AcceptOptions struct {
	// OriginPatterns are allowed Origin hosts (path.Match patterns); empty
	// allows any Origin, since auth is by the first frame, not by cookies.
	// The request's own host is always allowed.
	OriginPatterns []string
	// Subprotocols are the Sec-WebSocket-Protocol values the server speaks,
	// in its order of preference; the first one the client offers is
	// selected. A client that offers only others gets none, which RFC 6455
	// lets it refuse; goim's clients offer none.
	Subprotocols []string
	MaxBody      int
}

// ErrHandshake is wrapped by every refused upgrade.
var ErrHandshake = errors.New("ws: bad handshake")

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Accept upgrades an HTTP request to a WebSocket connection. On failure the
// HTTP answer is already written.
func Accept(w http.ResponseWriter, r *http.Request, o AcceptOptions) (*Conn, error) {
	h := HeadOf(r)
	key, status, err := checkRequest(h, o.OriginPatterns)
	if err != nil {
		if status == http.StatusUpgradeRequired {
			// RFC 9110 section 15.5.22: a 426 names the protocol to upgrade
			// to, and an Upgrade header goes with the upgrade option in
			// Connection (section 7.8).
			w.Header().Set("Upgrade", "websocket")
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		if status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodGet) // RFC 9110 section 15.5.6
		}
		http.Error(w, err.Error(), status)
		return nil, err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket: connection cannot be upgraded", http.StatusInternalServerError)
		return nil, fmt.Errorf("%w: response writer cannot hijack", ErrHandshake)
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("ws: hijack: %w", err)
	}
	return finish(nc, key, selectSubprotocol(h.Protocol, o.Subprotocols), brw.Reader, r.RemoteAddr, o)
}

// Upgrade is Accept for a connection served without net/http: the request
// whose head is h was read from nc through br (ParseHead, or HeadOf of
// http.ReadRequest's), and whatever br holds beyond it is the start of the
// WebSocket stream. A request that is not a valid upgrade is answered with
// its HTTP status, and nc is closed.
func Upgrade(nc net.Conn, h Head, br *bufio.Reader, o AcceptOptions) (*Conn, error) {
	key, status, err := checkRequest(h, o.OriginPatterns)
	if err != nil {
		extra := ""
		switch status {
		case http.StatusUpgradeRequired:
			extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
		case http.StatusMethodNotAllowed:
			extra = "Allow: GET\r\n" // RFC 9110 section 15.5.6
		}
		Refuse(nc, status, extra, err.Error())
		return nil, err
	}
	return finish(nc, key, selectSubprotocol(h.Protocol, o.Subprotocols), br, h.RemoteAddr, o)
}

// Refuse writes a plain-text HTTP error response (extra: more header lines,
// each ending in CRLF) and closes nc. A 426's Connection header holds the
// upgrade option too, which its Upgrade header (in extra) calls for.
func Refuse(nc net.Conn, status int, extra, msg string) {
	body := msg + "\n"
	connection := "close"
	if status == http.StatusUpgradeRequired {
		connection = "Upgrade, close"
	}
	resp := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: " + connection + "\r\n" +
		extra + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(nc, resp)
	_ = nc.Close()
}

// finish writes the 101 answer (with protocol, if one was selected) and
// wraps nc; what br holds beyond the request is kept, since a client may
// send its first frame right behind the handshake.
func finish(nc net.Conn, key, protocol string, br *bufio.Reader, remote string, o AcceptOptions) (*Conn, error) {
	var pending []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		pending = append([]byte(nil), b...)
	}
	// The server's read deadline may still be set from the HTTP request.
	_ = nc.SetDeadline(time.Time{})
	selected := ""
	if protocol != "" {
		selected = "Sec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(key) + "\r\n" + selected + "\r\n"
	_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte(resp)); err != nil {
		nc.Close()
		return nil, fmt.Errorf("ws: write handshake: %w", err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return newConn(nc, o.MaxBody, remote, pending), nil
}

// checkRequest validates an upgrade request and returns its key, or the
// status to refuse it with.
func checkRequest(h Head, origins []string) (string, int, error) {
	if h.Invalid != "" {
		return "", http.StatusBadRequest, fmt.Errorf("%w: %s", ErrHandshake, h.Invalid)
	}
	if h.Method != http.MethodGet {
		return "", http.StatusMethodNotAllowed, fmt.Errorf("%w: method %s, want GET", ErrHandshake, h.Method)
	}
	if !hasToken(h.Connection, "upgrade") || !hasToken(h.Upgrade, "websocket") {
		return "", http.StatusUpgradeRequired, fmt.Errorf("%w: not a websocket upgrade", ErrHandshake)
	}
	if h.Version != "13" {
		return "", http.StatusUpgradeRequired, fmt.Errorf("%w: Sec-WebSocket-Version %q, want 13", ErrHandshake, h.Version)
	}
	key := strings.TrimSpace(h.Key)
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return "", http.StatusBadRequest, fmt.Errorf("%w: invalid Sec-WebSocket-Key", ErrHandshake)
	}
	if err := checkOrigin(h, origins); err != nil {
		return "", http.StatusForbidden, err
	}
	return key, 0, nil
}

func checkOrigin(h Head, patterns []string) error {
	if len(patterns) == 0 || h.Origin == "" {
		return nil
	}
	u, err := url.Parse(h.Origin)
	if err != nil {
		return fmt.Errorf("%w: bad Origin %q", ErrHandshake, h.Origin)
	}
	if strings.EqualFold(u.Host, h.Host) {
		return nil
	}
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return nil
		}
	}
	return fmt.Errorf("%w: Origin %q not allowed", ErrHandshake, h.Origin)
}

// selectSubprotocol picks the first of the server's protocols that the
// client's comma-separated offer holds (case-sensitive, as RFC 6455 says),
// or "" for none.
func selectSubprotocol(offer string, supported []string) string {
	if offer == "" {
		return ""
	}
	for _, p := range supported {
		for o := range strings.SplitSeq(offer, ",") {
			if strings.TrimSpace(o) == p {
				return p
			}
		}
	}
	return ""
}

// hasToken reports whether a comma-separated header value holds token.
func hasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

func acceptKey(key string) string {
	s := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(s[:])
}
