'use strict';

// A test plugin in the shape of kong-js-pdk's examples: one access handler and
// no Priority, so the PDK's default (0) applies: it runs after every bundled plugin.

class KongPlugin {
  constructor(config) {
    this.config = config
  }

  async access(kong) {
    const host = await kong.request.getHeader('host')
    const message = this.config.message || 'hello'
    await kong.response.setHeader('x-hello-from-javascript', `Javascript says ${message} to ${host}`)
  }
}

module.exports = {
  Plugin: KongPlugin,
  Schema: [
    { message: { type: 'string' } },
  ],
  Version: '0.1.0',
}
