//go:build linux

package cloud

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// poller is an epoll instance that watches the sockets of parked sessions
// (see park.go). Each socket is armed one-shot: it reports once, and the
// session it is armed for is resumed; the session arms it again when it
// parks again. The runtime's own poller watches the same sockets, which
// epoll allows.
type poller struct {
	epfd int
	wake int // an eventfd in the set: written by close to end run

	mu     sync.Mutex
	byFD   map[int32]*Session // the session each armed descriptor was last armed for
	done   chan struct{}
	closed sync.Once
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wake)
		return nil, fmt.Errorf("epoll add eventfd: %w", err)
	}
	return &poller{epfd: epfd, wake: wake, byFD: make(map[int32]*Session), done: make(chan struct{})}, nil
}

// arm makes the next readability (or hang-up) of fd resume s. It must be
// called while fd is s's open socket (under its RawFD, see parkable).
func (p *poller) arm(fd int, s *Session) error {
	p.mu.Lock()
	p.byFD[int32(fd)] = s
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	if errors.Is(err, unix.ENOENT) {
		// First park of this socket (a closed socket leaves the set by
		// itself, so a reused number is new here too).
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		p.forget(fd, s)
		return fmt.Errorf("epoll arm: %w", err)
	}
	return nil
}

// forget drops fd's entry if it is still s's: the number may belong to a
// newer connection by now.
func (p *poller) forget(fd int, s *Session) {
	p.mu.Lock()
	if p.byFD[int32(fd)] == s {
		delete(p.byFD, int32(fd))
	}
	p.mu.Unlock()
}

// run hands each reported session to resume until close is called. An
// event may be stale (its socket closed and the number reused after
// epoll_wait returned): resume then wakes a session that was not waiting
// for it, which costs a read that waits, nothing more.
func (p *poller) run(resume func(*Session)) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == p.wake {
				return
			}
			p.mu.Lock()
			s := p.byFD[ev.Fd]
			p.mu.Unlock()
			if s != nil {
				resume(s)
			}
		}
	}
}

// close ends run and releases the instance, once; call it after every
// session ended.
func (p *poller) close() {
	p.closed.Do(func() {
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		_, _ = unix.Write(p.wake, one)
		<-p.done
		_ = unix.Close(p.epfd)
		_ = unix.Close(p.wake)
	})
}
