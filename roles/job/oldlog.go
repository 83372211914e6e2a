package job

import (
	"time"

	"go.uber.org/zap"
)

// thinEvery is how often a repeating condition (too-old drops, failed
// deliveries to one node) is logged.
const thinEvery = 10 * time.Second

// dropOld logs msg for a push dropped as older than job.max_age, thinned
// out (j.old, a logthin.Gate): a job that comes back to a backlog drops it all at once;
// imcloud_job_dropped_total counts every one.
func (j *Job) dropOld(log *zap.Logger, msg string, fields ...zap.Field) {
	ok, skipped := j.old.Pass(j.now())
	if !ok {
		return
	}
	if skipped > 0 {
		fields = append(fields, zap.Int("not_logged_since_last", skipped))
	}
	log.Warn(msg, fields...)
}
