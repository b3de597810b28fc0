package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// The portal lab (Options.Portal): ispmux serves onboarding leases on acc0
// from OnboardingPool and its captive portal as PortalHostname at
// PortalAddr, with a certificate from a lab CA the browser tests trust.
const (
	PortalHostname = "portal.ispmux.test"
	PortalAddr     = "203.0.113.80"
	OnboardingPool = "100.72.0.0/24"
	OnboardingGW   = "100.72.0.1" // the pool's router (ispmux)
)

// Portal is the portal lab's files.
type Portal struct {
	Hostname string `json:"hostname"`
	Addr     string `json:"addr"`
	Pool     string `json:"pool"`
	CAFile   string `json:"ca_file"`   // the lab CA (PEM): what a client trusts
	CertFile string `json:"cert_file"` // the portal's certificate (PEM), signed by the CA
	KeyFile  string `json:"key_file"`  // its key (PEM)
	// LeaseTime is the onboarding lease (seconds); 0 is ispmux's default.
	LeaseTime int `json:"lease_time,omitempty"`
	// MaxLeases caps onboarding on acc0; 0 is ispmux's default.
	MaxLeases int `json:"max_leases,omitempty"`
}

// ispDisplay are the lab ISPs' names and descriptions on the portal.
var ispDisplay = map[string][2]string{
	"alpha": {"Alpha Broadband", "Fibre to the home, 1 Gbit/s both ways."},
	"beta":  {"Beta Telecom", "Cable, 500 Mbit/s down, 50 up."},
	"gamma": {"Gamma Net", "Fixed wireless."},
}

func newPortal(stateDir string, leaseTime time.Duration, maxLeases int) *Portal {
	return &Portal{
		Hostname: PortalHostname, Addr: PortalAddr, Pool: OnboardingPool,
		CAFile:    filepath.Join(stateDir, "portal-ca.pem"),
		CertFile:  filepath.Join(stateDir, "portal.crt"),
		KeyFile:   filepath.Join(stateDir, "portal.key"),
		LeaseTime: int(leaseTime / time.Second), MaxLeases: maxLeases,
	}
}

// write makes the lab CA and the portal's certificate.
func (p *Portal) write() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ispmux lab CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: p.Hostname},
		DNSNames: []string{p.Hostname}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{p.CAFile, "CERTIFICATE", caDER, 0o644},
		{p.CertFile, "CERTIFICATE", der, 0o644},
		{p.KeyFile, "PRIVATE KEY", kder, 0o600},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	return nil
}

// portalTOML is the [portal] table and the ISPs' display lines of the lab.
func (p *Portal) portalTOML() string {
	return fmt.Sprintf("\n[portal]\nhostname = %q\naddress = %q\ntls_cert = %q\ntls_key = %q\ninterface = \"ispmux-portal\"\n",
		p.Hostname, p.Addr, p.CertFile, p.KeyFile)
}

// onboardingTOML is the [access.onboarding] table of acc0.
func (p *Portal) onboardingTOML() string {
	s := fmt.Sprintf("[access.onboarding]\npool = %q\n", p.Pool)
	if p.LeaseTime > 0 {
		s += fmt.Sprintf("lease_time = \"%ds\"\n", p.LeaseTime)
	}
	if p.MaxLeases > 0 {
		s += fmt.Sprintf("max_leases = %d\n", p.MaxLeases)
	}
	return s
}

// resolvDir is where `ip netns exec NS` finds NS's own /etc files.
var resolvDir = "/etc/netns"

// SetResolver makes every program started with `ip netns exec` in sub's
// namespace (a browser) use nameserver addr: it writes
// /etc/netns/NS/resolv.conf, which Down removes.
func (t *Topology) SetResolver(sub Sub, addr string) error {
	dir := filepath.Join(resolvDir, sub.NS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("# ispmux lab\nnameserver "+addr+"\noptions timeout:1 attempts:2\n"), 0o644)
}

// removeResolvers removes /etc/netns/NS for lab id's namespaces NS
// (SetResolver's files; isLabNamespace: not another lab's).
func removeResolvers(id string) error {
	ents, err := os.ReadDir(resolvDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if isLabNamespace(id, e.Name()) {
			if err := os.RemoveAll(filepath.Join(resolvDir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
