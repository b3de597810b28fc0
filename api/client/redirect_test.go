package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ispmux/ispmux/api/client"
)

// The API never redirects (a non-canonical path is a 404 problem), so a
// redirect comes from something else answering for it (a proxy, a
// service that took its address): the client must not follow it with the
// bearer token. net/http's client would, to any port of the same host,
// and from https to http there.
func TestRedirectNotFollowedWithToken(t *testing.T) {
	var leaked atomic.Value
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	defer elsewhere.Close()
	api := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/v1/isps", http.StatusTemporaryRedirect))
	defer api.Close()
	const tok = "secret-token-0123456789-abcdefghij"
	c, err := client.New(api.URL, tok, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ISPs(context.Background())
	if got, _ := leaked.Load().(string); strings.Contains(got, tok) {
		t.Fatalf("the token was sent to the redirect's target %s", elsewhere.URL)
	}
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("a redirect answered: err %v, want one saying it was not followed", err)
	}
}
