// Command example-plugin is the Go external plugin whose instance churn this
// project measures. It is the plugin from the original bug report: New()
// counts how often Kong asks the plugin server for a fresh instance, and the
// Access phase logs that count so it can be read back from Kong's log. It also
// echoes its configured message, so a client can tell which configuration the
// instance that served it was started with (stale after a reload, or new).
package main

import (
	"fmt"
	"sync/atomic"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong. Any priority runs: the
// route is proxied to an upstream, not answered by a bundled plugin.
const (
	Version  = "0.1.0"
	Priority = 1000
)

// newCalls counts constructor calls for this plugin-server process.
var newCalls atomic.Int64

// Config is the plugin's configuration. Message is only echoed back: it
// makes a config reload visible in the responses.
type Config struct {
	Message string `json:"message"`
}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	newCalls.Add(1)
	return &Config{}
}

// Access reports the constructor count and marks the response, so a client
// can tell that the plugin (not just Kong) answered, and with which config.
// X-Example-Config is always set, empty when no message is configured.
func (conf Config) Access(kong *pdk.PDK) {
	calls := newCalls.Load()
	kong.Log.Debug(fmt.Sprintf("New() has been called %d times", calls))
	kong.Response.SetHeader("X-Example-Message", fmt.Sprintf("New() calls: %d", calls))
	kong.Response.SetHeader("X-Example-Config", conf.Message)
}

func main() {
	server.StartServer(New, Version, Priority)
}
