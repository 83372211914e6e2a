package transport

import (
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
)

// AcceptLoop accepts on ln and hands each connection to handle, on the
// calling goroutine, until ln is closed; it then returns nil. Other accept
// errors (out of file descriptors and the like) are logged and retried
// after a backoff growing to a second, instead of spinning.
func AcceptLoop(ln net.Listener, log *zap.Logger, handle func(net.Conn)) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		handle(c)
	}
}
