package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxKeyLen bounds a client-chosen session key.
const MaxKeyLen = 128

// MaxRoomLen bounds a room id.
const MaxRoomLen = 256

// MaxAccepts bounds the distinct ops a session accepts, from its Auth and
// its Subs together: the set is kept per connection and searched on every
// push, so a client must not grow it without end.
const MaxAccepts = 1024

// Auth is the body of an op-7 frame. Unknown JSON fields are ignored so
// clients may add their own (a token, say).
type Auth struct {
	Mid      int64   `json:"mid"`
	Key      string  `json:"key"`
	RoomID   string  `json:"room_id"`
	Platform string  `json:"platform"`
	Accepts  []int32 `json:"accepts"`
}

// ParseAuth decodes and validates an Auth body.
func ParseAuth(body []byte) (Auth, error) {
	a, ok := parseAuthFast(body)
	if !ok {
		a = Auth{}
		if err := json.Unmarshal(body, &a); err != nil {
			return Auth{}, fmt.Errorf("%w: %v", ErrBadAuth, err)
		}
	}
	if len(a.Key) > MaxKeyLen {
		return Auth{}, fmt.Errorf("%w: key longer than %d bytes", ErrBadAuth, MaxKeyLen)
	}
	// REST key lists are comma-separated and their elements trimmed: a key
	// with a comma or surrounding spaces could never be pushed to.
	if strings.ContainsRune(a.Key, ',') || strings.TrimSpace(a.Key) != a.Key {
		return Auth{}, fmt.Errorf("%w: key %q has a comma or surrounding spaces", ErrBadAuth, a.Key)
	}
	if err := ValidRoom(a.RoomID); err != nil {
		return Auth{}, fmt.Errorf("%w: %v", ErrBadAuth, err)
	}
	if len(a.Accepts) > MaxAccepts && len(SortedOps(a.Accepts)) > MaxAccepts {
		return Auth{}, fmt.Errorf("%w: more than %d accepted ops", ErrBadAuth, MaxAccepts)
	}
	return a, nil
}

// ValidRoom checks a room id a client asks for. Rooms are "type://id" by
// convention (that is what REST room pushes address), but goim accepts any
// string, so only the length is enforced, and that it is UTF-8 without
// U+FFFD: room ids are JSON object keys in the online figures, where bytes
// that are not UTF-8 would all turn into U+FFFD, and two rooms into one
// key; and U+FFFD is what JSON decoding made of them in an auth body (and
// of a lone surrogate escape), so it marks ids that already collided.
func ValidRoom(room string) error {
	if len(room) > MaxRoomLen {
		return fmt.Errorf("room id longer than %d bytes", MaxRoomLen)
	}
	if !utf8.ValidString(room) || strings.ContainsRune(room, utf8.RuneError) {
		return errors.New("room id is not UTF-8 (or holds U+FFFD)")
	}
	return nil
}

// RoomID joins a REST type and room into a room id.
func RoomID(typ, room string) string { return typ + "://" + room }

// SortedOps returns ops sorted and without repeats, in a new slice.
func SortedOps(ops []int32) []int32 {
	ops = slices.Clone(ops)
	slices.Sort(ops)
	return slices.Compact(ops)
}
