package auth

import (
	"errors"
	"strings"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// errAmbiguousJSON: a JOSE header or claims object that two JSON parsers
// could read differently. It is wrapped into ErrInvalidCredentials.
var errAmbiguousJSON = errors.New("duplicate or case-variant member name")

// strictObject is what decodeStrict decodes into: the fields of T and, in
// Unknown, every member that no field of T took by its exact name.
type strictObject[T any] struct {
	Fields  T                         `json:",embed"`
	Unknown map[string]jsontext.Value `json:",embed"`
}

// decodeStrict decodes the JSON object b into dst, whose type T has no JSON
// methods of its own, with the semantics that RFC 7515 §4 and RFC 7519 §4
// allow a JOSE parser and that encoding/json does not give:
//   - member names match T's field names exactly (encoding/json folds case,
//     so `"Herald"` would fill the `herald` field);
//   - a name that occurs twice in any object at any depth is refused
//     (encoding/json lets the last one win, another parser the first);
//   - a member whose name is a case variant of one of names (T's JSON
//     names, passed by the caller) is refused rather than ignored: a
//     case-insensitive parser elsewhere would take it;
//   - invalid UTF-8 is refused rather than replaced.
//
// Other unknown members are ignored, as JWT requires. The error wraps
// errAmbiguousJSON for the first two kinds of ambiguity.
func decodeStrict[T any](b []byte, dst *T, names ...string) error {
	var o strictObject[T]
	if err := json.Unmarshal(b, &o); err != nil {
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return errors.Join(errAmbiguousJSON, err)
		}
		return err
	}
	for name := range o.Unknown {
		for _, n := range names {
			if strings.EqualFold(name, n) {
				return errAmbiguousJSON
			}
		}
	}
	*dst = o.Fields
	return nil
}
