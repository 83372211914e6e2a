//go:build !linux

package client

import "syscall"

// bindNoPortControl is nil where IP_BIND_ADDRESS_NO_PORT does not exist.
var bindNoPortControl func(network, address string, rc syscall.RawConn) error
