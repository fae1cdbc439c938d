package main

import (
	"bytes"
	"strings"
	"testing"
)

// The commands the official images' entrypoint and health check call, as Kong's CLI answers them.
func TestRunAnswersLikeKongsCLI(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		out, err string
	}{
		{args: nil, code: 1, err: "Usage: kong COMMAND"},
		{args: []string{"help"}, code: 0, out: "docker-start"},
		{args: []string{"frobnicate"}, code: 1, err: "Error: No such command: frobnicate"},
		{args: []string{"version"}, code: 1, err: "Error: "}, // no KONG_SIM_VERSION here
	}
	t.Setenv("KONG_SIM_VERSION", "")
	t.Setenv("KONG_SIM_REUSE_MODEL", "")
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		if code != c.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", c.args, code, c.code, stderr.String())
		}
		if !strings.Contains(stdout.String(), c.out) || !strings.Contains(stderr.String(), c.err) {
			t.Errorf("run(%q): stdout %q, stderr %q; want %q and %q", c.args, stdout.String(), stderr.String(), c.out, c.err)
		}
	}
}

func TestSignalNamesAsKongLogsThem(t *testing.T) {
	if got := signalName(nil); got != "SIGTERM" {
		t.Errorf("signalName(nil) = %q, want SIGTERM", got)
	}
}
