//go:build !linux

package oatable

import "unsafe"

func adviseHuge(unsafe.Pointer, uintptr) {}
