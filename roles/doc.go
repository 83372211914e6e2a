// Package roles assembles the imcloud roles (cloud, job, logic, and all of
// them in one process) from configuration. It owns:
//
//   - the root Config: loaded once by Load from the YAML file and IMCLOUD_*
//     environment variables, then checked by Config.Validate for the role
//     being started;
//   - the lifecycle: each role is a service with Start (bind, connect, return
//     when ready), Run and Stop (drain before the deadline); "all" starts them
//     in a fixed order and stops them in reverse; a signal while a Start
//     waits for a backend is a clean stop;
//   - waiting for backends: a Kafka client still connecting is retried in the
//     background (retrying), so logic answers 503 and the job waits instead
//     of the process exiting; /readyz names what is still missing;
//   - one HTTP admin mux (/metrics, /healthz, /readyz) and one gRPC server per
//     process;
//   - the choice of backend implementations (registry, queue, store): only
//     this package picks them from config; the roles depend on interfaces.
//
// Concurrency: a Config is read-only after Load; every goroutine may read it
// without locking, and nothing may modify it afterwards. Derived values
// (Config.NodeID, Config.AdvertiseAddr) are computed by methods, not written
// back.
package roles
