package appliance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/auth"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/internal/tlsreload"
	"github.com/ispmux/ispmux/webhooks"
)

// FileProblem is a file named by the configuration that Start (or Run,
// for the API's and the metrics' certificates) would refuse, found by
// CheckFiles.
type FileProblem struct {
	Key string // the configuration key naming the file, e.g. "isp[0].token_files[1]"
	Err error
	// Unchecked: the file could not be read for want of permission
	// (ispmux check run as another user than ispmux): neither good nor
	// bad as far as CheckFiles knows.
	Unchecked bool
}

// CheckFiles reads the files cfg names that ispmux reads when it starts
// (token files, TLS certificates and keys, webhook secrets and CAs), with
// the functions it reads them with, and returns what it would refuse.
// A file is checked only where ispmux reads it: the API's certificate when
// the API listens (cfg.ServesAPI), the metrics' when metrics are served,
// the portal's when it is enabled, an ISP's webhook files when it has a
// webhook_url. The state directory must be a directory ispmux can write
// in, or one it can create (Start makes it with its parents).
func CheckFiles(cfg *configs.Config) []FileProblem {
	var out []FileProblem
	add := func(key string, err error) {
		out = append(out, FileProblem{Key: key, Err: err, Unchecked: errors.Is(err, fs.ErrPermission)})
	}
	if err := checkStateDir(cfg.Appliance.StateDir); err != nil {
		add("appliance.state_dir", err)
	}
	if _, err := auth.LoadTokens(auth.TokenFilesFromConfig(cfg)); err != nil {
		for _, e := range joined(err) {
			var fe *auth.FileError
			if errors.As(e, &fe) {
				add(fe.Key, fe.Err)
			} else {
				add("api", e)
			}
		}
	}
	for i, p := range cfg.ISPs {
		if p.WebhookURL == "" {
			continue
		}
		key := fmt.Sprintf("isp[%d].", i)
		if _, err := webhooks.ReadSecret(p.WebhookSecretFile); err != nil {
			add(key+"webhook_secret_file", err)
		}
		if p.WebhookCAFile != "" {
			if _, _, err := webhooks.ReadCA(p.WebhookCAFile); err != nil {
				add(key+"webhook_ca_file", err)
			}
		}
	}
	for _, c := range []struct {
		on             bool
		name, cert, ky string
	}{
		{cfg.ServesAPI(), "api", cfg.API.TLSCert, cfg.API.TLSKey},
		{cfg.Metrics.Enabled(), "metrics", cfg.Metrics.TLSCert, cfg.Metrics.TLSKey},
		{cfg.Portal.Enabled, "portal", cfg.Portal.TLSCert, cfg.Portal.TLSKey},
	} {
		if !c.on || c.cert == "" {
			continue
		}
		err := tlsreload.New(tlsreload.Config{Name: c.name, CertFile: c.cert, KeyFile: c.ky}).Load()
		if err != nil {
			add(c.name+"."+tlsKey(err, c.ky), err)
		}
	}
	return out
}

// checkStateDir reports why ispmux could not keep its store in dir: dir,
// or the nearest of its parents that exists when dir does not (the file
// it is under, if any: named, not the path under it), is not a
// directory, or is a symbolic link to nothing (Start's MkdirAll does not
// follow it: a target not made yet, a disk not mounted), or this process
// may not create files in it (a read-only file system included). A
// permission refusal wraps fs.ErrPermission: check run as another user
// than ispmux cannot tell.
func checkStateDir(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if errors.Is(err, unix.ENOTDIR) && d != filepath.Dir(d) {
			continue // under a file: the parent that is one is named
		}
		if errors.Is(err, fs.ErrNotExist) && d != filepath.Dir(d) {
			if target, lerr := os.Readlink(d); lerr == nil {
				return fmt.Errorf("%s is a symbolic link to %s, which does not exist", d, target)
			}
			continue // Start creates it
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			if d != filepath.Clean(dir) {
				return fmt.Errorf("%s is not a directory, so %s cannot be made under it", d, dir)
			}
			return fmt.Errorf("%s is not a directory", d)
		}
		if err := unix.Faccessat(unix.AT_FDCWD, d, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
			what := "write in"
			if d != filepath.Clean(dir) {
				what = "create " + dir + " in"
			}
			return fmt.Errorf("cannot %s %s: %w", what, d, &fs.PathError{Op: "access", Path: d, Err: err})
		}
		// Permission is not all: /proc and /sys say root may write, and
		// refuse the mkdir (a trial's state_dir = "/proc/x" passed check
		// and failed run). What run does is tried, and undone.
		if d == filepath.Clean(dir) {
			f, err := os.CreateTemp(d, ".ispmux-check-*")
			if err != nil {
				return fmt.Errorf("cannot create files in %s: %w", d, err)
			}
			f.Close()
			return os.Remove(f.Name())
		}
		tmp, err := os.MkdirTemp(d, ".ispmux-check-*")
		if err != nil {
			return fmt.Errorf("cannot create %s in %s: %w", dir, d, err)
		}
		return os.Remove(tmp)
	}
}

// tlsKey is the key a certificate pair's load error belongs to: tls_key
// when the key file could not be read, else tls_cert (the pair's parse
// errors name both files).
func tlsKey(err error, keyFile string) string {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == keyFile {
		return "tls_key"
	}
	return "tls_cert"
}

// joined is the errors errors.Join made err of, or err alone.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
