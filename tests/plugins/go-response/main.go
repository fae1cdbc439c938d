// Command go-response is a test plugin with only a Response handler, at
// priority 0: go-pdk's phase after the upstream has answered (Kong runs it
// with buffered proxying; no PDK offers header_filter or body_filter, which
// nginx runs without cosockets).
package main

import (
	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong.
const (
	Version  = "0.1.0"
	Priority = 0
)

// Config is the plugin's configuration: nothing to set.
type Config struct{}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	return &Config{}
}

// Response marks the upstream's answer on its way to the client.
func (conf Config) Response(kong *pdk.PDK) {
	kong.Response.SetHeader("x-response-phase", "ran")
}

func main() {
	server.StartServer(New, Version, Priority)
}
