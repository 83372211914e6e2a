//go:build !unix

package bench

import "net"

// peerClosed cannot peek here; idleRedial alone guards reused connections.
func peerClosed(net.Conn) bool { return false }
