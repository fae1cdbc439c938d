// Command go-auth is a test plugin shaped like an authentication plugin: it
// answers 401 itself, through kong.Response.Exit, to every request without an
// API key. That answer is the plugin's, not a failure: the harness counts it as
// served (and the instances it took as usual).
package main

import (
	"github.com/Kong/go-pdk"
	"github.com/Kong/go-pdk/server"
)

// Version and Priority are what `-dump` reports to Kong (key-auth's is 1250).
const (
	Version  = "0.1.0"
	Priority = 1250
)

// Config names the header that carries the key.
type Config struct {
	KeyHeader string `json:"key_header"`
}

// New is called by go-pdk once at server start and once per StartInstance.
func New() interface{} {
	return &Config{}
}

// Access refuses a request without the key.
func (conf Config) Access(kong *pdk.PDK) {
	header := conf.KeyHeader
	if header == "" {
		header = "apikey"
	}
	key, err := kong.Request.GetHeader(header)
	if err != nil || key == "" {
		kong.Response.Exit(401, []byte(`{"message":"No API key found in request"}`),
			map[string][]string{"Content-Type": {"application/json"}})
	}
}

func main() {
	server.StartServer(New, Version, Priority)
}
