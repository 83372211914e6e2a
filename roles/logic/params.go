package logic

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/imcloud/imcloud/protocol"
	"github.com/imcloud/imcloud/store"
)

// params are one request's parameters: the query string and, for a push
// whose body is a form (see the package documentation), the form body.
type params struct {
	query url.Values
	form  url.Values // nil unless the body is a form
}

// value returns the non-empty value of name, the form's first (as
// net/http's FormValue has it); "" if there is none. Repeated in one of
// them, the values must agree: which one was meant cannot be told, so
// differing ones are a 400.
func (p *params) value(name string) (string, error) {
	for _, vs := range [2][]string{p.form[name], p.query[name]} {
		var got string
		for _, v := range vs {
			switch {
			case v == "" || v == got:
			case got == "":
				got = v
			default:
				return "", badRequest("%s: given more than once, with different values (%s and %s)", name, quote(got), quote(v))
			}
		}
		if got != "" {
			return got, nil
		}
	}
	return "", nil
}

// each calls fn with every element of the list name: the values of name and
// name[] in the form and the query, each split at commas, spaces around
// elements trimmed, empty elements skipped.
func (p *params) each(name string, fn func(string) error) error {
	for _, src := range [2]url.Values{p.form, p.query} {
		for _, key := range [2]string{name, name + "[]"} {
			for _, v := range src[key] {
				for v != "" {
					var elem string
					elem, v, _ = strings.Cut(v, ",")
					if elem = strings.TrimSpace(elem); elem == "" {
						continue
					}
					if err := fn(elem); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// errTooMany stops a list walk once it holds more than the limit.
var errTooMany = errors.New("too many")

// strings returns the distinct elements of the list name, in first-seen
// order: at least one, at most limit (400 otherwise), none longer than
// maxLen bytes.
func (p *params) strings(name string, limit, maxLen int) ([]string, error) {
	var out []string
	var seen map[string]struct{}
	err := p.each(name, func(s string) error {
		if len(s) > maxLen {
			return badRequest("%s: %s is longer than %d bytes", name, quote(s), maxLen)
		}
		if seen == nil {
			seen = make(map[string]struct{})
		}
		if _, dup := seen[s]; dup {
			return nil
		}
		if len(out) == limit {
			return errTooMany
		}
		seen[s] = struct{}{}
		out = append(out, s)
		return nil
	})
	return out, listErr(name, len(out), limit, err)
}

// userIDs is strings for a list of user ids (mids), int64s. Only positive
// ones are returned: a connection that authenticated with mid 0 (or below)
// is anonymous (store.Identified) and never reached by mid, so such an id
// targets nobody, like an offline user's, and is answered as goim does
// (200, no sessions) rather than refused: goim's own push benchmark sends
// mids=0.
func (p *params) userIDs(name string, limit int) ([]int64, error) {
	var out []int64
	var seen map[int64]struct{}
	given := 0
	err := p.each(name, func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return badRequest("%s: must be 64-bit integers, got %s", name, quote(s))
		}
		if seen == nil {
			seen = make(map[int64]struct{})
		}
		if _, dup := seen[n]; dup {
			return nil
		}
		if given == limit {
			return errTooMany
		}
		seen[n] = struct{}{}
		given++
		if store.Identified(n) {
			out = append(out, n)
		}
		return nil
	})
	return out, listErr(name, given, limit, err)
}

// listErr turns the outcome of a list walk into the error to answer.
func listErr(name string, n, limit int, err error) error {
	switch {
	case errors.Is(err, errTooMany):
		return badRequest("%s: at most %d distinct values allowed per request", name, limit)
	case err != nil:
		return err
	case n == 0:
		return badRequest("%s: at least one is required", name)
	}
	return nil
}

// required returns the value of name or a 400 saying it is missing.
func (p *params) required(name string) (string, error) {
	v, err := p.value(name)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", badRequest("%s: required", name)
	}
	return v, nil
}

// operation returns the business op: required under /goim/, 1000 by default
// under /im/, an int32 >= 1000 either way.
func (p *params) operation(rt *route) (int32, error) {
	s, err := p.value("operation")
	if err != nil {
		return 0, err
	}
	if s == "" {
		if rt.im {
			return protocol.MinBusinessOp, nil
		}
		return 0, badRequest("operation: required (an integer >= %d)", protocol.MinBusinessOp)
	}
	op, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil || int32(op) < protocol.MinBusinessOp {
		return 0, badRequest("operation: must be an integer >= %d, got %s", protocol.MinBusinessOp, quote(s))
	}
	return int32(op), nil
}

// room returns the room id type://room from the type and room parameters.
func (p *params) room() (string, error) {
	typ, err := p.required("type")
	if err != nil {
		return "", err
	}
	room, err := p.required("room")
	if err != nil {
		return "", err
	}
	id := protocol.RoomID(typ, room)
	if err := protocol.ValidRoom(id); err != nil {
		return "", badRequest("type and room: %v", err)
	}
	return id, nil
}

// intParam parses the integer name within [lo, hi]; want describes that
// range in messages ("an integer >= 0"). A missing one is a 400 if required,
// else def.
func (p *params) intParam(name string, required bool, def, lo, hi int64, want string) (int64, error) {
	s, err := p.value(name)
	if err != nil {
		return 0, err
	}
	if s == "" {
		if required {
			return 0, badRequest("%s: required (%s)", name, want)
		}
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s: must be %s, got %s", name, want, quote(s))
	}
	return n, nil
}

// The Content-Types of form bodies: URL-encoded, and multipart (what PHP's
// curl sends for an array of fields, and Guzzle's multipart option).
const (
	formType      = "application/x-www-form-urlencoded"
	multipartType = "multipart/form-data"
)

// formBoundary reports whether a Content-Type header names a form body and,
// for a multipart one, returns its boundary ("" for a URL-encoded form).
func formBoundary(ct string) (boundary string, ok bool) {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, formType):
		return "", true
	case strings.EqualFold(mt, multipartType):
		_, ps, err := mime.ParseMediaType(ct)
		if err != nil || ps["boundary"] == "" {
			return "", false // not parseable as multipart: a raw message
		}
		return ps["boundary"], true
	}
	return "", false
}

// parseForm parses a form body: URL-encoded if boundary is "", else
// multipart with that boundary. Multipart values are the parts' bytes
// unchanged (a file part's too), so a binary msg survives. ok is false if
// body is not a well-formed form.
func parseForm(body []byte, boundary string) (form url.Values, ok bool) {
	if boundary == "" {
		form, err := url.ParseQuery(string(body))
		return form, err == nil
	}
	form = url.Values{}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		// Raw: no Content-Transfer-Encoding decoding, bytes as sent.
		part, err := mr.NextRawPart()
		if err == io.EOF { // only the final boundary; a body cut short is a wrapped EOF
			return form, true
		}
		if err != nil {
			return nil, false
		}
		name := part.FormName()
		v, err := io.ReadAll(part) // bounded: body is in memory, read within the form limit
		if err != nil {
			return nil, false
		}
		if name != "" {
			form[name] = append(form[name], string(v))
		}
	}
}

// plainNames reports whether every name in names is a plain field name
// (letters, digits, "_", "-", ".", PHP's "[]"; up to 64 bytes), as a form
// that a program built has, and a message that happens to contain "&msg="
// (JSON with a URL in it, a sentence) does not: its first "name" holds
// quotes, braces, slashes or spaces.
func plainNames(names map[string]bool) bool {
	for name := range names {
		if len(name) == 0 || len(name) > 64 {
			return false
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.[]", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// urlencodedNames are the field names of a URL-encoded body, which need not
// parse, each mapped to whether it is given a value ("name=..."): a bare
// word ("keys", what `curl -d keys` sends) names nothing.
func urlencodedNames(body []byte) map[string]bool {
	names := make(map[string]bool)
	for pair := range strings.SplitSeq(string(body), "&") {
		if pair == "" {
			continue // "a=1&", "&&": no field, as url.ParseQuery reads it
		}
		name, _, assigned := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		} // else kept as sent: its "%" makes it no plain name
		names[name] = names[name] || assigned
	}
	return names
}

// formNames are the field names of a parsed multipart form, every one given
// a value (a part).
func formNames(form url.Values) map[string]bool {
	names := make(map[string]bool, len(form))
	for name := range form {
		names[name] = true
	}
	return names
}

// namesParam reports whether names gives a value to one of the route's
// parameters (or its PHP-style name[]).
func (rt *route) namesParam(names map[string]bool) bool {
	for _, name := range rt.params {
		if names[name] || names[name+"[]"] {
			return true
		}
	}
	return false
}

// pushInput reads a push request's parameters and message as the package
// documentation says. Too large a message or body is a 413; an empty
// message is a 400.
func (l *Logic) pushInput(w http.ResponseWriter, r *http.Request, rt *route) (*params, []byte, error) {
	p, err := queryParams(r)
	if err != nil {
		return nil, nil, err
	}
	qmsg, err := p.value("msg")
	if err != nil {
		return nil, nil, err
	}
	boundary, isForm := formBoundary(r.Header.Get("Content-Type"))
	var msg []byte
	switch {
	case isForm:
		body, err := readBody(w, r, l.formLimit(boundary != ""))
		if err != nil {
			return nil, nil, err
		}
		form, ok := parseForm(body, boundary)
		var names map[string]bool
		if boundary == "" {
			names = urlencodedNames(body)
			switch {
			case !plainNames(names):
				ok = false // a message that happens to hold "&msg=", not a form
			case !ok && rt.namesParam(names):
				// Meant as a form (it names a parameter) but not one: say
				// so rather than push the bytes as the message.
				_, err := url.ParseQuery(string(body))
				return nil, nil, badRequest("form body: %v (percent-encode the values, or send the message raw with another Content-Type)", err)
			}
		} else if ok {
			names = formNames(form)
		}
		if ok && rt.namesParam(names) {
			p.form = form
			v, err := p.value("msg")
			if err != nil {
				return nil, nil, err
			}
			// "msg=" pushes the op alone, as an empty raw body does; no msg
			// at all is more likely forgotten than meant.
			if v == "" && !names["msg"] {
				return nil, nil, badRequest("msg: required when the parameters come in a form body (msg= pushes the op alone)")
			}
			msg = []byte(v)
		} else if qmsg != "" {
			msg = []byte(qmsg)
		} else {
			msg = body
		}
	case qmsg != "":
		msg = []byte(qmsg)
	default:
		body, err := readBody(w, r, int64(l.cfg.MaxMessage))
		if err != nil {
			return nil, nil, err
		}
		msg = body
	}
	if len(msg) > l.cfg.MaxMessage {
		return nil, nil, tooLarge("message", int64(l.cfg.MaxMessage))
	}
	// An empty message is a push of the op alone (a signal such as "sync
	// now"), as goim allows.
	return p, msg, nil
}

// queryParams parses the query string strictly: a malformed one (a bad
// escape, a semicolon) is a 400 rather than silently losing a pair, which
// could drop a target from a list.
func queryParams(r *http.Request) (*params, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("query string: %v", err)
	}
	return &params{query: q}, nil
}

// formLimit bounds a form body: a percent-encoded message plus MaxIDs ids
// or, multipart, a message plus MaxIDs ids each in a part of its own (a
// part's boundary and header are ~100 bytes).
func (l *Logic) formLimit(isMultipart bool) int64 {
	if isMultipart {
		return int64(l.cfg.MaxMessage) + 192*int64(l.cfg.MaxIDs) + 8192
	}
	return 3*int64(l.cfg.MaxMessage) + 64*int64(l.cfg.MaxIDs) + 4096
}

// tooLarge is a 413 for what exceeded limit bytes.
func tooLarge(what string, limit int64) *httpError {
	return &httpError{
		status: http.StatusRequestEntityTooLarge,
		msg:    what + " larger than " + strconv.FormatInt(limit, 10) + " bytes",
	}
}

// readBody reads the whole body, at most limit bytes: a larger declared
// Content-Length is refused unread and a larger body is cut off by
// http.MaxBytesReader (which also makes the server close the connection).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooLarge("request body", limit)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	var b []byte
	var err error
	if r.ContentLength >= 0 { // known length (net/http enforces it): one exact read
		b = make([]byte, r.ContentLength)
		_, err = io.ReadFull(body, b)
	} else {
		var buf bytes.Buffer
		_, err = buf.ReadFrom(body)
		b = buf.Bytes()
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge("request body", limit)
	case err != nil:
		return nil, &httpError{status: http.StatusBadRequest, msg: "cannot read the request body", err: err}
	}
	return b, nil
}
