package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/configs"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewToken(t *testing.T) {
	tok, line := NewToken()
	if len(tok) != 43 || strings.ContainsAny(tok, "+/= ") {
		t.Fatalf("token %q: want 43 URL-safe characters", tok)
	}
	sum := sha256.Sum256([]byte(tok))
	if line != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("line %q", line)
	}
	if tok2, _ := NewToken(); tok2 == tok {
		t.Fatal("two equal tokens")
	}
}

func TestTokensLookupAndRotation(t *testing.T) {
	dir := t.TempDir()
	opTok, opLine := NewToken()
	aTok, _ := NewToken()
	bTok, bLine := NewToken()
	cTok, cLine := NewToken()
	writeFile(t, filepath.Join(dir, "operator.token"), opLine+"\n")
	writeFile(t, filepath.Join(dir, "alpha-1.token"), aTok+"\n") // plaintext: hashed at load
	writeFile(t, filepath.Join(dir, "beta-1.token"), strings.ToUpper(bLine[:7])+bLine[7:]+"\r\n")
	writeFile(t, filepath.Join(dir, "installer.token"), cLine)

	cfg := configs.Default()
	cfg.API.OperatorTokenFile = filepath.Join(dir, "operator.token")
	cfg.API.ClaimTokenFiles = []string{filepath.Join(dir, "installer.token")}
	cfg.ISPs = []configs.ISP{
		{Name: "alpha", TokenFiles: []string{filepath.Join(dir, "alpha-1.token")}},
		{Name: "beta", TokenFiles: []string{filepath.Join(dir, "beta-1.token")}},
	}
	files := TokenFilesFromConfig(cfg)
	if len(files) != 4 || files[1].Key != "isp[0].token_files[0]" || files[3].Key != "api.claim_token_files[0]" {
		t.Fatalf("files %+v", files)
	}
	tk, err := LoadTokens(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tok  string
		want Principal
	}{
		{opTok, Principal{Kind: KindOperator, Name: "operator"}},
		{aTok, Principal{Kind: KindISP, Name: "alpha-1", ISP: "alpha"}},
		{bTok, Principal{Kind: KindISP, Name: "beta-1", ISP: "beta"}},
		{cTok, Principal{Kind: KindClaim, Name: "installer"}},
	} {
		if p, ok := tk.Lookup(c.tok); !ok || p != c.want {
			t.Errorf("Lookup = %+v %v, want %+v", p, ok, c.want)
		}
	}
	for _, bad := range []string{"", "x", aTok + " ", aTok[:42], opLine, strings.Repeat("a", MaxTokenLen+1)} {
		if p, ok := tk.Lookup(bad); ok {
			t.Errorf("Lookup(%q) = %+v", bad, p)
		}
	}

	// Rotation: beta gets a second file, then the first is replaced.
	b2Tok, b2Line := NewToken()
	writeFile(t, filepath.Join(dir, "beta-2.token"), b2Line)
	cfg.ISPs[1].TokenFiles = append(cfg.ISPs[1].TokenFiles, filepath.Join(dir, "beta-2.token"))
	if err := tk.SetFiles(TokenFilesFromConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	if _, ok := tk.Lookup(bTok); !ok {
		t.Fatal("old beta token refused while both files are configured")
	}
	if p, ok := tk.Lookup(b2Tok); !ok || p.Name != "beta-2" {
		t.Fatalf("new beta token: %+v %v", p, ok)
	}
	b3Tok, _ := NewToken()
	writeFile(t, filepath.Join(dir, "beta-1.token"), b3Tok)
	if err := tk.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := tk.Lookup(bTok); ok {
		t.Fatal("rotated-out token still accepted after Reload")
	}
	if _, ok := tk.Lookup(b3Tok); !ok {
		t.Fatal("replacement token refused")
	}

	// A broken file keeps the old set.
	writeFile(t, filepath.Join(dir, "alpha-1.token"), "short")
	if err := tk.Reload(); err == nil || !strings.Contains(err.Error(), "isp[0].token_files[0]") || strings.Contains(err.Error(), "short") {
		t.Fatalf("Reload with a short token: %v", err)
	}
	if _, ok := tk.Lookup(aTok); !ok {
		t.Fatal("failed Reload dropped the tokens in use")
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t")
	secret := "s3cr3t-t0ken-that-is-long-enough"
	for _, c := range []struct {
		content string
		ok      bool
	}{
		{secret, true},
		{"  " + secret + "\n\n", true},
		{"sha256:" + strings.Repeat("ab", 32), true},
		{"sha256:" + strings.Repeat("AB", 32), true},
		{"", false},
		{"\n", false},
		{"sha256:" + strings.Repeat("ab", 31), false},
		{"sha256:" + strings.Repeat("zz", 32), false},
		{"SHA256:" + strings.Repeat("zz", 32), false}, // not taken for a token of its own
		{secret[:21], false},
		{secret + "\n" + secret, false},
		{"s3cr3t token with blanks in it", false},
		{"s3cr3t-t0ken-\x01-control-chars", false},
		{strings.Repeat("a", 5000), false},
	} {
		writeFile(t, p, c.content)
		_, err := ReadTokenFile(p)
		if (err == nil) != c.ok {
			t.Errorf("%q: err %v", c.content, err)
		}
		if err != nil && len(c.content) > 8 && strings.Contains(err.Error(), strings.TrimSpace(c.content)[:8]) {
			t.Errorf("error quotes the file's content: %v", err)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := ReadTokenFile(dir); err == nil {
		t.Error("directory accepted")
	}
	// The same token in two files is refused (one token, one principal).
	writeFile(t, filepath.Join(dir, "a"), secret)
	writeFile(t, filepath.Join(dir, "b"), "sha256:"+func() string { s := sha256.Sum256([]byte(secret)); return hex.EncodeToString(s[:]) }())
	_, err := LoadTokens([]TokenFile{
		{Path: filepath.Join(dir, "a"), Key: "k1", Principal: Principal{Kind: KindISP, ISP: "x"}},
		{Path: filepath.Join(dir, "b"), Key: "k2", Principal: Principal{Kind: KindOperator}},
	})
	if err == nil || !strings.Contains(err.Error(), "same token") {
		t.Fatalf("duplicate token: %v", err)
	}
}

func TestTokenName(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/ispmux/beta-2.token": "beta-2",
		"/etc/ispmux/operator":     "operator",
		"/x/.hidden":               ".hidden",
		"/x/a.b.c":                 "a.b",
	} {
		if got := TokenName(in); got != want {
			t.Errorf("TokenName(%q) = %q, want %q", in, got, want)
		}
	}
}
