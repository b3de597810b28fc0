package main

import (
	"crypto/x509"
	"errors"
	"net/http"
	"syscall"

	"github.com/ispmux/ispmux/api/client"
)

// authHint is err with a hint when it is the API refusing the token (401),
// refusing this command to it (403) or the token's form (400
// malformed-authorization: a blank or a quote in it): what the operator
// can do about it, after the API's own words (which report prints). A trial's ISP
// token got "Not allowed for this token: this endpoint is the
// operator's" from `ctl stats`, and nothing said which token it wanted or
// how to give it. An error already hinted (ispHint: an ISP's token
// without --isp) is left as it is; over the control socket, which acts as
// the operator, only a claim's wrong password is hinted.
func (e *ctlEnv) authHint(err error, args []string) error {
	var p *client.Error
	var h hinted
	if !errors.As(err, &p) || errors.As(err, &h) {
		return err
	}
	if p.Status == http.StatusBadRequest && p.Slug() == "malformed-authorization" {
		return hinted{err, "the token (the one " + e.tokenSource() + ") is not one word a bearer token can be: " +
			"it has a blank, a quote or another character that is not a letter, a digit or one of - . _ ~ + / (then = padding) in it. " +
			"Give the token as `ispmux ctl token` printed it (line 1), nothing around it"}
	}
	if p.Status != http.StatusUnauthorized && p.Status != http.StatusForbidden {
		return err
	}
	// Over the socket only a claim's credentials can be refused: the
	// socket needs no token, the claim still the customer's password.
	if !e.set["api"] && p.Slug() != "bad-credentials" {
		return err
	}
	cmd := "`ctl " + e.cmd.name + "`"
	switch p.Slug() {
	case "unauthorized":
		return hinted{err, "the box knows no such token (the one " + e.tokenSource() + "): a typo, another box's, or one rotated out. " +
			"Give a token whose sha256: line is in a token file of the box's configuration ([api] operator_token_file, " +
			"claim_token_files, an ISP's token_files; `ispmux ctl token --file FILE` makes one, then SIGHUP), or run ctl " +
			"as root on the box over its control socket (-c FILE or --socket PATH), which needs no token"}
	case "bad-credentials":
		isp, id := "ISP", "ID"
		if e.cmd.name == "claim" {
			isp, id = args[0], args[1]
		}
		return hinted{err, "the ISP, customer ID or password is wrong (the API does not say which, on purpose): check them; " +
			"the customer's ISP or the operator sets a new password with `" + e.again("customer-set", isp, id, "--password-stdin") + "`"}
	case "forbidden":
	default:
		// Not the API's problem: something in front of it answered.
		return hinted{err, "this answer is not the API's (no problem details): is --api " + e.g.apiURL +
			" the API's address, with nothing in between that asks for its own credentials?"}
	}
	operator := "give the operator's token (the one whose sha256: line is in [api] operator_token_file: --token-file FILE, " +
		"or $" + tokenEnv + "), or run it as root on the box over the control socket, where it acts as the operator: `" +
		e.socketAgain(args)
	switch kind, isp := e.tokenKind(); {
	case e.cmd.name == "claim":
		// Only an ISP's token is refused a claim.
		return hinted{err, cmd + " takes a claim token (an installer's: [api] claim_token_files) or the operator's; with the ISP's " +
			"token attach the device to its customer: `" + e.again(append([]string{"device-add", args[0], args[2], args[1]}, accessArg(e)...)...) + "`"}
	case kind == "claim":
		if e.cmd.operator {
			return hinted{err, "this is a claim token (an installer's): it may only run `ctl claim`. " + cmd + " is the operator's: " + operator}
		}
		return hinted{err, "this is a claim token (an installer's): it may only run `ctl claim`. " + cmd +
			" needs the ISP's token (its own objects) or the operator's"}
	case kind == "isp":
		return hinted{err, cmd + " is the operator's, and this is ISP " + isp + "'s token: " + operator}
	}
	return hinted{err, cmd + " is the operator's here: " + operator}
}

// tokenKind tells an API token that a command was refused (403): "claim"
// (it may not even list ISPs), "isp" and its ISP (it lists its own), or ""
// when the listing fails otherwise. The operator's token is never
// refused.
func (e *ctlEnv) tokenKind() (kind, isp string) {
	c, err := e.client()
	if err != nil {
		return "", ""
	}
	isps, err := c.ISPs(e.ctx)
	var p *client.Error
	switch {
	case errors.As(err, &p) && p.Status == http.StatusForbidden:
		return "claim", ""
	case err != nil:
		return "", ""
	case len(isps) == 1:
		return "isp", isps[0].Name
	}
	return "isp", "ISP"
}

// tokenSource says where the token ctl presented came from.
func (e *ctlEnv) tokenSource() string {
	switch {
	case e.set["token"]:
		return "given with --token"
	case e.set["token-file"]:
		return "in " + e.g.tokenFile
	}
	return "in $" + tokenEnv
}

// socketAgain is the command line of this command over the control
// socket of the default configuration (on the box, as root), with args.
// The command's own flags are not repeated: "with its flags" says so.
func (e *ctlEnv) socketAgain(args []string) string {
	line := (&ctlEnv{set: map[string]bool{"c": true}, g: ctlGlobal{config: defaultConfig}}).again(append([]string{e.cmd.name}, args...)...)
	for f := range e.set {
		switch f {
		case "c", "socket", "api", "token", "token-file", "ca", "insecure", "json":
		default:
			return line + "` with its flags as given (-c: your configuration file)"
		}
	}
	return line + "` (-c: your configuration file)"
}

// accessArg is the --access a claim was given, for the device-add it
// hints at.
func accessArg(e *ctlEnv) []string {
	if e.o.access == "" {
		return nil
	}
	return []string{"--access", e.o.access}
}

// connHint is err with a hint when ctl, over --api, could not talk to the
// API at all: its certificate signed by a CA this host does not trust, or
// naming another host, or nothing listening at the address. A trial's
// `ctl --api https://127.0.0.1:8443 isps` against an API whose
// certificate its own CA signed printed "x509: certificate signed by
// unknown authority" and no word of --ca.
func (e *ctlEnv) connHint(err error) error {
	var h hinted
	if err == nil || !e.set["api"] || errors.As(err, &h) {
		return err
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return hinted{err, "the API's certificate is not signed by a CA this host trusts: give the CA that signed [api] tls_cert with --ca FILE " +
			"(or, on a loopback address only, --insecure: no certificate checks)"}
	case errors.As(err, &hn):
		return hinted{err, "the API's certificate does not name the host of --api " + e.g.apiURL +
			": give an address or name it carries (a subject alternative name; the common name is not used)"}
	case errors.Is(err, syscall.ECONNREFUSED):
		return hinted{err, "nothing answers at --api " + e.g.apiURL + ": is ispmux running, with this address as its [api] listen " +
			"(a listen changed by SIGHUP takes a restart; in another network namespace, run ctl there)?"}
	}
	return err
}
