'use strict';

// The example plugin in JavaScript (kong-pdk on npm), written like the PDK's
// own examples. Same contract as plugins/example-plugin: count how often the
// plugin server constructs an instance (the PDK calls the constructor once per
// StartInstance, as go-pdk calls New()), log the count at debug through
// kong.log, and mark the response with the count and the configured message.

let newCalls = 0

class KongPlugin {
  constructor(config) {
    newCalls += 1
    this.config = config
  }

  async access(kong) {
    const calls = newCalls
    await Promise.all([
      kong.log.debug(`New() has been called ${calls} times`),
      kong.response.setHeader('X-Example-Message', `New() calls: ${calls}`),
      kong.response.setHeader('X-Example-Config', this.config.message || ''),
    ])
  }
}

module.exports = {
  Plugin: KongPlugin,
  Name: 'js-plugin',
  Schema: [
    { message: { type: 'string' } },
  ],
  Version: '0.1.0',
  // Any priority runs: the route is proxied to an upstream, not answered by a bundled plugin.
  Priority: 1000,
}
