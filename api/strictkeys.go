package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// checkKeys refuses, in a JSON object raw to be decoded into v (a pointer
// to a struct), a member name given twice or not exactly one of v's JSON
// field names: encoding/json matches names case-insensitively and keeps
// the last of duplicates, so {"customer_id":"a","customer_id":"b"} and
// {"Device_Limit":2} were taken, where a reader of the request (a log, a
// proxy, the ISP's own code) may see another value or no field at all.
// Values are not looked into (the decoder checks them); a raw that is not
// an object, or is malformed, is left to the decoder to refuse. Fields of
// embedded structs are not listed: the request types have none.
func checkKeys(raw []byte, v any) error {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	names := jsonFields(t)
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		if _, ok := names[key]; !ok {
			for n := range names {
				if strings.EqualFold(n, key) {
					return fmt.Errorf("unknown field %q (field names are case-sensitive: %q)", key, n)
				}
			}
			return fmt.Errorf("unknown field %q (unknown fields are refused)", key)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// jsonFields returns a struct type's JSON fields by their JSON name, as
// encoding/json names them (the tag's name, else the field's; "-" and
// unexported fields left out).
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" || !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out[name] = sf
	}
	return out
}
