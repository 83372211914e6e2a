//go:build !linux

package cloud

import "errors"

// poller is Linux's epoll; elsewhere sessions never park.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("parking idle readers needs epoll (Linux)") }

func (p *poller) arm(int, *Session) error { return errors.New("no poller") }
func (p *poller) forget(int, *Session)    {}
func (p *poller) run(func(*Session))      {}
func (p *poller) close()                  {}
