package logic

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// route is one REST endpoint under one prefix.
type route struct {
	path  string // e.g. /goim/push/mids; also the metrics label
	kind  string // e.g. push/mids
	post  bool   // POST only; otherwise GET and HEAD
	allow string // the Allow header of a 405
	im    bool   // under /im/: operation defaults to 1000
	// params are the parameters a push route reads; a form-typed body is
	// a form only if it gives one of them a value (see the package doc).
	params []string
	serve  func(l *Logic, w http.ResponseWriter, r *http.Request, rt *route) (any, error)

	// The metrics every successful request of the route updates, resolved
	// once: looking a labelled child up costs a hash per request.
	ok      prometheus.Counter  // requests_total{route, code="200"}
	pushes  prometheus.Counter  // pushes_total{type}; push routes only
	latency prometheus.Observer // push_duration_seconds{type}; push routes only
}

// unmatched is the route label of requests to unknown paths.
const unmatched = "unmatched"

// buildRoutes lists every endpoint under /goim/ and /im/.
func (l *Logic) buildRoutes() map[string]*route {
	type endpoint struct {
		kind   string
		post   bool
		serve  func(l *Logic, w http.ResponseWriter, r *http.Request, rt *route) (any, error)
		params []string // push routes only
	}
	endpoints := []endpoint{
		{"push/keys", true, (*Logic).pushKeys, []string{"msg", "operation", "keys", "id"}},
		{"push/mids", true, (*Logic).pushMids, []string{"msg", "operation", "mids", "id"}},
		{"push/room", true, (*Logic).pushRoom, []string{"msg", "operation", "type", "room", "id"}},
		{"push/all", true, (*Logic).pushAll, []string{"msg", "operation", "speed", "id"}},
		{"online/top", false, (*Logic).onlineTop, nil},
		{"online/room", false, (*Logic).onlineRoom, nil},
		{"online/total", false, (*Logic).onlineTotal, nil},
		{"nodes/weighted", false, (*Logic).nodesWeighted, nil},
		{"nodes/instances", false, (*Logic).nodesInstances, nil},
	}
	routes := make(map[string]*route, 2*len(endpoints))
	for _, prefix := range []string{"/goim/", "/im/"} {
		for _, e := range endpoints {
			rt := &route{
				path:   prefix + e.kind,
				kind:   e.kind,
				post:   e.post,
				allow:  "GET, HEAD",
				im:     prefix == "/im/",
				serve:  e.serve,
				params: e.params,
			}
			if e.post {
				rt.allow = http.MethodPost
			}
			rt.ok = l.metrics.requests.WithLabelValues(rt.path, "200")
			if e.post {
				typ := strings.TrimPrefix(e.kind, "push/")
				rt.pushes = l.metrics.pushes.WithLabelValues(typ)
				rt.latency = l.metrics.pushLatency.WithLabelValues(typ)
			}
			routes[rt.path] = rt
		}
	}
	return routes
}

// allows reports whether rt takes method.
func (rt *route) allows(method string) bool {
	if rt.post {
		return method == http.MethodPost
	}
	return method == http.MethodGet || method == http.MethodHead
}

// router dispatches by exact path, answering 404 and 405 in JSON.
type router struct{ l *Logic }

func (h router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l := h.l
	rt := l.routes[r.URL.Path]
	if rt == nil {
		status := l.fail(w, r, unmatched, &httpError{
			status: http.StatusNotFound,
			msg:    "no such endpoint: " + quote(r.URL.Path),
		})
		l.metrics.request(unmatched, status)
		return
	}
	if !rt.allows(r.Method) {
		w.Header().Set("Allow", rt.allow)
		status := l.fail(w, r, rt.path, &httpError{
			status: http.StatusMethodNotAllowed,
			msg:    "method " + quote(r.Method) + " not allowed on " + rt.path + ", use " + rt.allow,
		})
		l.metrics.request(rt.path, status)
		return
	}
	start := time.Now()
	data, err := rt.serve(l, w, r, rt)
	if err != nil {
		l.metrics.request(rt.path, l.fail(w, r, rt.path, err))
		return
	}
	write(w, r, http.StatusOK, envelope{Data: data})
	rt.ok.Inc()
	l.fails.success(rt.path)
	if rt.post {
		rt.pushes.Inc()
		rt.latency.Observe(time.Since(start).Seconds())
	}
}
