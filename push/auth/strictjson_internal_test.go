package auth

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// jsonNames collects the encoding/json names of t's fields, descending into
// embedded structs, as encoding/json and decodeStrict see them.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			names = append(names, jsonNames(f.Type)...)
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	return names
}

// TestStrictNamesMatchTags: the name lists decodeStrict checks case variants
// against are exactly the decoded types' JSON names, so a field added to
// claims, heraldClaim or joseHeader cannot be left out of the check.
func TestStrictNamesMatchTags(t *testing.T) {
	for _, tt := range []struct {
		v     any
		names []string
	}{
		{claims{}, claimNames()},
		{heraldClaim{}, heraldNames()},
		{joseHeader{}, headerNames()},
	} {
		got, want := jsonNames(reflect.TypeOf(tt.v)), slices.Clone(tt.names)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%T: struct JSON names %q, name list %q", tt.v, got, want)
		}
	}
}
