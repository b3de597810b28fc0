//go:build !linux

package uring

import (
	"errors"
	"os"
)

// Ring is not available on this system.
type Ring struct{}

// New reports that io_uring is not available.
func New() (*Ring, error) { return nil, errors.New("io_uring: not available on this system") }

// Sync is never called: New fails.
func (r *Ring) Sync(f *os.File) error { return errors.ErrUnsupported }

// Close does nothing.
func (r *Ring) Close() error { return nil }

// Seq returns 0.
func (r *Ring) Seq() uint64 { return 0 }
