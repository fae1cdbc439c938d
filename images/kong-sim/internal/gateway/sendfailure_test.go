package gateway

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kong-plugin-matrix/kong-sim/internal/pluginserver"
)

// sendFailingRPC is a plugin server that died after the worker connected:
// every call fails on its send, as the real client reports it.
type sendFailingRPC struct{ closes int }

func (c *sendFailingRPC) StartInstance(string, []byte) (int32, error) {
	return 0, &pluginserver.SendError{Err: syscall.EPIPE}
}

func (c *sendFailingRPC) CloseInstance(int32) error {
	c.closes++
	return &pluginserver.SendError{Err: syscall.EPIPE}
}

func (c *sendFailingRPC) HandleEvent(int32, string, pluginserver.PDK) error {
	return &pluginserver.SendError{Err: syscall.EPIPE}
}

func (c *sendFailingRPC) Close() {}

// sendFailing builds a one-worker node of version whose plugin server
// fails every send.
func sendFailing(t *testing.T, version string) (*Gateway, *worker, *syncBuffer) {
	t.Helper()
	g, log := workersOf(t, version, 1, filepath.Join(t.TempDir(), "unused.socket"), false)
	g.servers[0].ready.Store(true)
	w := g.workers[0]
	w.clients["example-plugin"] = &sendFailingRPC{}
	return g, w, log
}

// TestAFailedSendLeavesTheClaim: every release sends with
// assert(c:send(...)) (3.4.0 pb_rpc.lua 318-319, 3.9.0 rpc/pb_rpc.lua
// 264-265), so a start whose send fails raises out of get_instance_id
// before `running_instances[key] = nil`: no `starting instance:` line, a
// 500, and the claim stays for the next requests to wait on.
func TestAFailedSendLeavesTheClaim(t *testing.T) {
	for _, version := range []string{"3.4.0", "3.4.0.0", "3.5.0", "3.4.1.0", "3.5.0.0", "3.6.0", "3.9.0"} {
		g, w, log := sendFailing(t, version)
		_, err := w.instanceID(testEvent(g, w, context.Background()))
		if !errors.Is(err, errStartFailed) || err.Error() != "broken pipe" {
			t.Errorf("%s: the failed send gave %v, want the raised `broken pipe` (a 500)", version, err)
		}
		info := w.running[testPluginID]
		if info == nil || info.hasID {
			t.Errorf("%s: claim after the failed send: %+v, want it kept without an id", version, info)
		}
		if strings.Contains(log.String(), "starting instance") {
			t.Errorf("%s: the raise skips the `starting instance:` line:\n%s", version, log)
		}
	}
}

// TestAFailedSendLeavesAReClaimWithItsName: a re-claim (the key bug makes
// almost every start one) keeps the plugin_name of the instance it
// replaced, so a reset can still delete it where the release wipes by
// name; the old instance is not closed (the raise comes first).
func TestAFailedSendLeavesAReClaimWithItsName(t *testing.T) {
	g, w, _ := sendFailing(t, "3.4.1.0")
	started(g)
	_, err := w.instanceID(testEvent(g, w, context.Background()))
	if !errors.Is(err, errStartFailed) {
		t.Fatalf("the failed send gave %v, want a raise", err)
	}
	info := w.running[testPluginID]
	if info == nil || info.hasID || info.pluginName != testPlugin.Name {
		t.Fatalf("re-claim after the failed send: %+v, want kept, without an id, with its name", info)
	}
	if closes := w.clients["example-plugin"].(*sendFailingRPC).closes; closes != 0 {
		t.Errorf("%d close calls, want none", closes)
	}
}

// TestAFailedEventSendRaisesWithoutRetry: handle_event's call asserts its
// send too, so Kong neither logs the recovery nor retries: the access
// iterator logs the raised text at kong/init.lua's kong.log.err(cerr) and
// answers 500.
func TestAFailedEventSendRaisesWithoutRetry(t *testing.T) {
	cases := map[string]string{
		"3.4.0":   "[kong] init.lua:363 [example-plugin] broken pipe",
		"3.4.1.0": "[kong] init.lua:380 [example-plugin] broken pipe",
		"3.6.0":   "[kong] init.lua:405 [example-plugin] broken pipe",
		"3.9.0":   "[kong] init.lua:406 [example-plugin] broken pipe",
	}
	for version, want := range cases {
		g, w, log := sendFailing(t, version)
		ev := testEvent(g, w, context.Background())
		started(g)
		w.running[testPluginID].conf = ev.conf(w) // reused: the event goes to the server
		g.external[testPlugin.Name] = ev.ext
		g.runPlugin(ev.req, testPlugin, "access")
		if ev.req.exit == nil || ev.req.exit.status != http.StatusInternalServerError {
			t.Errorf("%s: answer %+v, want 500", version, ev.req.exit)
		}
		if !strings.Contains(log.String(), want) {
			t.Errorf("%s: want %q in\n%s", version, want, log)
		}
		if strings.Contains(log.String(), "pb_rpc.lua") || !hasInstance(w) {
			t.Errorf("%s: a raise is neither logged as a recovery nor reset:\n%s", version, log)
		}
	}
}
