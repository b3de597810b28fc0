//go:build !linux

package subscribers

import (
	"errors"
	"os"
)

// fallocate reports errors.ErrUnsupported: the journal reserves its space
// by writing zeros only.
func fallocate(f *os.File, off, n int64) error { return errors.ErrUnsupported }

// holes reports none: the journal zero-fills only what it adds.
func holes(f *os.File, size int64) ([]span, error) { return nil, nil }
