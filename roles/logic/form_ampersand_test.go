package logic

import (
	"net/http"
	"testing"
)

// TestFormStrayAmpersand: a form body with an empty pair ("&" at either
// end, or "&&") is still the form url.ParseQuery reads; it must not become
// the raw message.
func TestFormStrayAmpersand(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	for _, body := range []string{"msg=hi&", "&msg=hi", "keys=k2&&msg=hi"} {
		t.Run(body, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			a := e.post("/goim/push/keys?operation=1000&keys=k1a", form, body)
			if a.Status != http.StatusOK {
				t.Fatalf("status %d: %s", a.Status, a.Body)
			}
			for _, m := range e.drain() {
				if string(m.Msg) != "hi" {
					t.Errorf("message %q, want %q", m.Msg, "hi")
				}
			}
		})
	}
}
