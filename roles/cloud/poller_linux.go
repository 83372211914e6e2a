//go:build linux

package cloud

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller is an epoll instance that watches the sockets of parked sessions
// (see park.go). Each socket is armed one-shot: it reports once, and the
// session it is armed for is resumed; the session arms it again when it
// parks again. The runtime's own poller watches the same sockets, which
// epoll allows.
//
// The instance is itself waited on through the runtime's poller (an epoll
// descriptor is readable while it has events): run sleeps like any socket
// reader instead of holding a thread in epoll_wait, which would make every
// wakeup hand the scheduler over between threads.
type poller struct {
	epfd int
	file *os.File // epfd, for the runtime's poller
	raw  syscall.RawConn

	mu   sync.Mutex
	byFD map[int32]*Session // the session each armed descriptor was last armed for
	done chan struct{}
	once sync.Once
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &poller{epfd: epfd, file: file, raw: raw, byFD: make(map[int32]*Session), done: make(chan struct{})}, nil
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
	var ready []*Session
	for {
		ready = ready[:0]
		err := p.raw.Read(func(fd uintptr) bool {
			n, err := unix.EpollWait(int(fd), events, 0)
			if n <= 0 || err != nil {
				return false // nothing yet: wait until the set is readable
			}
			p.mu.Lock()
			for _, ev := range events[:n] {
				if s := p.byFD[ev.Fd]; s != nil {
					ready = append(ready, s)
				}
			}
			p.mu.Unlock()
			return true
		})
		if err != nil {
			return // closed
		}
		for i, s := range ready {
			resume(s)
			ready[i] = nil
		}
	}
}

// close ends run and releases the instance, once; call it after every
// session ended.
func (p *poller) close() {
	p.once.Do(func() {
		_ = p.file.Close()
		<-p.done
	})
}
