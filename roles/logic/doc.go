// Package logic is the REST API of imcloud (the logic role): push by key, by
// user id (mid), to a room and to everyone; online figures; the list of live
// cloud nodes and goim's weighted node list for clients. Every route exists
// under both /goim/ (goim's paths) and /im/ (im-cloud's paths).
//
// It owns:
//
//   - the HTTP contract: routing (404 and 405 with Allow answered in JSON),
//     parameter parsing and validation, the JSON envelope
//     {"code":0,"message":"","data":...} and the mapping of errors to real
//     statuses (400 bad input, 404, 405, 413 too large, 503 backend
//     unavailable or overloaded, code = -status);
//   - turning a push request into queue messages (pb.PushMsg): one per live
//     cloud node for key and mid pushes, one for a room or broadcast push,
//     all with the same push id;
//   - a cache of the live cloud nodes, fed by the registry watch in Run; key
//     and mid pushes ignore session bindings to nodes that are not in it, so
//     a user who reconnected elsewhere is reachable at once;
//   - its metrics (requests by route and status, pushes by type, push
//     latency).
//
// Its dependencies (Sessions, Producer, Nodes, OnlineSource) are interfaces
// declared here, where they are used; only package roles picks their
// implementations.
//
// # Where a push's parameters and message come from
//
// Parameters are read from the query string and, for push routes, from a
// form body. A body is a form only when its Content-Type is
// application/x-www-form-urlencoded or multipart/form-data (with a
// boundary; what PHP's curl sends for an array of fields) AND it parses as
// such a form AND it gives a value ("name=...", or a multipart part) to at
// least one parameter of its own route (route.params: msg, operation, id
// and the route's targets, keys, mids, type and room, or speed; with or
// without PHP's []; a bare word such as "keys" gives none) AND,
// URL-encoded, every name in it is a plain field name (letters, digits,
// "_-.[]"), which a JSON text or a sentence that happens to hold "&msg="
// has not; a multipart part's bytes are taken as sent. Then parameters may come from both
// (scalars: the body's value first, as net/http does, and one repeated
// with differing values in either is a 400; lists: the union) and
// the message is the msg parameter ("msg=" pushes the op alone; no msg at
// all is a 400, more likely forgotten than meant). Otherwise the body is not a form: the
// message is the msg parameter if the query has a non-empty one (the body is
// then ignored), else the whole body, bytes unchanged, whatever its
// Content-Type. The third condition keeps goim's most common call working:
// `curl -d hello` sends Content-Type x-www-form-urlencoded with a body that
// is a message, not a form. A raw message that itself looks like a form
// naming one of those parameters ("msg=hi") must be sent with another
// Content-Type (application/octet-stream, text/plain, ...). A URL-encoded
// body of plain names, one of them a parameter, that does not parse
// ("msg=50%off") is a 400, not pushed as it is: its sender meant a form.
//
// Limits: a message is at most Config.MaxMessage bytes (413 beyond; a raw
// body is read through http.MaxBytesReader, so an oversized body is never
// read whole); a form body at most 3*MaxMessage + 64*MaxIDs + 4 KiB (room
// for a percent-encoded message and MaxIDs ids), a multipart one
// MaxMessage + 192*MaxIDs + 8 KiB (room for a part per id). A list holds at most
// Config.MaxIDs distinct ids (after duplicates are removed); more is a 400,
// not a 413, because the limit is on the number of targets, wherever they
// are sent (the query string usually), not on the size of a body.
//
// # Concurrency
//
// A *Logic is safe for concurrent use once New returns: the handler serves
// any number of requests at once. The node cache is an immutable snapshot
// behind an atomic pointer, replaced whole by Run (call Run once) and read
// without locks by handlers; before Run's first list arrives, handlers ask
// Nodes.Nodes on every request. Everything else a handler touches is either
// read-only after New (config, routes) or request-local. Messages handed to
// the Producer are never modified afterwards.
package logic
