package gateway

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestAFailedRPCAnswers500From38: with the plugin server gone (connection
// refused), a worker that has an instance cannot reach it. Up to 3.7 the
// ProtoBuf path logs the error and the request goes on without the plugin;
// from 3.8.0 (Kong commit 5a2f2d5723, pb_rpc.lua) it logs `pluginserver
// error: ERR` and answers 500, as 3.14.0.0+ do.
func TestAFailedRPCAnswers500From38(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "gone.socket")
	for version, answers500 := range map[string]bool{
		"3.4.0": false, "3.6.0": false, "3.7.1.5": false, "3.8.0": true, "3.8.1.0": true,
		"3.9.3": true, "3.13.0.10": true, "3.14.0.0": true, "3.15.0.4": true,
	} {
		g, log := workersOf(t, version, 1, gone, false)
		w := g.workers[0]
		ev := testEvent(g, w, context.Background())
		started(g)
		w.running[testPluginID].conf = ev.conf(w) // reused: the event goes to the server
		err := w.handleEvent(ev)
		if got := errors.Is(err, errStartFailed); got != answers500 {
			t.Errorf("%s: handleEvent returned %v; want a 500: %v", version, err, answers500)
		}
		if answers500 && !errors.Is(err, errRPCFailed) {
			t.Errorf("%s: %v is not the failed call", version, err)
		}
		if !strings.Contains(log.String(), "trying to connect: ") || strings.Contains(log.String(), "starting instance") {
			t.Errorf("%s: want the failed call logged, not an instance start:\n%s", version, log)
		}
		if got := strings.Contains(log.String(), "pluginserver error: "); got != answers500 {
			t.Errorf("%s: `pluginserver error: ` logged: %v, want %v:\n%s", version, got, answers500, log)
		}
	}
}
