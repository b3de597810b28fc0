package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"

	"github.com/ispmux/ispmux/internal/binding"
)

// The form's protection: a random nonce per browser in a cookie
// (__Host- prefixed: Secure, Path=/, no Domain; HttpOnly; SameSite=Strict)
// and, in the form, base64url(HMAC-SHA256(secret, purpose || MAC ||
// nonce || fields)), the MAC being the one the Directory finds for the
// source address. A POST is taken only when the token matches the
// cookie's nonce and the MAC of the address it comes from: a form made
// for another subscriber, another browser or before a restart (the secret
// is random at New) is refused.

const (
	cookieName = "__Host-portal"
	nonceLen   = 16
)

// Token purposes.
const (
	purposeForm    = "form"    // the claim form
	purposeConfirm = "confirm" // the move confirmation, bound to its ISP and customer ID
)

// cookieNonce is the request's valid nonce, if any.
func cookieNonce(r *http.Request) ([]byte, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	n, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(n) != nonceLen {
		return nil, false
	}
	return n, true
}

// ensureNonce returns the request's nonce, or sets a new one.
func ensureNonce(w http.ResponseWriter, r *http.Request) []byte {
	if n, ok := cookieNonce(r); ok {
		return n
	}
	n := make([]byte, nonceLen)
	_, _ = rand.Read(n)
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    base64.RawURLEncoding.EncodeToString(n),
		Path:     "/",
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	return n
}

// token is the form token of purpose for mac and nonce, bound to extra
// (each length-prefixed).
func (s *Server) token(purpose string, mac uint64, nonce []byte, extra ...string) string {
	h := hmac.New(sha256.New, s.secret[:])
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	m := binding.MACBytes(mac)
	h.Write(m[:])
	h.Write(nonce)
	for _, e := range extra {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(e)))
		h.Write(l[:])
		h.Write([]byte(e))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// tokenOK compares in constant time.
func tokenOK(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
