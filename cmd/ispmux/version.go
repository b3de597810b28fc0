package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

func cmdVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version")
	h := &help{name: "ispmux version", summary: "Print the build's version: the module version, the VCS revision and time\n" +
		"(when the binary was built from a checkout) and the Go version.", flags: fs}
	rest, err := parseArgs(fs, args)
	if err != nil {
		return h.parseError(err, stdout)
	}
	if len(rest) > 0 {
		return h.usage("unexpected argument(s) %q", rest)
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionLine(bi))
	return nil
}

// versionLine is "ispmux VERSION (REVISION, TIME[, modified]) GOVERSION"
// from the build information (nil: unknown).
func versionLine(bi *debug.BuildInfo) string {
	if bi == nil {
		return "ispmux (unknown version) " + runtime.Version()
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var vcs []string
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		vcs = append(vcs, "revision "+rev)
	}
	if at != "" {
		vcs = append(vcs, at)
	}
	if modified {
		vcs = append(vcs, "modified")
	}
	out := "ispmux " + v
	if len(vcs) > 0 {
		out += " (" + strings.Join(vcs, ", ") + ")"
	}
	gv := bi.GoVersion
	if gv == "" {
		gv = runtime.Version()
	}
	return out + " " + gv
}
