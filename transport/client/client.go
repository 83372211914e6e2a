package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/imcloud/imcloud/protocol"
)

const (
	defaultTimeout = 5 * time.Second
	defaultMaxBody = 1 << 20
	// readBufSize is the TCP read buffer: frames up to this size (the server's
	// default inbound limit plus the header) are peeked whole before they are
	// consumed, so a read deadline never leaves half a frame behind.
	readBufSize = protocol.DefaultMaxBody + protocol.HeaderLen
	// maxKeptWriteBuf bounds the write buffer kept between sends.
	maxKeptWriteBuf = 64 << 10
)

// ErrAuth is wrapped by Dial's error when the connection was made but the
// server did not accept the Auth frame: it closed the connection, sent another
// op first, sent garbage, or did not answer within Options.Timeout.
var ErrAuth = errors.New("client: auth not accepted")

// Options configures Dial and DialRaw.
type Options struct {
	Network string // "tcp" (the default) or "ws"
	// Addr is host:port for TCP; for WebSocket a full URL (ws://host:port/sub,
	// or wss://); a WebSocket Addr without "://" is taken as ws://Addr/sub.
	Addr string
	// LocalAddr is an optional source IP (e.g. 127.0.0.2), or IP:port. With
	// TCP on Linux and no port, IP_BIND_ADDRESS_NO_PORT is set on the socket
	// (via net.Dialer.Control) so many source addresses scale.
	LocalAddr string
	Auth      protocol.Auth // sent as the op-7 JSON body by Dial
	// Timeout bounds dial + the auth reply (on top of Dial's ctx) and each
	// write; default 5s.
	Timeout time.Duration
	// MaxBody limits the body of received frames (an op-9 frame's body is the
	// whole batch); default 1 MiB. Over WebSocket the read limit is MaxBody+16.
	MaxBody int
}

func (o Options) withDefaults() (Options, error) {
	switch o.Network {
	case "":
		o.Network = "tcp"
	case "tcp", "ws":
	default:
		return o, fmt.Errorf("client: unknown network %q (want tcp or ws)", o.Network)
	}
	if o.Addr == "" {
		return o, errors.New("client: no address")
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.MaxBody <= 0 {
		o.MaxBody = defaultMaxBody
	}
	return o, nil
}

// Client is one goim-protocol connection. See the package documentation for
// concurrency and deadline rules.
type Client struct {
	network string
	maxBody int
	timeout time.Duration

	// TCP
	conn net.Conn
	br   *bufio.Reader
	hdr  [protocol.HeaderLen]byte

	// WebSocket
	ws *websocket.Conn

	wmu  sync.Mutex
	wbuf []byte

	// Inner frames of op-9 batches not yet returned by Next (reader only).
	pend []protocol.Frame
	pi   int

	closeOnce sync.Once
	closeErr  error
}

// Dial connects, sends o.Auth as an op-7 frame (ver 1, seq 1) and waits for the
// op-8 reply. It fails, with an error wrapping ErrAuth, if the connection
// closes or any other frame arrives first. o.Timeout bounds the whole call.
func Dial(ctx context.Context, o Options) (*Client, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	body, err := json.Marshal(o.Auth)
	if err != nil {
		return nil, fmt.Errorf("client: encode auth: %w", err)
	}
	c, err := DialRaw(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := c.Send(1, protocol.OpAuth, 1, body); err != nil {
		c.abort()
		return nil, fmt.Errorf("%w: sending auth: %w", ErrAuth, err)
	}
	fs, err := c.NextMessage(ctx)
	if err != nil {
		c.abort()
		return nil, fmt.Errorf("%w: waiting for the auth reply: %w", ErrAuth, err)
	}
	if len(fs) != 1 || fs[0].Op != protocol.OpAuthReply {
		c.abort()
		return nil, fmt.Errorf("%w: got %v before the auth reply", ErrAuth, fs)
	}
	return c, nil
}

// DialRaw only connects: no Auth is sent (for protocol-error tests).
func DialRaw(ctx context.Context, o Options) (*Client, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	d, err := newDialer(o.LocalAddr)
	if err != nil {
		return nil, err
	}
	c := &Client{network: o.Network, maxBody: o.MaxBody, timeout: o.Timeout}
	switch o.Network {
	case "tcp":
		conn, err := d.DialContext(ctx, "tcp", o.Addr)
		if err != nil {
			// net's error already reads "dial tcp <addr>: ...".
			return nil, fmt.Errorf("client: %w", err)
		}
		c.conn = conn
		c.br = bufio.NewReaderSize(conn, readBufSize)
	case "ws":
		u := wsURL(o.Addr)
		// A transport of our own: same dialer (source IP) as TCP, no proxy.
		// After the upgrade the connection leaves the transport for good.
		hc := &http.Client{Transport: &http.Transport{
			DialContext:       d.DialContext,
			ForceAttemptHTTP2: false,
		}}
		ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			return nil, fmt.Errorf("client: dial %s: %w", u, err)
		}
		ws.SetReadLimit(int64(o.MaxBody) + protocol.HeaderLen)
		c.ws = ws
	}
	return c, nil
}

func newDialer(local string) (*net.Dialer, error) {
	d := &net.Dialer{}
	if local == "" {
		return d, nil
	}
	ip, port := net.ParseIP(local), 0
	if ip == nil {
		addr, err := net.ResolveTCPAddr("tcp", local)
		if err != nil || addr.IP == nil {
			return nil, fmt.Errorf("client: bad local address %q: want an IP or IP:port", local)
		}
		ip, port = addr.IP, addr.Port
	}
	d.LocalAddr = &net.TCPAddr{IP: ip, Port: port}
	if port == 0 && bindNoPortControl != nil {
		d.Control = bindNoPortControl
	}
	return d, nil
}

func wsURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "ws://" + addr + "/sub"
}

// Network returns "tcp" or "ws".
func (c *Client) Network() string { return c.network }

// Send writes one frame (over WebSocket, one binary message).
func (c *Client) Send(ver int16, op, seq int32, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = protocol.AppendHeader(c.wbuf[:0], len(body), ver, op, seq)
	c.wbuf = append(c.wbuf, body...)
	err := c.writeLocked(c.wbuf)
	if cap(c.wbuf) > maxKeptWriteBuf {
		c.wbuf = nil
	}
	return err
}

// SendRaw writes arbitrary bytes: TCP writes them as they are, WebSocket sends
// them as one binary message. b is not modified or retained.
func (c *Client) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

// Heartbeat sends an op-2 frame (ver 1, empty body) with seq.
func (c *Client) Heartbeat(seq int32) error {
	return c.Send(1, protocol.OpHeartbeat, seq, nil)
}

func (c *Client) writeLocked(b []byte) error {
	if c.ws != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		if err := c.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
			return fmt.Errorf("client: write: %w", err)
		}
		return nil
	}
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return fmt.Errorf("client: write: %w", err)
	}
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("client: write: %w", err)
	}
	return nil
}

// Next returns the next frame. Op-9 frames are unpacked: their inner frames
// are returned one by one, in order (an empty batch yields nothing).
func (c *Client) Next(ctx context.Context) (protocol.Frame, error) {
	for c.pi == len(c.pend) {
		clear(c.pend)
		c.pend, c.pi = c.pend[:0], 0
		fs, err := c.NextMessage(ctx)
		if err != nil {
			return protocol.Frame{}, err
		}
		for _, f := range fs {
			if f.Op != protocol.OpRaw {
				c.pend = append(c.pend, f)
				continue
			}
			mark := len(c.pend)
			err := protocol.Split(f.Body, func(in protocol.Frame) error {
				c.pend = append(c.pend, in)
				return nil
			})
			if err != nil {
				clear(c.pend[mark:])
				c.pend = c.pend[:mark]
				return protocol.Frame{}, fmt.Errorf("client: bad op-9 batch: %w", err)
			}
		}
	}
	f := c.pend[c.pi]
	c.pend[c.pi] = protocol.Frame{}
	c.pi++
	return f, nil
}

// NextMessage returns the frames exactly as one read produced them, without
// unpacking op 9: over WebSocket one message, which must hold exactly one
// frame (a push is [the op-9 frame]); over TCP one frame per call.
func (c *Client) NextMessage(ctx context.Context) ([]protocol.Frame, error) {
	// An already expired context must not reach the WebSocket library, which
	// would close the connection.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("client: read: %w", err)
	}
	if c.ws != nil {
		typ, msg, err := c.ws.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: read: %w", err)
		}
		if typ != websocket.MessageBinary {
			return nil, fmt.Errorf("client: got a %v WebSocket message, want binary", typ)
		}
		f, err := protocol.DecodeMessage(msg, c.maxBody)
		if err != nil {
			return nil, fmt.Errorf("client: bad message from server (%d bytes): %w", len(msg), err)
		}
		return []protocol.Frame{f}, nil
	}
	f, err := c.readTCP(ctx)
	if err != nil {
		return nil, err
	}
	return []protocol.Frame{f}, nil
}

// aLongTimeAgo is a read deadline that interrupts a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

func (c *Client) readTCP(ctx context.Context) (protocol.Frame, error) {
	deadline, hasDeadline := ctx.Deadline()
	if err := c.conn.SetReadDeadline(deadline); err != nil {
		return protocol.Frame{}, fmt.Errorf("client: read: %w", err)
	}
	if ctx.Done() != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			c.conn.SetReadDeadline(aLongTimeAgo)
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired // do not let it move the deadline of a later read
			}
		}()
	}
	f, err := c.readFrame()
	if err == nil {
		return f, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if cerr := ctx.Err(); cerr != nil {
			return protocol.Frame{}, fmt.Errorf("client: read: %w", cerr)
		}
		if hasDeadline { // the socket deadline beat ctx's own timer
			return protocol.Frame{}, fmt.Errorf("client: read: %w", context.DeadlineExceeded)
		}
	}
	if err == io.EOF {
		return protocol.Frame{}, err // a clean close between frames
	}
	return protocol.Frame{}, fmt.Errorf("client: read: %w", err)
}

// readFrame reads one frame from the buffered TCP stream. Frames that fit the
// buffer are peeked whole and consumed only once complete.
func (c *Client) readFrame() (protocol.Frame, error) {
	h, err := c.br.Peek(protocol.HeaderLen)
	if err != nil {
		if err == io.EOF && len(h) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return protocol.Frame{}, err
	}
	if _, _, err := protocol.Decode(h, c.maxBody); err != nil && !errors.Is(err, protocol.ErrShort) {
		return protocol.Frame{}, fmt.Errorf("bad frame from server: %w", err)
	}
	size := int(binary.BigEndian.Uint32(h))
	if size > c.br.Size() {
		f, err := protocol.ReadFrame(c.br, &c.hdr, c.maxBody)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the header was there
		}
		return f, err
	}
	b, err := c.br.Peek(size)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return protocol.Frame{}, err
	}
	f, n, err := protocol.Decode(b, c.maxBody)
	if err != nil { // cannot happen: the header was checked above
		return protocol.Frame{}, fmt.Errorf("bad frame from server: %w", err)
	}
	if len(f.Body) == 0 {
		f.Body = nil
	} else {
		f.Body = bytes.Clone(f.Body)
	}
	if _, err := c.br.Discard(n); err != nil {
		return protocol.Frame{}, err
	}
	return f, nil
}

// Close closes the connection (over WebSocket with a normal-closure
// handshake, bounded by the library's own 5 s timeouts). It unblocks a pending
// read. Calls after the first return the first call's result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if c.ws != nil {
			c.closeErr = c.ws.Close(websocket.StatusNormalClosure, "")
			if c.closeErr != nil {
				c.ws.CloseNow()
			}
			return
		}
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// abort closes without a WebSocket close handshake (a failed Dial).
func (c *Client) abort() {
	c.closeOnce.Do(func() {
		if c.ws != nil {
			c.closeErr = c.ws.CloseNow()
			return
		}
		c.closeErr = c.conn.Close()
	})
}
