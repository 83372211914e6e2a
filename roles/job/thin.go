package job

import "time"

// thinEvery is how often a repeating condition (too-old drops, failed
// deliveries to one node) is logged (logthin.Gate); the metrics count every
// one.
const thinEvery = 10 * time.Second
