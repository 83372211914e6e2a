package ws

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/transport"
)

// Conn is a goim connection over WebSocket.
type Conn struct {
	ws      *websocket.Conn
	maxBody int
	remote  string
	once    sync.Once
	buf     []byte // op-9 assembly, reused between writes
}

var _ transport.Conn = (*Conn)(nil)

// AcceptOptions configures the upgrade.
type AcceptOptions struct {
	// OriginPatterns are allowed Origin hosts (path.Match patterns); empty
	// allows any Origin, since auth is by the first frame, not by cookies.
	OriginPatterns []string
	MaxBody        int
}

// Accept upgrades an HTTP request. On failure the response is already written.
func Accept(w http.ResponseWriter, r *http.Request, o AcceptOptions) (*Conn, error) {
	opts := &websocket.AcceptOptions{OriginPatterns: o.OriginPatterns}
	if len(o.OriginPatterns) == 0 {
		opts.InsecureSkipVerify = true
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		return nil, fmt.Errorf("ws: upgrade: %w", err)
	}
	// A message larger than one frame can be is a protocol error; the
	// library closes the connection with 1009 when the limit is passed.
	c.SetReadLimit(int64(o.MaxBody) + protocol.HeaderLen)
	return &Conn{ws: c, maxBody: o.MaxBody, remote: r.RemoteAddr}, nil
}

// ReadFrame implements transport.Conn. Text and binary messages are both
// accepted; each must hold exactly one frame.
func (c *Conn) ReadFrame(deadline time.Time) (protocol.Frame, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_, msg, err := c.ws.Read(ctx)
	if err != nil {
		return protocol.Frame{}, err
	}
	return protocol.DecodeMessage(msg, c.maxBody)
}

// Write implements transport.Conn.
func (c *Conn) Write(items []transport.Out, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	buf := c.buf[:0]
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		protocol.PutHeader(buf, len(buf)-protocol.HeaderLen, protocol.PushVer, protocol.OpRaw, 0)
		err := c.ws.Write(ctx, websocket.MessageBinary, buf)
		buf = buf[:0]
		return err
	}
	for _, it := range items {
		if !it.Push {
			if err := flush(); err != nil {
				return err
			}
			if err := c.ws.Write(ctx, websocket.MessageBinary, it.Data); err != nil {
				return err
			}
			continue
		}
		if len(buf)+len(it.Data) > protocol.MaxWSBatch && len(buf) > 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(buf) == 0 {
			buf = append(buf, make([]byte, protocol.HeaderLen)...)
		}
		if protocol.HeaderLen+len(it.Data) <= protocol.MaxWSBatch {
			buf = append(buf, it.Data...)
			continue
		}
		// One item over the limit (a large room batch): split it at frame
		// boundaries; a single frame over the limit goes alone.
		var err error
		splitErr := protocol.Split(it.Data, func(f protocol.Frame) error {
			if len(buf) > protocol.HeaderLen && len(buf)+f.Size() > protocol.MaxWSBatch {
				if err = flush(); err != nil {
					return err
				}
				buf = append(buf, make([]byte, protocol.HeaderLen)...)
			}
			buf = f.Append(buf)
			return nil
		})
		if err != nil {
			return err
		}
		if splitErr != nil {
			return fmt.Errorf("ws: malformed push batch: %w", splitErr)
		}
	}
	err := flush()
	if cap(buf) <= 2*protocol.MaxWSBatch {
		c.buf = buf[:0]
	} else {
		c.buf = nil
	}
	return err
}

// Close implements transport.Conn.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() { err = c.ws.CloseNow() })
	return err
}

// RemoteAddr implements transport.Conn.
func (c *Conn) RemoteAddr() string { return c.remote }

// Network implements transport.Conn.
func (c *Conn) Network() string { return "ws" }
