package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/subscribers"
)

// An independent Standard Webhooks verifier (the spec's algorithm, not
// package code) over a real delivery.
func TestDeliveryVerifiesIndependently(t *testing.T) {
	s := openStore(t, "", subscribers.Options{NoSync: true})
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	sec := writeSecret(t, secret)
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts, sigs := r.Header.Get("Webhook-Id"), r.Header.Get("Webhook-Timestamp"), r.Header.Get("Webhook-Signature")
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "." + string(body)))
		want := base64.StdEncoding.EncodeToString(m.Sum(nil))
		ok := false
		for _, sg := range strings.Split(sigs, " ") {
			v, sig, _ := strings.Cut(sg, ",")
			if v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
				ok = true
			}
		}
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || time.Since(time.Unix(n, 0)).Abs() > 5*time.Minute {
			ok = false
		}
		var ev map[string]any
		if json.Unmarshal(body, &ev) != nil || ev["isp"] != "alpha" {
			ok = false
		}
		if ok {
			got <- id
		} else {
			got <- "BAD " + id + " " + sigs
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	start(t, &configs.Config{ISPs: []configs.ISP{isp("alpha", srv.URL, sec)}}, s)
	e := addEvent(t, s, "alpha", subscribers.EventBound, 1)
	select {
	case id := <-got:
		if id != strconv.FormatUint(e.ISPSeq, 10) {
			t.Fatalf("delivery: %s", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
}
