// Package kafka is the Kafka push queue between logic (Producer) and job
// (Consumer), built on IBM/sarama. It owns the push topic (created at
// start-up if missing), the record format and key, the consumer group
// membership and the group's committed offsets. It is held to the contract
// suite in queue/queuetest; tests run it against kfake, an in-process broker
// speaking the Kafka protocol (see kafkatest and the kfakebroker command).
//
// # Topic and records
//
// NewProducer and NewConsumer both make sure Config.Topic exists, creating
// it with Config.Partitions partitions and Config.ReplicationFactor
// replicas; an existing topic is kept as it is (a differing partition count
// is logged). A record's value is the protobuf encoding of the PushMsg and
// its key is queue.Key (the target server for PUSH, the room for ROOM, the
// operation for BROADCAST). sarama's hash partitioner (FNV-1a of the key)
// maps a key to one partition, so order holds per node and per room.
//
// # Publishing
//
// Publish returns once every in-sync replica has the record (acks=all, one
// request in flight per broker so retries keep the order, up to 3 retries
// with backoff). Not sarama's idempotent producer, which can acknowledge a
// record it never stored (see producerConfig); a retry may store a record
// twice instead, and the cloud drops repeated push ids. It is bounded by its
// ctx and by Config.PublishTimeout (default 5s), plus short dial, read and
// metadata timeouts, so that while the brokers are down it fails within a
// few seconds with an error wrapping queue.ErrUnavailable (and the cause).
// A Publish that gave up may still be written later: the cloud drops
// repeated push ids.
//
// # Consuming and commits
//
// Each Consume call is one member of Config.Group; concurrent calls share
// the partitions. A new group starts from the oldest offset. Consume loops
// over the group's sessions (sarama returns on every rebalance) and retries
// with backoff while the cluster fails.
//
// For each partition it holds, a member hands the messages to the Handler
// in offset order, one call at a time, so the handler never runs
// concurrently for one key. A handler error means the message was not
// taken: it is offered again after a backoff (10 ms doubling to 1 s) before
// any later message of its partition, until taken or the session ends. After
// a nil return the member goes on to the next message without waiting for
// done. It tracks, per partition, the messages taken and which are done, and
// marks for commit only the offset after the longest prefix that is done;
// offsets are committed every 500 ms and when a session ends. At most
// Config.MaxInFlight messages per partition are taken but not done (and at
// most 16 times that are taken but not committed): then the partition waits
// for done. A record that is not a PushMsg is logged, counted
// (Stats.Undecodable) and committed, never blocking its partition.
//
// When a session ends (rebalance, ctx cancelled, Close), the member stops
// taking messages, commits what is done and gives the partitions up; what
// was taken but not done by then is delivered again to the next owner
// (at-least-once), and done calls that come later are ignored. A process
// that dies redelivers everything after its last commit.
//
// # Concurrency rules
//
//   - Producer and Consumer methods are safe for concurrent use.
//   - done may be called from any goroutine, before or after the handler
//     returns; calls after the first are ignored.
//   - The handler gets the session's ctx, which ends on rebalance, on
//     Consume's ctx ending and on Close; a handler must return soon after.
//   - Close is idempotent. Producer.Close flushes the records already handed
//     over; later Publish calls return queue.ErrClosed. Consumer.Close stops
//     every Consume call and returns once each has committed what is done
//     and left the group; Consume then returns nil, as it does when its ctx
//     ends.
package kafka
