package configs

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// decoder is the strict half of Parse: it walks the generic tree the TOML
// parser produced against the Go structs, using their `toml` tags as the
// schema. Unlike toml.Decode into the structs, it does not stop at the
// first wrong type, and it knows the array index of every element, so each
// problem gets its own line.
//
// The schema uses only string, int, []string, struct and []struct fields.
type decoder struct {
	c       *collector
	defined map[string]bool // paths present in the file
}

func reflectValue(cfg *Config) reflect.Value { return reflect.ValueOf(cfg).Elem() }

// table decodes m into the struct rv; path is m's own path ("" at the top).
func (d *decoder) table(path string, m map[string]any, rv reflect.Value) {
	t := rv.Type()
	fields := map[string]int{}
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		key := joinKey(path, quoteKey(k))
		i, ok := fields[k]
		if !ok {
			d.c.add(key, "unknown key"+suggest(k, fields))
			continue
		}
		d.defined[key] = true
		d.value(key, m[k], rv.Field(i))
	}
}

func (d *decoder) value(key string, v any, fv reflect.Value) {
	switch fv.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.typeError(key, "a string", v)
			return
		}
		fv.SetString(s)
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			d.typeError(key, "an integer", v)
			return
		}
		fv.SetInt(n)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.typeError(key, "a boolean", v)
			return
		}
		fv.SetBool(b)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.typeError(key, "a table", v)
			return
		}
		d.table(key, m, fv)
	case reflect.Slice:
		var elems []any
		switch a := v.(type) {
		case []any:
			elems = a
		case []map[string]any:
			for _, m := range a {
				elems = append(elems, m)
			}
		default:
			if fv.Type().Elem().Kind() == reflect.Struct {
				name := key[strings.LastIndexByte(key, '.')+1:]
				d.typeError(key, fmt.Sprintf("an array of tables (write [[%s]], not [%s])", name, name), v)
			} else {
				d.typeError(key, "an array", v)
			}
			return
		}
		out := reflect.MakeSlice(fv.Type(), len(elems), len(elems))
		for i, e := range elems {
			d.value(indexKey(key, i), e, out.Index(i))
		}
		fv.Set(out)
	default:
		// Only reachable if a field of an unsupported kind is added to the schema.
		d.c.add(key, fmt.Sprintf("internal: field kind %s not supported by the decoder", fv.Kind()))
	}
}

func (d *decoder) typeError(key, want string, v any) {
	d.c.add(key, fmt.Sprintf("expected %s, got %s", want, describe(v)))
}

// describe names a TOML value's type, with the value when it is short.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			return "a string"
		}
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}

// suggest returns a "did you mean" hint for an unknown key close to a known one.
func suggest(k string, fields map[string]int) string {
	best, bestDist := "", 3
	for f := range fields {
		dist := editDistance(strings.ToLower(strings.ReplaceAll(k, "-", "_")), f)
		if dist < bestDist || dist == bestDist && best != "" && f < best {
			best, bestDist = f, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
