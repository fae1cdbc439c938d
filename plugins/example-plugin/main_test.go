package main

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/Kong/go-pdk/test"
)

func newEnv(t *testing.T) *test.TestEnv {
	t.Helper()
	env, err := test.New(t, test.Request{Method: "GET", Url: "http://example.com/hello"})
	if err != nil {
		t.Fatalf("creating the test environment: %v", err)
	}
	return env
}

func TestAccessMarksTheResponse(t *testing.T) {
	env := newEnv(t)
	config := New().(*Config)
	env.DoHttps(config)

	if env.ClientRes.Status != 200 {
		t.Fatalf("status = %d, want 200", env.ClientRes.Status)
	}
	if got := env.ClientRes.Headers.Get("X-Example-Message"); got == "" {
		t.Fatalf("X-Example-Message missing; headers: %v", env.ClientRes.Headers)
	}
}

func TestNewCountsEveryCall(t *testing.T) {
	before := newCalls.Load()
	for i := 0; i < 3; i++ {
		New()
	}
	if got := newCalls.Load() - before; got != 3 {
		t.Fatalf("New() counted %d calls, want 3", got)
	}
}

func TestHeaderReportsTheCount(t *testing.T) {
	New()
	env := newEnv(t)
	env.DoHttps(&Config{})
	want := "New() calls: " + strconv.FormatInt(newCalls.Load(), 10)
	if got := env.ClientRes.Headers.Get("X-Example-Message"); got != want {
		t.Fatalf("X-Example-Message = %q, want %q", got, want)
	}
}

func TestHeaderEchoesTheConfiguredMessage(t *testing.T) {
	env := newEnv(t)
	env.DoHttps(&Config{Message: "second config"})
	if got := env.ClientRes.Headers.Get("X-Example-Config"); got != "second config" {
		t.Fatalf("X-Example-Config = %q, want %q", got, "second config")
	}
}

func TestConfigHeaderIsSetEvenWithoutAMessage(t *testing.T) {
	env := newEnv(t)
	env.DoHttps(New().(*Config))
	values, present := env.ClientRes.Headers["X-Example-Config"]
	if !present || len(values) != 1 || values[0] != "" {
		t.Fatalf("X-Example-Config = %q (present: %v), want one empty value", values, present)
	}
}

func TestMessageComesFromTheConfigJSON(t *testing.T) {
	// Kong sends the plugin's config as JSON, with its own metadata beside it.
	config := New().(*Config)
	if err := json.Unmarshal([]byte(`{"message":"from kong","__seq__":3,"__plugin_id":"x"}`), config); err != nil {
		t.Fatal(err)
	}
	if config.Message != "from kong" {
		t.Fatalf("Message = %q, want %q", config.Message, "from kong")
	}
}
