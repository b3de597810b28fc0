// Package auth holds the secrets of ispmux's management plane: customer
// passwords and API bearer tokens.
//
// # Passwords
//
// Customer passwords are stored as PHC strings. New hashes are argon2id
// (RFC 9106) with these parameters:
//
//	memory      m = 19456 KiB (19 MiB)
//	iterations  t = 2
//	parallelism p = 1
//	salt        16 bytes from crypto/rand
//	key         32 bytes
//
// written as $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>, salt and key in
// unpadded standard base64 (the format of the reference implementation and
// of every argon2 library). Verification also accepts bcrypt ($2a$, $2b$,
// $2y$) so an ISP can import the hashes it already has; a successful verify
// of a hash whose parameters are not ours (weaker, bcrypt, or costlier
// within the import cap) says rehash, and the caller stores a fresh hash.
//
// Imported hashes are refused when they are unparsable or costlier than
// the import cap (argon2id m > 64 MiB, t > 4, p > 4; bcrypt cost > 12): a
// tenant must not be able to make the box spend unbounded memory or CPU on
// one claim.
//
// Every hash and verify takes a slot of a semaphore of GOMAXPROCS - 1
// slots, at least one (argon2id at our parameters is 19 MiB and ~20–40 ms
// of one core), so a burst of claims queues instead of exhausting memory;
// a verify waiting (a claim's) is given a slot before any hash waiting (an
// import's, one per line), so one ISP's import does not hold up every
// ISP's claims; the Ctx variants give up waiting when their context ends. DummyVerify spends the time of
// a real verify for a customer that does not exist, so the answer time
// does not tell whether a customer ID is known.
//
// # Tokens
//
// API tokens are random strings of 32 bytes (256 bits) in unpadded URL-safe
// base64 (NewToken). A token file holds either "sha256:<64 hex>", the
// SHA-256 of the token (preferred: the box never sees the token at rest),
// or the token itself (at least 22 characters, hashed when loaded); a
// file every user may write is refused, and so is one holding the token
// itself that every user may read (ReadTokenFile). Tokens
// keeps only the SHA-256s; a presented bearer token is hashed and compared
// in constant time with every known hash, and the token itself is never
// kept, logged or put into an error.
package auth
