// Command example-plugin is the Go external plugin whose instance churn this
// project measures. It is the plugin from the original bug report: New()
// counts how often Kong asks the plugin server for a fresh instance, and the
// Access phase logs that count so it can be read back from Kong's log.
package main

import (
	"fmt"
	"sync/atomic"

	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong. The priority is above
// request-termination's (2) so Access runs before that plugin ends the request.
const (
	Version  = "0.1.0"
	Priority = 1000
)

// newCalls counts constructor calls for this plugin-server process.
var newCalls atomic.Int64

// Config is the plugin's configuration; the plugin takes no settings.
type Config struct{}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	newCalls.Add(1)
	return &Config{}
}

// Access reports the constructor count and marks the response, so a client
// can tell that the plugin (not just Kong) answered.
func (conf Config) Access(kong *pdk.PDK) {
	calls := newCalls.Load()
	kong.Log.Debug(fmt.Sprintf("New() has been called %d times", calls))
	kong.Response.SetHeader("X-Example-Message", fmt.Sprintf("New() calls: %d", calls))
}

func main() {
	server.StartServer(New, Version, Priority)
}
