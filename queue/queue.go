package queue

import (
	"context"
	"errors"
	"strconv"

	"github.com/imcloud/imcloud/protocol/pb"
)

// Errors a Producer returns; logic maps ErrFull and ErrUnavailable to 503,
// ErrTooLarge (a message the backend can never take: retrying cannot help)
// to 413.
var (
	ErrFull        = errors.New("queue: full")
	ErrUnavailable = errors.New("queue: unavailable")
	ErrClosed      = errors.New("queue: closed")
	ErrTooLarge    = errors.New("queue: message too large")
)

// Producer publishes push messages. Safe for concurrent use.
type Producer interface {
	// Publish hands m to the queue. It returns once the queue holds m
	// durably enough for the backend (memory: enqueued; kafka: acked).
	Publish(ctx context.Context, m *pb.PushMsg) error
	Close() error
}

// Handler processes one message. An error means m was not taken: it is
// offered again before any later message of its key (the handler owns retry
// bounds, so it errs only when ctx ends). On nil the handler owns m and calls
// done once m is fully handled (at once, or later from any goroutine); a
// durable backend commits a message only when it and every earlier message
// of its partition are done, so what was taken but not done when the process
// died is delivered again. Consumers hand over the next message without
// waiting for done, up to a bound of messages not yet done (backpressure).
type Handler func(ctx context.Context, m *pb.PushMsg, done func()) error

// Consumer delivers published messages to a Handler, one at a time per key,
// in publish order per key.
type Consumer interface {
	// Consume calls h for each message until ctx ends or Close is called,
	// then returns. It returns an error only when it cannot go on.
	Consume(ctx context.Context, h Handler) error
	Close() error
}

// Key is the partitioning key DESIGN fixes: the target server for PUSH, the
// room for ROOM, the operation for BROADCAST, so order holds per node and per
// room.
func Key(m *pb.PushMsg) string {
	switch m.GetType() {
	case pb.PushMsg_PUSH:
		return m.GetServer()
	case pb.PushMsg_ROOM:
		return m.GetRoom()
	default:
		return strconv.FormatInt(int64(m.GetOperation()), 10)
	}
}
