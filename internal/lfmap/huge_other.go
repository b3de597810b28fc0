//go:build !linux

package lfmap

func adviseHuge([]slot) {}
