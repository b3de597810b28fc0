package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts a Standard Webhooks secret: whsec_<base64 key>.
const SecretPrefix = "whsec_"

// Secret key sizes accepted (decoded), as the Standard Webhooks
// specification recommends.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// ParseSecret decodes a Standard Webhooks secret, "whsec_" followed by the
// standard base64 of the key, and returns the key (MinSecretBytes to
// MaxSecretBytes bytes). Surrounding white space is ignored.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, errors.New("webhook secret must start with " + SecretPrefix + " (whsec_<base64>)")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: the part after %s is not standard base64: %w", SecretPrefix, err)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("webhook secret: %d bytes, want %d..%d", len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}

// ReadSecret reads and parses the secret file path (one line). A file
// every user of the box may read (they could sign messages its ISP's
// receiver takes for the box's) or write is refused.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if m := fi.Mode().Perm(); m&0o006 != 0 {
		return nil, fmt.Errorf("%s: every user can read or write it (mode %04o): chmod o-rw (root:ispmux 0640, docs/DEPLOY.md)", path, m)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, err
	}
	key, err := ParseSecret(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// Sign returns the webhook-signature header value of a message, "v1," and
// the standard base64 of HMAC-SHA256(key, id "." timestamp "." body).
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify is what a receiver does with a message (and what the tests do): it
// checks that timestamp (the webhook-timestamp header, Unix seconds) is
// within tolerance of now, and that one of the space-separated signatures
// of the webhook-signature header is the v1 signature of id, timestamp and
// body under key (compared in constant time).
func Verify(key []byte, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("bad webhook-timestamp %q", timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp %d is %v away from now", ts, d.Round(time.Second))
	}
	want := Sign(key, id, ts, body)
	for _, sig := range strings.Fields(signatures) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no matching v1 signature")
}
