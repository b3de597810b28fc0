package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Vectors made with independent implementations: the reference argon2 CLI
// (Debian's argon2 package: echo -n PW | argon2 SALT -id -k M -t T -p P -l 32 -e)
// and Apache's htpasswd (htpasswd -bnBC 10 "" PW).
var vectors = []struct {
	phc, pw string
	rehash  bool
}{
	// Our parameters exactly.
	{"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$04jpQlFqpaJ6VZbUUk/zpWGISNgUVsjbydDAuyrAG+s", "hunter2", false},
	// Weaker memory (16 MiB): valid, to be rehashed.
	{"$argon2id$v=19$m=16384,t=2,p=1$aXNwbXV4LXNhbHQtMDAwMQ$KbPtI8SR5ibf1kSAEWOjp4GXhAMZrG3jFvLbiL41M8M", "correct horse battery staple", true},
	// bcrypt ($2y$, cost 10): always rehashed.
	{"$2y$10$SEKU.jAb1OPMHNAevNOzW.HBCe6QWHIaUpHgs9AkHb2sf5G/cdhAC", "hunter2", true},
}

func TestKnownVectors(t *testing.T) {
	for _, v := range vectors {
		if err := CheckImportedHash(v.phc); err != nil {
			t.Errorf("CheckImportedHash(%s): %v", v.phc, err)
		}
		ok, rehash, err := VerifyPassword(v.phc, v.pw)
		if err != nil || !ok || rehash != v.rehash {
			t.Errorf("VerifyPassword(%s, right) = %v, %v, %v; want true, %v, nil", v.phc, ok, rehash, err, v.rehash)
		}
		ok, rehash, err = VerifyPassword(v.phc, v.pw+"x")
		if err != nil || ok || rehash {
			t.Errorf("VerifyPassword(%s, wrong) = %v, %v, %v; want false, false, nil", v.phc, ok, rehash, err)
		}
	}
}

func TestHashRoundTrip(t *testing.T) {
	h, err := HashPassword("s3cret pässword")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q: not our parameters", h)
	}
	parts := strings.Split(h, "$")
	if len(parts[4]) != 22 || len(parts[5]) != 43 { // 16 and 32 bytes, unpadded
		t.Fatalf("hash %q: salt/key lengths", h)
	}
	h2, _ := HashPassword("s3cret pässword")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if ok, rehash, err := VerifyPassword(h, "s3cret pässword"); !ok || rehash || err != nil {
		t.Fatalf("verify own hash = %v %v %v", ok, rehash, err)
	}
	if ok, _, _ := VerifyPassword(h, "s3cret password"); ok {
		t.Fatal("wrong password matched")
	}
	if ok, _, _ := VerifyPassword(h, ""); ok {
		t.Fatal("empty password matched")
	}
	if _, err := HashPassword(strings.Repeat("a", MaxPasswordLen+1)); !errors.Is(err, ErrPasswordTooLong) {
		t.Fatalf("long password: %v", err)
	}
	if ok, _, err := VerifyPassword(h, strings.Repeat("a", MaxPasswordLen+1)); ok || err != nil {
		t.Fatalf("long password verify = %v, %v", ok, err)
	}
}

func TestBcryptGenerated(t *testing.T) {
	for _, cost := range []int{bcrypt.MinCost, 10} {
		b, err := bcrypt.GenerateFromPassword([]byte("pw-123"), cost)
		if err != nil {
			t.Fatal(err)
		}
		if ok, rehash, err := VerifyPassword(string(b), "pw-123"); !ok || !rehash || err != nil {
			t.Fatalf("bcrypt cost %d: %v %v %v", cost, ok, rehash, err)
		}
		// $2a$ and $2b$ are the same algorithm.
		b2 := "$2a$" + string(b[4:])
		if ok, _, err := VerifyPassword(b2, "pw-123"); !ok || err != nil {
			t.Fatalf("bcrypt $2a$: %v %v", ok, err)
		}
	}
}

func TestRehashFlag(t *testing.T) {
	// Same password, parameters around ours: only ours says no rehash.
	salt := []byte("0123456789abcdef")
	for _, c := range []struct {
		p      argonParams
		keyLen int
		rehash bool
	}{
		{argonParams{19456, 2, 1}, 32, false},
		{argonParams{19456, 1, 1}, 32, true}, // weaker t
		{argonParams{8192, 2, 1}, 32, true},  // weaker m
		{argonParams{19456, 2, 1}, 16, true}, // shorter key
		{argonParams{19456, 3, 2}, 32, true}, // costlier within the cap: brought to ours
	} {
		phc := encodeArgon(c.p, salt, argonKey("pw", salt, c.p, c.keyLen))
		ok, rehash, err := VerifyPassword(phc, "pw")
		if !ok || err != nil || rehash != c.rehash {
			t.Errorf("%s: ok=%v rehash=%v err=%v, want rehash=%v", phc, ok, rehash, err, c.rehash)
		}
	}
}

func TestRefusals(t *testing.T) {
	salt := "c2FsdHNhbHRzYWx0c2FsdA"
	key := "04jpQlFqpaJ6VZbUUk/zpWGISNgUVsjbydDAuyrAG+s"
	costly := []string{
		"$argon2id$v=19$m=65537,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=4194304,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=5,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=5$" + salt + "$" + key,
		"$2b$13$SEKU.jAb1OPMHNAevNOzW.HBCe6QWHIaUpHgs9AkHb2sf5G/cdhAC",
		"$2b$31$SEKU.jAb1OPMHNAevNOzW.HBCe6QWHIaUpHgs9AkHb2sf5G/cdhAC",
	}
	for _, h := range costly {
		if err := CheckImportedHash(h); !errors.Is(err, ErrHashTooCostly) {
			t.Errorf("CheckImportedHash(%s) = %v, want ErrHashTooCostly", h, err)
		}
		start := time.Now()
		if ok, _, err := VerifyPassword(h, "hunter2"); ok || !errors.Is(err, ErrHashTooCostly) {
			t.Errorf("VerifyPassword(%s) = %v, %v", h, ok, err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("refusing %s took %v: it hashed", h, d)
		}
	}
	bad := []string{
		"",
		"hunter2",
		"$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2d$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$m=19456,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=7,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1,x=3$" + salt + "$" + key,
		"$argon2id$v=19$m=-1,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$!!!$" + key,
		"$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + strings.Repeat("A", 600),
		"$2y$10$short",
		"$2y$xx$SEKU.jAb1OPMHNAevNOzW.HBCe6QWHIaUpHgs9AkHb2sf5G/cdhAC",
	}
	for _, h := range bad {
		if err := CheckImportedHash(h); !errors.Is(err, ErrBadHash) {
			t.Errorf("CheckImportedHash(%q) = %v, want ErrBadHash", h, err)
		}
		if ok, _, err := VerifyPassword(h, "hunter2"); ok || !errors.Is(err, ErrBadHash) {
			t.Errorf("VerifyPassword(%q) = %v, %v", h, ok, err)
		}
	}
	// Padded base64 is tolerated.
	if err := CheckImportedHash("$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key + "="); err != nil {
		t.Errorf("padded: %v", err)
	}
}

func TestDummyVerifyTakesAsLong(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	h, _ := HashPassword("pw")
	// Interleaved, one of each in turn, so that a burst of other work on
	// a shared machine slows both alike (in two blocks of 5, one block
	// could take the whole burst: 46 ms against 22 once, in CI).
	var real, dum []time.Duration
	DummyVerify("warm")
	for range 9 {
		s := time.Now()
		_, _, _ = VerifyPassword(h, "nope")
		real = append(real, time.Since(s))
		s = time.Now()
		DummyVerify("nope")
		dum = append(dum, time.Since(s))
	}
	slices.Sort(real)
	slices.Sort(dum)
	r, d := real[len(real)/2], dum[len(dum)/2]
	if d < r/2 || d > r*2 {
		t.Fatalf("DummyVerify %v vs a real verify %v (medians of 9 interleaved)", d, r)
	}
}

func TestConcurrencyCap(t *testing.T) {
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for i := range 3 * slots.n {
		wg.Go(func() {
			if err := slots.acquire(context.Background(), i%2 == 0); err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			running.Add(-1)
			slots.release()
		})
	}
	wg.Wait()
	if p := peak.Load(); p > int32(slots.n) {
		t.Fatalf("peak %d concurrent, cap %d", p, slots.n)
	}
	// With every slot taken, a Ctx call gives up with its context.
	for range slots.n {
		if err := slots.acquire(context.Background(), true); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := HashPasswordCtx(ctx, "pw")
	_, _, err2 := VerifyPasswordCtx(ctx, vectors[0].phc, "pw")
	for range slots.n {
		slots.release()
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err2, context.DeadlineExceeded) {
		t.Fatalf("full semaphore: %v, %v", err, err2)
	}
}

func argonKey(pw string, salt []byte, p argonParams, keyLen int) []byte {
	return argon2.IDKey([]byte(pw), salt, p.t, p.m, p.p, uint32(keyLen))
}
