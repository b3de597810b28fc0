package lab

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestUpRefusesNoSubscribers: `lab up --subscribers 0` is refused before
// anything is built (it gave 3, the default for an Options left at 0).
func TestUpRefusesNoSubscribers(t *testing.T) {
	err := Main(context.Background(), []string{"up", "--id", "zz0", "--subscribers", "0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--subscribers must be at least 1, got 0") {
		t.Fatalf("lab up --subscribers 0: %v", err)
	}
}
