package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// maxPassword bounds a password read from stdin (the API refuses longer).
const maxPassword = 1024

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readPassword reads a password: the first line of stdin, or, when
// stdin is a terminal, after prompt (on stderr) with echo off. Passwords
// are never arguments (other users see those in ps) and never echoed.
func readPassword(ctx context.Context, stdin io.Reader, stderr io.Writer, prompt string) (string, error) {
	var restore func()
	if f, ok := stdin.(*os.File); ok {
		fd := int(f.Fd())
		if old, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
			quiet := *old
			quiet.Lflag &^= unix.ECHO
			quiet.Lflag |= unix.ICANON | unix.ISIG
			if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
				return "", fmt.Errorf("password: turning echo off: %w", err)
			}
			restore = func() {
				_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
				fmt.Fprintln(stderr)
			}
			fmt.Fprint(stderr, prompt)
		}
	}
	type result struct {
		pw  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReaderSize(io.LimitReader(stdin, maxPassword+2), maxPassword+2).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			if errors.Is(err, io.EOF) {
				err = errors.New("no password on stdin")
			}
			done <- result{err: err}
			return
		}
		done <- result{pw: strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	if restore != nil {
		restore()
	}
	if r.err != nil {
		return "", fmt.Errorf("password: %w", r.err)
	}
	if r.pw == "" {
		return "", errors.New("password: empty")
	}
	if len(r.pw) > maxPassword {
		return "", fmt.Errorf("password: longer than %d bytes", maxPassword)
	}
	return r.pw, nil
}
