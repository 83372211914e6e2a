//go:build !unix

package bench

import "time"

// selfCPU is unknown here: CPU figures read 0.
func selfCPU() time.Duration { return 0 }
