//go:build !amd64 || purego

package lfmap

import "testing"

// forEachChunkImpl runs fn once: lookupChunk is lookupChunkGo here.
func forEachChunkImpl(t *testing.T, fn func(t *testing.T)) { t.Run("go", fn) }
