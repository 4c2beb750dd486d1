package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/poolgate/poolgate/internal/results/resultstest"
)

// helperServeEnv makes the test binary run `serve` instead of the tests,
// so a test can run a replica as a process of its own and SIGKILL it.
const helperServeEnv = "POOLGATE_TEST_HELPER_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(helperServeEnv) == "1" {
		if err := run(context.Background(), []string{"serve"}, os.Getenv, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	resultstest.Stop() // the S3 server the results tests shared
	os.Exit(code)
}
