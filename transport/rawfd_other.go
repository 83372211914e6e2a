//go:build !unix

package transport

import "net"

// Init reports that there are no direct writes here: the transports write
// through the net.Conn.
func (r *RawFD) Init(net.Conn) bool {
	r.fd = -1
	return false
}

// Write is never reached without a descriptor.
func (r *RawFD) Write([]byte) (int, error) { return 0, ErrNoFD }

// Writev is never reached without a descriptor.
func (r *RawFD) Writev([][]byte) (int, error) { return 0, ErrNoFD }
