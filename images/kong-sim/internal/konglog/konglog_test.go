package konglog

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var at = time.Date(2023, 11, 21, 22, 33, 8, 0, time.UTC)

func TestFormatLineWithRequest(t *testing.T) {
	msg := KongMessage("pb_rpc.lua", 413, "example-plugin", "closed")
	ctx := Context{Conn: 654, Request: &Request{Client: "192.168.65.1", Request: "GET /hello HTTP/1.1", Host: "localhost:8000"}}
	got := FormatLine(at, Error, 2347, ctx, msg)
	want := `2023/11/21 22:33:08 [error] 2347#0: *654 [kong] pb_rpc.lua:413 [example-plugin] closed, ` +
		`client: 192.168.65.1, server: kong, request: "GET /hello HTTP/1.1", host: "localhost:8000"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestDebugLinesNeverCarryRequestContext(t *testing.T) {
	msg := KongMessage("pb_rpc.lua", 251, "example-plugin", "New() has been called 7 times")
	ctx := Context{Conn: 654, Request: &Request{Client: "192.168.65.1", Request: "GET /hello HTTP/1.1", Host: "localhost:8000"}}
	want := "2023/11/21 22:33:08 [debug] 2347#0: *654 [kong] pb_rpc.lua:251 [example-plugin] New() has been called 7 times"
	if got := FormatLine(at, Debug, 2347, ctx, msg); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	timer := FormatLine(at, Debug, 2346, Context{Conn: 151, Phase: "ngx.timer"}, "[kong] pb_rpc.lua:381 started plugin server")
	if want := "2023/11/21 22:33:08 [debug] 2346#0: *151 [kong] pb_rpc.lua:381 started plugin server"; timer != want {
		t.Fatalf("got  %s\nwant %s", timer, want)
	}
	// The same context one level up is written out in full.
	if info := FormatLine(at, Info, 2347, ctx, msg); !strings.HasSuffix(info, `, host: "localhost:8000"`) {
		t.Fatalf("info line lost its request context: %s", info)
	}
}

func TestErrorLogWritesDebugLinesWithoutRequestContext(t *testing.T) {
	var out bytes.Buffer
	log := NewErrorLog(&out, Debug)
	log.Log(Debug, 7, Context{Conn: 3, Request: &Request{Client: "10.0.0.1", Request: "GET / HTTP/1.1"}}, "quiet")
	if got := out.String(); strings.Contains(got, "client:") || !strings.HasSuffix(got, "7#0: *3 quiet\n") {
		t.Fatalf("debug line: %q", got)
	}
}

func TestFormatLineFromATimer(t *testing.T) {
	got := FormatLine(at, Info, 2346, Context{Conn: 151, Phase: "ngx.timer"},
		"[example-plugin:2350] 2023/11/21 22:33:08 closed instance 15")
	want := "2023/11/21 22:33:08 [info] 2346#0: *151 [example-plugin:2350] 2023/11/21 22:33:08 closed instance 15, context: ngx.timer"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestFormatLineWithoutConnection(t *testing.T) {
	got := FormatLine(at, Notice, 1, Context{}, "start worker processes")
	if want := "2023/11/21 22:33:08 [notice] 1#0: start worker processes"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestKongMessageWithoutNamespace(t *testing.T) {
	if got := KongMessage("init.lua", 12, "", "hi"); got != "[kong] init.lua:12 hi" {
		t.Fatalf("got %q", got)
	}
}

func TestErrorLogFiltersByLevel(t *testing.T) {
	var out bytes.Buffer
	log := NewErrorLog(&out, Notice)
	log.Log(Debug, 1, Context{}, "hidden debug")
	log.Log(Info, 1, Context{}, "hidden info")
	log.Log(Notice, 1, Context{}, "shown notice")
	log.Log(Error, 1, Context{}, "shown error")
	text := out.String()
	if strings.Contains(text, "hidden") || strings.Count(text, "\n") != 2 {
		t.Fatalf("unexpected log:\n%s", text)
	}
	if !strings.Contains(text, "[error] 1#0: shown error\n") {
		t.Fatalf("error line missing:\n%s", text)
	}
}

func TestParseLevel(t *testing.T) {
	for i, name := range levelNames {
		if got, err := ParseLevel(strings.ToUpper(name)); err != nil || got != Level(i) {
			t.Errorf("ParseLevel(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseLevel("verbose"); err == nil {
		t.Error("ParseLevel accepted an unknown level")
	}
}

func TestFormatAccessIsCombined(t *testing.T) {
	got := FormatAccess(Access{Client: "127.0.0.1", At: at, RequestLine: "GET /hello HTTP/1.1",
		Status: 200, BodyBytes: 21, UserAgent: "python-requests/2.31"})
	want := `127.0.0.1 - - [21/Nov/2023:22:33:08 +0000] "GET /hello HTTP/1.1" 200 21 "-" "python-requests/2.31"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
