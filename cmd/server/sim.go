package main

import (
	"context"
	"fmt"
	"io"
)

// simulate runs the upstream simulator (filled in with internal/provider/sim).
func simulate(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	return fmt.Errorf("sim: not built yet")
}
