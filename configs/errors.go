package configs

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File string // the file name given to Parse
	Line int    // 1-based; 0 when the problem has no line (e.g. a missing section)
	Key  string // dotted key path, e.g. "isp[1].next_hop"; empty for syntax errors without a key
	Msg  string
}

// Error formats the problem as "file:line: key: msg" ("file: key: msg" when
// Line is 0, "file:line: msg" when Key is empty): Where, then the message.
func (e *Error) Error() string {
	return e.Where() + ": " + e.Msg
}

// Where is where the problem is: "file:line: key" ("file: key" when Line
// is 0, "file:line" when Key is empty).
func (e *Error) Where() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(printable(e.Key))
	}
	return b.String()
}

// Errors is every problem found in one file, in line order. It is the error
// type returned by Parse; use errors.As to get it (or one *Error).
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// collector gathers errors for one file, looking lines up in the index. It
// keeps the first error per key: a key with a wrong type is not reported
// again as missing or invalid by validation. The line index (a path per
// key of the file: as large as the file's parsed tree) is built at the
// first error only, so a valid file never pays for it.
type collector struct {
	file  string
	src   []byte
	lines map[string]int // nil until the first error
	errs  Errors
	seen  map[string]bool
	// under holds every key that has an error on a key below it (the
	// ancestors of the keys in seen), so failed is O(1), not a walk of
	// every error (a file with many errors stays linear).
	under map[string]bool
}

func newCollector(file string, src []byte) *collector {
	return &collector{file: file, src: src, seen: map[string]bool{}, under: map[string]bool{}}
}

// add records a problem with key, at the line of key or, when key is not in
// the file, at the line of its closest enclosing table.
func (c *collector) add(key, msg string) {
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	for i := 1; i < len(key); i++ {
		if key[i] == '.' || key[i] == '[' {
			c.under[key[:i]] = true
		}
	}
	if c.lines == nil {
		c.lines = indexLines(c.src)
	}
	c.errs = append(c.errs, &Error{File: c.file, Line: lineOf(c.lines, key), Key: key, Msg: oneLine(msg)})
}

// failed reports whether key (or a key under it) already has an error.
func (c *collector) failed(key string) bool {
	return c.seen[key] || c.under[key]
}

func (c *collector) result() error {
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, func(a, b *Error) int {
		// Errors without a line (whole sections missing) come last.
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return cmp.Compare(la, lb)
	})
	return c.errs
}

// lineOf returns the line of key, or of its closest ancestor in the index
// ("isp[1].name" → "isp[1]" → "isp"), or 0.
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// printable spells a key so that it stays on one line and shows what is in
// it: a quoted TOML key may hold any character, "\n" included.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
}

// ErrorAt is the problem msg with key of the configuration file (named
// file, read as src), at the key's line as Parse would report it: for
// problems found after parsing, in the files the configuration names
// (ispmux check).
func ErrorAt(file string, src []byte, key, msg string) *Error {
	c := newCollector(file, src)
	c.add(key, msg)
	return c.errs[0]
}
