package engine

import (
	"sort"
	"strings"
)

// joinErrors is errors.Join, which Go 1.19 lacks.
type joinErrors []error

func (e joinErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

// Join is nil for no errors, the error itself for one, and all of them
// in one error, joined by "; ", for more.
func Join(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return joinErrors(errs)
}

// SortedKeys is m's keys in order: the order in which runs visit
// underlays and links, so that their output does not vary.
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
