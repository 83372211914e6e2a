package queue

import (
	"context"
	"errors"
	"strconv"

	"github.com/imcloud/imcloud/protocol/pb"
)

// Errors a Producer returns; logic maps ErrFull and ErrUnavailable to 503.
var (
	ErrFull        = errors.New("queue: full")
	ErrUnavailable = errors.New("queue: unavailable")
	ErrClosed      = errors.New("queue: closed")
)

// Producer publishes push messages. Safe for concurrent use.
type Producer interface {
	// Publish hands m to the queue. It returns once the queue holds m
	// durably enough for the backend (memory: enqueued; kafka: acked).
	Publish(ctx context.Context, m *pb.PushMsg) error
	Close() error
}

// Handler processes one message. Returning nil lets the consumer mark the
// message done; an error means it was not accepted and is retried (the
// handler owns retry bounds; it returns an error only when ctx ends).
type Handler func(ctx context.Context, m *pb.PushMsg) error

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
