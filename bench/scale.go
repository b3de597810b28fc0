package bench

import (
	"context"
	"errors"
	"io"
)

// scaleBench runs `ispmux bench scale` (issue 11: a million subscribers).
func scaleBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bench scale: not built yet")
}
