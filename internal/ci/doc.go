// Package ci holds the tests of the CI scripts in .ci/ (run by `make test`
// like every other package). It has no code of its own.
package ci
