package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ispmux/ispmux/configs"
)

// Kind is what a token may do.
type Kind string

// Token kinds. Their values are those of tenants.ActorKind.
const (
	KindOperator Kind = "operator" // everything
	KindISP      Kind = "isp"      // its own ISP only
	KindClaim    Kind = "claim"    // claims only
)

// Principal is who presented a token: its kind, its name (the token
// file's base name without its extension) and, for KindISP, its ISP.
type Principal struct {
	Kind Kind
	Name string
	ISP  string
}

// TokenFile is one token file and the principal its token stands for.
type TokenFile struct {
	Path string
	Principal
	// Key is the configuration key that named the file (for errors),
	// e.g. "isp[1].token_files[0]".
	Key string
}

// MinTokenLen is the shortest token accepted in a token file, in
// characters (22 base64 characters carry 132 bits).
const MinTokenLen = 22

// MaxTokenLen bounds a token (and a presented bearer token).
const MaxTokenLen = 512

const hashPrefix = "sha256:"

// NewToken returns a fresh token (32 random bytes, 43 characters of
// unpadded URL-safe base64) and the line to put in a token file instead of
// it: "sha256:" and the hex SHA-256 of the token.
func NewToken() (token, sha256Line string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hashPrefix + hex.EncodeToString(sum[:])
}

// TokenFilesFromConfig lists the token files cfg names: [api]
// operator_token_file, [[isp]] token_files and [api] claim_token_files.
func TokenFilesFromConfig(cfg *configs.Config) []TokenFile {
	var out []TokenFile
	if f := cfg.API.OperatorTokenFile; f != "" {
		out = append(out, TokenFile{Path: f, Key: "api.operator_token_file", Principal: Principal{Kind: KindOperator, Name: TokenName(f)}})
	}
	for i, p := range cfg.ISPs {
		for j, f := range p.TokenFiles {
			out = append(out, TokenFile{Path: f, Key: fmt.Sprintf("isp[%d].token_files[%d]", i, j),
				Principal: Principal{Kind: KindISP, Name: TokenName(f), ISP: p.Name}})
		}
	}
	for j, f := range cfg.API.ClaimTokenFiles {
		out = append(out, TokenFile{Path: f, Key: fmt.Sprintf("api.claim_token_files[%d]", j),
			Principal: Principal{Kind: KindClaim, Name: TokenName(f)}})
	}
	return out
}

// TokenName is the name a token file gives its principal: the file's base
// name without its extension ("/etc/ispmux/beta-2.token" → "beta-2").
func TokenName(path string) string {
	b := filepath.Base(path)
	if n := strings.TrimSuffix(b, filepath.Ext(b)); n != "" {
		return n
	}
	return b
}

type entry struct {
	sum [sha256.Size]byte
	p   Principal
}

// Tokens is the set of known tokens, as SHA-256s. It is safe for
// concurrent use; Reload swaps the whole set at once.
type Tokens struct {
	mu      sync.Mutex // serialises Reload/SetFiles
	files   []TokenFile
	entries atomic.Pointer[[]entry]
}

// LoadTokens reads every token file. An error names the file and its
// configuration key, never the file's content.
func LoadTokens(files []TokenFile) (*Tokens, error) {
	t := &Tokens{}
	if err := t.SetFiles(files); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload re-reads the token files (after a rotation: a replaced file's old
// token stops working). On error the set in use is kept.
func (t *Tokens) Reload() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, err := readAll(t.files)
	if err != nil {
		return err
	}
	t.entries.Store(&e)
	return nil
}

// SetFiles replaces the list of token files (a new configuration) and
// reads them. On error nothing changes.
func (t *Tokens) SetFiles(files []TokenFile) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, err := readAll(files)
	if err != nil {
		return err
	}
	t.files = append([]TokenFile(nil), files...)
	t.entries.Store(&e)
	return nil
}

// Len is the number of tokens known.
func (t *Tokens) Len() int { return len(t.snapshot()) }

func (t *Tokens) snapshot() []entry {
	if p := t.entries.Load(); p != nil {
		return *p
	}
	return nil
}

// Lookup returns the principal of a presented bearer token. It hashes the
// token and compares the hash with every known one in constant time (the
// time does not depend on which one matches, or on how much of one does).
func (t *Tokens) Lookup(bearer string) (Principal, bool) {
	if bearer == "" || len(bearer) > MaxTokenLen {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(bearer))
	found := -1
	entries := t.snapshot()
	for i, e := range entries {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return entries[found].p, true
}

// FileError is the problem of one token file: LoadTokens, SetFiles and
// Reload return them joined (errors.Join), one per file that failed.
type FileError struct {
	TokenFile
	Err error
}

// Error reads "key: problem".
func (e *FileError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns the problem (an fs error for a file that could not be
// read: errors.Is(err, fs.ErrPermission) tells one that was not allowed).
func (e *FileError) Unwrap() error { return e.Err }

func readAll(files []TokenFile) ([]entry, error) {
	var errs []error
	out := make([]entry, 0, len(files))
	seen := map[[sha256.Size]byte]string{}
	for _, f := range files {
		sum, err := ReadTokenFile(f.Path)
		if err != nil {
			errs = append(errs, &FileError{TokenFile: f, Err: err})
			continue
		}
		if other, dup := seen[sum]; dup {
			errs = append(errs, &FileError{TokenFile: f, Err: fmt.Errorf("token file %s holds the same token as %s", f.Path, other)})
			continue
		}
		seen[sum] = f.Key
		out = append(out, entry{sum: sum, p: f.Principal})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// ReadTokenFile reads one token file and returns the SHA-256 of its token.
// The file holds one line: "sha256:" and 64 hex digits, or the token
// itself (at least MinTokenLen printable ASCII characters, no blanks).
// A file every user may write is refused, and so is one holding the token
// itself that every user may read. Errors never quote the content.
func ReadTokenFile(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	fi, err := os.Stat(path)
	if err != nil {
		return sum, fmt.Errorf("token file: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > 4096 {
		return sum, fmt.Errorf("token file %s: not a regular file of at most 4096 bytes", path)
	}
	if m := fi.Mode().Perm(); m&0o002 != 0 {
		// Anyone could put the hash of a token of their own in it.
		return sum, fmt.Errorf("token file %s: every user can write it (mode %04o): chmod o-w (root:ispmux 0640, docs/DEPLOY.md)", path, m)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return sum, fmt.Errorf("token file: %w", err)
	}
	s := strings.TrimSpace(string(data))
	switch {
	case s == "":
		return sum, fmt.Errorf("token file %s is empty", path)
	case strings.ContainsAny(s, "\r\n"):
		return sum, fmt.Errorf("token file %s: more than one line", path)
	case len(s) >= len(hashPrefix) && strings.EqualFold(s[:len(hashPrefix)], hashPrefix):
		// Any case: "SHA256:…" must not pass for a token of its own.
		h := s[len(hashPrefix):]
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return sum, fmt.Errorf("token file %s: after sha256: want 64 hex digits", path)
		}
		copy(sum[:], b)
		return sum, nil
	}
	if m := fi.Mode().Perm(); m&0o004 != 0 {
		return sum, fmt.Errorf("token file %s holds the token itself and every user can read it (mode %04o): chmod o-r, or write its sha256: line instead", path, m)
	}
	if len(s) < MinTokenLen || len(s) > MaxTokenLen {
		return sum, fmt.Errorf("token file %s: a token must be %d to %d characters (or write sha256:<hex> of it)", path, MinTokenLen, MaxTokenLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return sum, fmt.Errorf("token file %s: a token is printable ASCII without blanks", path)
		}
	}
	return sha256.Sum256([]byte(s)), nil
}
