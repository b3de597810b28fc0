// Package shellquote renders an argument vector as a command line to copy
// and paste into a POSIX shell: the one both the benchmarks' reports
// (bench) and the hints of `ispmux ctl` print.
package shellquote

import "strings"

// Join is argv as one POSIX shell command line, argv[0] the command's
// name: each word as it is when no shell gives any of its characters a
// meaning, else in single quotes (a quote inside closed, escaped and
// reopened). An empty word is a pair of quotes. A word holding '=' is left
// as it is: after the command's name a shell reads "--search=false" or
// "a=b" as one plain word (only before the name would it be an
// assignment).
func Join(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = word(a)
	}
	return strings.Join(q, " ")
}

// word is s as one shell word.
func word(s string) string {
	plain := s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
	})
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
