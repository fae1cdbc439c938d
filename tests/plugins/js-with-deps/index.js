'use strict';

// A test fixture shaped like a user's JavaScript plugin with a dependency of its
// own: it requires `ms` (package.json), which the plugin image must carry.

const ms = require('ms')

class KongPlugin {
  constructor(config) {
    this.config = config
  }

  async access(kong) {
    await kong.response.setHeader('X-Js-With-Deps', ms(60000))
  }
}

module.exports = {
  Plugin: KongPlugin,
  Name: 'js-with-deps',
  Schema: [
    { message: { type: 'string' } },
  ],
  Version: '0.1.0',
  Priority: 10,
}
