package main

import (
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
