package pluginserver

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kong-plugin-matrix/kong-sim/internal/config"
	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
)

// superviseOnce runs a supervisor over a command that exits at once, until
// it has been started twice, and returns the lines it logged.
func superviseOnce(t *testing.T, lines release.ProcessLines) string {
	t.Helper()
	command, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no `true` command on this machine")
	}
	var mu sync.Mutex
	var logged strings.Builder
	s := &Supervisor{
		Server:       config.PluginServer{Name: "example-plugin", StartCommand: command},
		RespawnDelay: 10 * time.Millisecond,
		Lines:        lines,
		Log: func(level konglog.Level, msg string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(&logged, "[%s] %s\n", level, msg)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	s.Run(ctx)
	mu.Lock()
	defer mu.Unlock()
	return logged.String()
}

func TestProcessLinesOf34To38(t *testing.T) {
	log := superviseOnce(t, release.Lines34)
	for _, want := range []string{
		"[notice] [kong] process.lua:252 Starting example-plugin\n",
		"external pluginserver 'example-plugin' terminated: exit 0\n",
		"[notice] [kong] process.lua:273 Exiting: pluginserver 'example-plugin' not respawned.\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("missing %q in\n%s", want, log)
		}
	}
	if strings.Contains(log, "[pluginserver]") {
		t.Errorf("3.4-3.8 have no [pluginserver] lines:\n%s", log)
	}
}

func TestProcessLinesOf39(t *testing.T) {
	log := superviseOnce(t, release.Lines39)
	for _, want := range []string{
		"[notice] [kong] process.lua:180 [pluginserver] starting pluginserver process for example-plugin\n",
		"[pluginserver] started, pid ",
		"external pluginserver 'example-plugin' terminated: exit 0\n",
		"[pluginserver] exiting: pluginserver 'example-plugin' not respawned.\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("missing %q in\n%s", want, log)
		}
	}
	if strings.Contains(log, "Starting example-plugin") || strings.Contains(log, "Exiting:") {
		t.Errorf("3.9 lines use the 3.4 wording:\n%s", log)
	}
}
