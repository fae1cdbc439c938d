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
// it has been started twice, as Kong version would, and returns the lines
// it logged.
func superviseOnce(t *testing.T, version string) string {
	t.Helper()
	family, err := release.ForVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	command, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no `true` command on this machine")
	}
	var mu sync.Mutex
	var logged strings.Builder
	s := &Supervisor{
		Server:       config.PluginServer{Name: "example-plugin", StartCommand: command},
		RespawnDelay: 10 * time.Millisecond,
		Lines:        family.ProcessLines,
		Sites:        family.Lines(),
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
	log := superviseOnce(t, "3.4.0")
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
	log := superviseOnce(t, "3.9.0")
	for _, want := range []string{
		"[notice] [kong] process.lua:152 [pluginserver] starting pluginserver process for example-plugin\n",
		"[pluginserver] started, pid ",
		"external pluginserver 'example-plugin' terminated: exit 0\n",
		"[notice] [kong] process.lua:181 [pluginserver] exiting: pluginserver 'example-plugin' not respawned.\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("missing %q in\n%s", want, log)
		}
	}
	if strings.Contains(log, "Starting example-plugin") || strings.Contains(log, "Exiting:") {
		t.Errorf("3.9 lines use the 3.4 wording:\n%s", log)
	}
}

func TestProcessLinesCarryTheReleasesLineNumbers(t *testing.T) {
	// tag 3.6.0 process.lua: kong.log.notice("Starting " ...) at 217, the
	// `terminated` line at 233, `Exiting` at 238.
	log := superviseOnce(t, "3.6.0")
	for _, want := range []string{
		"[kong] process.lua:217 Starting example-plugin\n",
		"[kong] process.lua:233 external pluginserver 'example-plugin' terminated: exit 0\n",
		"[kong] process.lua:238 Exiting: pluginserver 'example-plugin' not respawned.\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("missing %q in\n%s", want, log)
		}
	}
}
