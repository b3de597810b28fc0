package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The argon2id parameters of every new hash (see the package doc).
const (
	ArgonMemory  = 19456 // KiB (19 MiB)
	ArgonTime    = 2
	ArgonThreads = 1
	SaltLen      = 16
	KeyLen       = 32
)

// The import cap: hashes costlier than this are refused by
// CheckImportedHash (and by VerifyPassword, so a hash that slipped in
// otherwise still cannot make one verify expensive).
const (
	MaxArgonMemory  = 64 * 1024 // KiB (64 MiB)
	MaxArgonTime    = 4
	MaxArgonThreads = 4
	MaxBcryptCost   = 12
)

// MaxPasswordLen is the longest password hashed or verified, in bytes.
// Longer ones are refused by HashPassword and never match.
const MaxPasswordLen = 1024

// Errors, for errors.Is.
var (
	// ErrBadHash: the string is not an argon2id or bcrypt PHC string this
	// package can verify.
	ErrBadHash = errors.New("unrecognised password hash")
	// ErrHashTooCostly: the hash's parameters exceed the import cap.
	ErrHashTooCostly = errors.New("password hash parameters exceed the cap")
	// ErrPasswordTooLong: a password over MaxPasswordLen.
	ErrPasswordTooLong = fmt.Errorf("password longer than %d bytes", MaxPasswordLen)
)

// slots bounds the hashes and verifies running at once: one fewer than
// the Ps (at least one), so that an import of plaintext passwords (a hash
// each, ~15 ms of CPU and 19 MiB) leaves a CPU to the datapath and the
// DHCP path: with as many hashes as Ps, a trial's 1000-line import had
// renewals take 33 ms instead of 2–6 and DORAs' p90 grow from 130 to 212
// ms on two CPUs. A verify waiting for a slot gets the next one before
// any hash waiting (see slotQueue).
var slots = newSlotQueue(max(1, runtime.GOMAXPROCS(0)-1))

// Slots is the number of hashes and verifies that run at once.
func Slots() int { return slots.n }

// slotQueue is a semaphore of n slots whose waiters are served in two
// queues, each in arrival order: verifies (a claim's password check, its
// dummy for an unknown customer) first, then hashes (a new customer's or
// password's, an import's: one queued per line of a batch). Served in
// one arrival order, a claim on the portal, for a customer of any ISP,
// waited behind every hash an ISP's import had queued before it (500 a
// batch: seconds, past the portal's write timeout).
type slotQueue struct {
	n    int
	mu   sync.Mutex
	free int
	// verifies and hashes are the waiters, oldest first: a slot given
	// to one closes its channel.
	verifies, hashes []chan struct{}
}

func newSlotQueue(n int) *slotQueue { return &slotQueue{n: n, free: n} }

// acquire takes a slot for a verify (verify) or a hash, waiting for one
// until ctx ends.
func (q *slotQueue) acquire(ctx context.Context, verify bool) error {
	q.mu.Lock()
	if q.free > 0 && (verify || len(q.verifies) == 0) {
		q.free--
		q.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if verify {
		q.verifies = append(q.verifies, ch)
	} else {
		q.hashes = append(q.hashes, ch)
	}
	q.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	waiting := q.drop(ch)
	q.mu.Unlock()
	if !waiting {
		q.release() // given at the same moment: given back
	}
	return ctx.Err()
}

// drop removes ch from its queue; false if it is in neither (a slot was
// given to it). q.mu held.
func (q *slotQueue) drop(ch chan struct{}) bool {
	for _, w := range []*[]chan struct{}{&q.verifies, &q.hashes} {
		for i, c := range *w {
			if c == ch {
				*w = append((*w)[:i], (*w)[i+1:]...)
				return true
			}
		}
	}
	return false
}

// release gives a slot back: to the oldest verify waiting, else to the
// oldest hash waiting, else free.
func (q *slotQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, w := range []*[]chan struct{}{&q.verifies, &q.hashes} {
		if len(*w) > 0 {
			close((*w)[0])
			(*w)[0] = nil
			*w = (*w)[1:]
			return
		}
	}
	q.free++
}

// HashPassword returns the argon2id PHC string of pw with the package's
// parameters and a fresh random salt.
func HashPassword(pw string) (string, error) {
	return HashPasswordCtx(context.Background(), pw)
}

// HashPasswordCtx is HashPassword that gives up waiting for a hashing slot
// when ctx ends.
func HashPasswordCtx(ctx context.Context, pw string) (string, error) {
	if len(pw) > MaxPasswordLen {
		return "", ErrPasswordTooLong
	}
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := slots.acquire(ctx, false); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, ArgonTime, ArgonMemory, ArgonThreads, KeyLen)
	slots.release()
	return encodeArgon(argonParams{m: ArgonMemory, t: ArgonTime, p: ArgonThreads}, salt, key), nil
}

func encodeArgon(p argonParams, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.m, p.t, p.p, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// VerifyPassword reports whether pw matches the PHC string phc (argon2id
// or bcrypt), comparing in constant time. rehash is true after a match
// when phc was not made with this package's parameters (bcrypt, weaker
// argon2id, or costlier within the cap): the caller should store a fresh
// HashPassword. err is set when phc cannot be verified (ErrBadHash,
// ErrHashTooCostly); a wrong password is ok == false with a nil err.
func VerifyPassword(phc, pw string) (ok, rehash bool, err error) {
	return VerifyPasswordCtx(context.Background(), phc, pw)
}

// VerifyPasswordCtx is VerifyPassword that gives up waiting for a hashing
// slot when ctx ends (err is then ctx.Err()).
func VerifyPasswordCtx(ctx context.Context, phc, pw string) (ok, rehash bool, err error) {
	h, err := parseHash(phc)
	if err != nil {
		return false, false, err
	}
	if err := h.checkCap(); err != nil {
		return false, false, err
	}
	if len(pw) > MaxPasswordLen {
		return false, false, nil
	}
	if err := slots.acquire(ctx, true); err != nil {
		return false, false, err
	}
	defer slots.release()
	if h.bcrypt {
		// bcrypt compares in constant time; it cannot take more than 72
		// bytes (an error, so never a match).
		if bcrypt.CompareHashAndPassword([]byte(phc), []byte(pw)) != nil {
			return false, false, nil
		}
		return true, true, nil
	}
	key := argon2.IDKey([]byte(pw), h.salt, h.a.t, h.a.m, h.a.p, uint32(len(h.key)))
	if subtle.ConstantTimeCompare(key, h.key) != 1 {
		return false, false, nil
	}
	return true, !h.ours(), nil
}

// CheckImportedHash accepts an argon2id or bcrypt PHC string that
// VerifyPassword can verify within the cap, and refuses others with an
// error that says why (wrapping ErrBadHash or ErrHashTooCostly).
func CheckImportedHash(phc string) error {
	h, err := parseHash(phc)
	if err != nil {
		return err
	}
	return h.checkCap()
}

var dummy struct {
	once sync.Once
	phc  string
}

// DummyVerify spends the time of a VerifyPassword of pw against a hash
// with this package's parameters, and matches nothing: called for a
// customer that does not exist, so that the answer takes as long as for
// one that does.
func DummyVerify(pw string) {
	DummyVerifyCtx(context.Background(), pw)
}

// DummyVerifyCtx is DummyVerify that gives up waiting for a hashing slot
// when ctx ends.
func DummyVerifyCtx(ctx context.Context, pw string) {
	dummy.once.Do(func() {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		salt := make([]byte, SaltLen)
		_, _ = rand.Read(salt)
		// The dummy's own key is never compared against anything that
		// could match: a random key stands in for it.
		dummy.phc = encodeArgon(argonParams{m: ArgonMemory, t: ArgonTime, p: ArgonThreads}, salt, secret)
	})
	_, _, _ = VerifyPasswordCtx(ctx, dummy.phc, pw)
}

type argonParams struct {
	m, t uint32
	p    uint8
}

type parsedHash struct {
	bcrypt bool
	cost   int // bcrypt
	a      argonParams
	salt   []byte
	key    []byte
}

func (h *parsedHash) ours() bool {
	return !h.bcrypt && h.a.m == ArgonMemory && h.a.t == ArgonTime && h.a.p == ArgonThreads &&
		len(h.salt) >= SaltLen && len(h.key) == KeyLen
}

func (h *parsedHash) checkCap() error {
	if h.bcrypt {
		if h.cost > MaxBcryptCost {
			return fmt.Errorf("%w: bcrypt cost %d (at most %d)", ErrHashTooCostly, h.cost, MaxBcryptCost)
		}
		return nil
	}
	switch {
	case h.a.m > MaxArgonMemory:
		return fmt.Errorf("%w: argon2id m=%d KiB (at most %d)", ErrHashTooCostly, h.a.m, MaxArgonMemory)
	case h.a.t > MaxArgonTime:
		return fmt.Errorf("%w: argon2id t=%d (at most %d)", ErrHashTooCostly, h.a.t, MaxArgonTime)
	case h.a.p > MaxArgonThreads:
		return fmt.Errorf("%w: argon2id p=%d (at most %d)", ErrHashTooCostly, h.a.p, MaxArgonThreads)
	}
	return nil
}

func badHash(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadHash, fmt.Sprintf(format, args...))
}

// parseHash parses an argon2id PHC string
// ($argon2id$v=19$m=M,t=T,p=P$salt$key) or a bcrypt one ($2a$, $2b$, $2y$).
func parseHash(phc string) (*parsedHash, error) {
	if len(phc) > 512 {
		return nil, badHash("longer than 512 characters")
	}
	switch {
	case strings.HasPrefix(phc, "$2a$"), strings.HasPrefix(phc, "$2b$"), strings.HasPrefix(phc, "$2y$"):
		cost, err := bcrypt.Cost([]byte(phc))
		if err != nil || len(phc) != 60 {
			return nil, badHash("not a bcrypt hash")
		}
		return &parsedHash{bcrypt: true, cost: cost}, nil
	case strings.HasPrefix(phc, "$argon2id$"):
	case strings.HasPrefix(phc, "$argon2i$"), strings.HasPrefix(phc, "$argon2d$"):
		return nil, badHash("only argon2id is accepted, not %s", strings.SplitN(phc[1:], "$", 2)[0])
	case phc == "":
		return nil, badHash("empty")
	default:
		return nil, badHash("neither argon2id ($argon2id$…) nor bcrypt ($2a$, $2b$, $2y$…)")
	}
	parts := strings.Split(phc, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 {
		return nil, badHash("argon2id: want $argon2id$v=19$m=M,t=T,p=P$salt$key")
	}
	if parts[2] != "v=19" {
		return nil, badHash("argon2id: version %q (want v=19)", parts[2])
	}
	var h parsedHash
	var seen [3]bool
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, badHash("argon2id: parameter %q", kv)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return nil, badHash("argon2id: parameter %q", kv)
		}
		switch k {
		case "m":
			h.a.m, seen[0] = uint32(n), !seen[0]
		case "t":
			h.a.t, seen[1] = uint32(n), !seen[1]
		case "p":
			if n > 255 {
				return nil, badHash("argon2id: p=%d", n)
			}
			h.a.p, seen[2] = uint8(n), !seen[2]
		default:
			return nil, badHash("argon2id: parameter %q", kv)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return nil, badHash("argon2id: want m, t and p once each")
	}
	if h.a.t < 1 || h.a.p < 1 || h.a.m < 8*uint32(h.a.p) {
		return nil, badHash("argon2id: t and p at least 1, m at least 8×p")
	}
	var err error
	if h.salt, err = decodeB64(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return nil, badHash("argon2id: salt must be 8 to 64 bytes of base64")
	}
	if h.key, err = decodeB64(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return nil, badHash("argon2id: key must be 16 to 64 bytes of base64")
	}
	return &h, nil
}

// decodeB64 decodes unpadded standard base64 (the PHC format), tolerating
// padding some encoders add.
func decodeB64(s string) ([]byte, error) {
	return base64.RawStdEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
}
