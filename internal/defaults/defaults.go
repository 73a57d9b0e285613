// Package defaults fills unset configuration fields from a package's
// documented defaults (each package's DefaultConfig), so that a zero value
// means the default in every Config.
package defaults

import "cmp"

// Positive sets *v to d when *v is zero or negative (unset or invalid).
func Positive[T cmp.Ordered](v *T, d T) {
	var zero T
	if *v <= zero {
		*v = d
	}
}
