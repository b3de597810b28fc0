package configs

import (
	"bytes"
	"strconv"
	"strings"
)

// indexLines maps the path of every table header, key and array element in a
// TOML document to its 1-based line. Paths use the same spelling as error
// keys: components joined by '.', quoted when not bare (see quoteKey), and an
// index for each array-of-tables element or array value ("isp[1].next_hop",
// "isp[0].dhcp_servers[1]"). Implicit parents ("a" for "[a.b]" or "a.b = 1")
// get the line of their first mention.
//
// It is a scanner, not a validator: it runs on text the TOML parser has
// already accepted, and on anything else it makes progress and gives up
// gracefully (it never panics and always terminates).
func indexLines(src []byte) map[string]int {
	ix := &lineIndexer{src: src, line: 1, lines: map[string]int{}, arrays: map[string]int{}}
	ix.document()
	return ix.lines
}

type lineIndexer struct {
	src    []byte
	pos    int
	line   int
	lines  map[string]int
	arrays map[string]int // array-of-tables path (with parent indices) → elements seen
	at     int            // keyAt: the line asked about
	atKey  string         // keyAt: the last key written on line at
}

// keyAt returns the path of the last key written on line (1-based) of
// src, with its array indices ("isp[1].name"), or "" when none is. Unlike
// indexLines, a key written twice (a syntax error) is found on each of
// its lines.
func keyAt(src []byte, line int) string {
	ix := &lineIndexer{src: src, line: 1, lines: map[string]int{}, arrays: map[string]int{}, at: line}
	ix.document()
	return ix.atKey
}

func (ix *lineIndexer) eof() bool { return ix.pos >= len(ix.src) }

func (ix *lineIndexer) peek() byte {
	if ix.eof() {
		return 0
	}
	return ix.src[ix.pos]
}

func (ix *lineIndexer) has(s string) bool {
	return bytes.HasPrefix(ix.src[min(ix.pos, len(ix.src)):], []byte(s))
}

func (ix *lineIndexer) setFirst(path string, line int) {
	if _, ok := ix.lines[path]; !ok {
		ix.lines[path] = line
	}
}

func (ix *lineIndexer) document() {
	prefix := ""
	for {
		ix.skipSpace(true)
		if ix.eof() {
			return
		}
		if ix.peek() == '[' {
			prefix = ix.header()
		} else {
			ix.keyValue(prefix)
		}
		ix.skipLine()
	}
}

// skipSpace skips blanks and comments, and newlines too when nl is set.
func (ix *lineIndexer) skipSpace(nl bool) {
	for !ix.eof() {
		switch ix.src[ix.pos] {
		case ' ', '\t', '\r':
			ix.pos++
		case '#':
			for !ix.eof() && ix.src[ix.pos] != '\n' {
				ix.pos++
			}
		case '\n':
			if !nl {
				return
			}
			ix.line++
			ix.pos++
		default:
			return
		}
	}
}

// skipLine moves past the next newline.
func (ix *lineIndexer) skipLine() {
	for !ix.eof() {
		c := ix.src[ix.pos]
		ix.pos++
		if c == '\n' {
			ix.line++
			return
		}
	}
}

// header reads "[a.b]" or "[[a.b]]" and returns the path keys below it
// belong to.
func (ix *lineIndexer) header() string {
	line := ix.line
	ix.pos++ // '['
	array := ix.peek() == '['
	if array {
		ix.pos++
	}
	keys := ix.keys()
	cur := ""
	for i, k := range keys {
		cur = joinKey(cur, k)
		if array && i == len(keys)-1 {
			n := ix.arrays[cur]
			ix.arrays[cur] = n + 1
			ix.setFirst(cur, line)
			cur = indexKey(cur, n)
			ix.lines[cur] = line
			return cur
		}
		if n := ix.arrays[cur]; n > 0 {
			// [isp.sub] refers to the last [[isp]] element.
			cur = indexKey(cur, n-1)
		}
		if i == len(keys)-1 {
			ix.lines[cur] = line
		} else {
			ix.setFirst(cur, line)
		}
	}
	return cur
}

// keyValue reads "a.b = value" under prefix.
func (ix *lineIndexer) keyValue(prefix string) {
	line := ix.line
	keys := ix.keys()
	if len(keys) == 0 {
		return
	}
	cur := prefix
	for _, k := range keys {
		cur = joinKey(cur, k)
		ix.setFirst(cur, line)
	}
	if line == ix.at {
		ix.atKey = cur
	}
	ix.skipSpace(false)
	if ix.peek() != '=' {
		return
	}
	ix.pos++
	ix.skipSpace(false)
	ix.value(cur)
}

// keys reads a dotted key and returns its components, quoted as quoteKey does.
func (ix *lineIndexer) keys() []string {
	var out []string
	for {
		ix.skipSpace(false)
		k, ok := ix.simpleKey()
		if !ok {
			return out
		}
		out = append(out, quoteKey(k))
		ix.skipSpace(false)
		if ix.peek() != '.' {
			return out
		}
		ix.pos++
	}
}

func (ix *lineIndexer) simpleKey() (string, bool) {
	switch ix.peek() {
	case '"':
		start := ix.pos
		ix.basicString()
		raw := string(ix.src[start:ix.pos])
		if s, err := strconv.Unquote(raw); err == nil {
			return s, true
		}
		return strings.Trim(raw, `"`), true
	case '\'':
		start := ix.pos
		ix.literalString()
		return strings.Trim(string(ix.src[start:ix.pos]), "'"), true
	}
	start := ix.pos
	for !ix.eof() && isBareKeyChar(ix.src[ix.pos]) {
		ix.pos++
	}
	return string(ix.src[start:ix.pos]), ix.pos > start
}

// value reads one value, recording array elements and inline-table keys
// under path.
func (ix *lineIndexer) value(path string) {
	switch {
	case ix.eof():
	case ix.has(`"""`):
		ix.multiString(`"""`, true)
	case ix.has(`'''`):
		ix.multiString(`'''`, false)
	case ix.peek() == '"':
		ix.basicString()
	case ix.peek() == '\'':
		ix.literalString()
	case ix.peek() == '[':
		ix.array(path)
	case ix.peek() == '{':
		ix.inlineTable(path)
	default: // number, boolean, date-time: up to a delimiter
		for !ix.eof() && !strings.ContainsRune(",]}#\n", rune(ix.src[ix.pos])) {
			ix.pos++
		}
	}
}

func (ix *lineIndexer) array(path string) {
	ix.pos++ // '['
	for i := 0; ; i++ {
		ix.skipSpace(true)
		if ix.eof() {
			return
		}
		switch ix.peek() {
		case ']':
			ix.pos++
			return
		case ',': // only in broken input; keep going
			ix.pos++
			continue
		}
		start := ix.pos
		el := indexKey(path, i)
		ix.lines[el] = ix.line
		ix.value(el)
		ix.skipSpace(true)
		switch ix.peek() {
		case ',':
			ix.pos++
		case ']':
			ix.pos++
			return
		default:
			if ix.pos == start {
				ix.pos++
			}
		}
	}
}

func (ix *lineIndexer) inlineTable(path string) {
	ix.pos++ // '{'
	for {
		ix.skipSpace(true)
		if ix.eof() {
			return
		}
		switch ix.peek() {
		case '}':
			ix.pos++
			return
		case ',':
			ix.pos++
			continue
		}
		start, line := ix.pos, ix.line
		cur := path
		for _, k := range ix.keys() {
			cur = joinKey(cur, k)
			ix.setFirst(cur, line)
		}
		if line == ix.at && cur != path {
			ix.atKey = cur
		}
		ix.skipSpace(false)
		if ix.peek() == '=' {
			ix.pos++
			ix.skipSpace(false)
			ix.value(cur)
		}
		if ix.pos == start {
			ix.pos++
		}
	}
}

func (ix *lineIndexer) basicString() {
	ix.pos++ // '"'
	for !ix.eof() {
		switch ix.src[ix.pos] {
		case '\\':
			ix.pos += 2
			continue
		case '"':
			ix.pos++
			return
		case '\n':
			return
		}
		ix.pos++
	}
	ix.pos = min(ix.pos, len(ix.src))
}

func (ix *lineIndexer) literalString() {
	ix.pos++ // '\''
	for !ix.eof() {
		switch ix.src[ix.pos] {
		case '\'':
			ix.pos++
			return
		case '\n':
			return
		}
		ix.pos++
	}
}

func (ix *lineIndexer) multiString(delim string, escapes bool) {
	ix.pos += len(delim)
	for !ix.eof() {
		c := ix.src[ix.pos]
		switch {
		case escapes && c == '\\':
			ix.pos++
			if !ix.eof() && ix.src[ix.pos] == '\n' {
				ix.line++
			}
			ix.pos++
			continue
		case ix.has(delim):
			ix.pos += len(delim)
			// Up to two more quotes belong to the content: """a"""""
			for n := 0; n < 2 && ix.peek() == delim[0]; n++ {
				ix.pos++
			}
			return
		case c == '\n':
			ix.line++
		}
		ix.pos++
	}
	ix.pos = min(ix.pos, len(ix.src))
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// quoteKey spells one key component as error messages show it: bare when it
// can be, otherwise Go-quoted (which also keeps messages on one line).
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBareKeyChar(k[i]) {
			return strconv.Quote(k)
		}
	}
	return k
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
