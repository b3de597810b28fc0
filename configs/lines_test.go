package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestIndexLines(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want map[string]int // a subset of the index
	}{
		{"tables and arrays of tables",
			"a = 1\n" + // 1
				"[t]\n" + // 2
				"b = 2 # c = 3\n" + // 3
				"[[isp]]\n" + // 4
				"name = 'x'\n" + // 5
				"  [[isp]]  # second\n" + // 6
				"name = \"y\"\n", // 7
			map[string]int{"a": 1, "t": 2, "t.b": 3, "isp": 4, "isp[0]": 4, "isp[0].name": 5, "isp[1]": 6, "isp[1].name": 7}},
		{"sub-table of the last element",
			"[[isp]]\n[[isp]]\n[isp.extra]\nk = 1\n[[isp.sub]]\nk = 2\n",
			map[string]int{"isp[1].extra": 3, "isp[1].extra.k": 4, "isp[1].sub[0]": 5, "isp[1].sub[0].k": 6}},
		{"dotted and quoted keys",
			"a.b.c = 1\n\"x y\".'z' = 2\n[ \"q.r\" . s ]\nt = 3\n",
			map[string]int{"a": 1, "a.b": 1, "a.b.c": 1, `"x y"`: 2, `"x y".z`: 2, `"q.r".s`: 3, `"q.r".s.t`: 4}},
		{"multi-line array",
			"l = [\n  1, # one\n  [2, 3],\n  { k = 4 },\n]\nafter = 1\n",
			map[string]int{"l": 1, "l[0]": 2, "l[1]": 3, "l[1][1]": 3, "l[2]": 4, "l[2].k": 4, "after": 6}},
		{"multi-line strings hide headers and comments",
			"s = \"\"\"\n[[isp]]\n# x = 1\n\\\n\"\"\"\"\"\nlit = '''\n[t]'''\nafter = \"a\\\"#\" # [c]\nend = 1\n",
			map[string]int{"s": 1, "lit": 6, "after": 8, "end": 9}},
		{"inline array of tables",
			"isp = [\n {name = \"a\"},\n {name = \"b\", next_hop = \"c\"},\n]\n",
			map[string]int{"isp[0]": 2, "isp[0].name": 2, "isp[1].next_hop": 3}},
		{"crlf", "a = 1\r\n[t]\r\nb = 2\r\n", map[string]int{"a": 1, "t": 2, "t.b": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := toml.Decode(tt.doc, new(map[string]any)); err != nil {
				t.Fatalf("test document is not TOML: %v", err)
			}
			got := indexLines([]byte(tt.doc))
			for k, w := range tt.want {
				if got[k] != w {
					t.Errorf("line of %s = %d, want %d (index %v)", k, got[k], w, got)
				}
			}
		})
	}
}

// TestIndexLinesCoversTree checks the indexer against the TOML parser: every
// key path in the parsed tree of every example file (and of the documents
// above) has a line, and leaf keys never go backwards within one table.
func TestIndexLinesCoversTree(t *testing.T) {
	files, _ := filepath.Glob("*.toml")
	docs := []string{
		"a = [[1, 2], [3]]\nb = {c = {d = 1}}\n[e.f]\ng = 'h'\n[[i]]\n[[i]]\nj = \"\"\"\nk = 1\n\"\"\"\n",
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	for i, doc := range docs {
		var tree map[string]any
		if _, err := toml.Decode(doc, &tree); err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		lines := indexLines([]byte(doc))
		var walk func(path string, v any)
		walk = func(path string, v any) {
			if path != "" {
				if l, ok := lines[path]; !ok || l < 1 || l > strings.Count(doc, "\n")+1 {
					t.Errorf("doc %d: path %s has line %d (present %v)", i, path, l, ok)
				}
			}
			switch v := v.(type) {
			case map[string]any:
				for k, e := range v {
					walk(joinKey(path, quoteKey(k)), e)
				}
			case []map[string]any:
				for j, e := range v {
					walk(indexKey(path, j), e)
				}
			case []any:
				for j, e := range v {
					walk(indexKey(path, j), e)
				}
			}
		}
		walk("", tree)
	}
}

func TestQuoteKey(t *testing.T) {
	got := []string{quoteKey("a_b-1"), quoteKey(""), quoteKey("a b"), quoteKey("x\ny")}
	want := []string{"a_b-1", `""`, `"a b"`, `"x\ny"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
