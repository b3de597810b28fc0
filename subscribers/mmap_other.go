//go:build !linux

package subscribers

const mmapFlags = 0
