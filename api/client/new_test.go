package client

import (
	"strings"
	"testing"
)

// TestNewBaseURL: a base URL without a scheme is refused with the forms
// New takes, http:// on a loopback address among them (the message named
// https only, though `ctl --api http://127.0.0.1:8080` is how the lab
// demo's API is reached).
func TestNewBaseURL(t *testing.T) {
	for _, u := range []string{"127.0.0.1:8443", "ftp://127.0.0.1:8443", "https://"} {
		_, err := New(u, "tok", Options{})
		if err == nil || !strings.Contains(err.Error(), "base URL must be https://host:port (or http://host:port on a loopback address), got "+`"`+u+`"`) {
			t.Errorf("New(%q): %v", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080", "https://192.0.2.9:8443/"} {
		if _, err := New(u, "tok", Options{}); err != nil {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}
