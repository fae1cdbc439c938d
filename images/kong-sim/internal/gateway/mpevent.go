package gateway

import (
	"strings"

	"github.com/kong-plugin-matrix/kong-sim/internal/konglog"
	"github.com/kong-plugin-matrix/kong-sim/internal/release"
)

// recoverMsgPack is mp_rpc.lua's Rpc:handle_event reaction to a failed
// event. Unlike pb_rpc.lua it retries (true) only when the server's error
// text holds "no plugin instance" (a Python or JavaScript server answers `no
// plugin instance #N`); "closed", a failed read ("no data") and any other
// error are logged at [error] and the plugin is skipped for this request.
// What a retry resets depends on the release (release.MsgPackRecovery).
func (w *worker) recoverMsgPack() func(ev event, text string) bool {
	recovery := w.g.env.Release.MsgPack
	warnLine, errLine := w.mpHandleEventLines()
	return func(ev event, text string) bool {
		if recovery == release.MsgPackPostEvent { // posted on every error, before the text is read
			w.g.postResetInstances(ev.plugin.Name)
		}
		if !strings.Contains(strings.ToLower(text), "no plugin instance") {
			w.log(konglog.Error, ev.req.logContext(), ev.kongMessage("mp_rpc.lua", errLine, text))
			return false
		}
		if recovery != release.MsgPackPostEvent {
			w.resetInstance(ev.plugin)
		}
		w.log(konglog.Warn, ev.req.logContext(), ev.kongMessage("mp_rpc.lua", warnLine, text))
		return true
	}
}

// mpHandleEventLines are the lines of handle_event's kong.log.warn(err) and
// kong.log.err(err) in the release's mp_rpc.lua (only the text is to be
// matched; the numbers help a reader find the source).
func (w *worker) mpHandleEventLines() (warn, err int) {
	if w.g.env.Release.ProcessLines == release.Lines39 {
		return 314, 318 // kong/runloop/plugin_servers/rpc/mp_rpc.lua
	}
	switch w.g.env.Release.MsgPack {
	case release.MsgPackWipeLocal:
		return 343, 347 // 3.4.0
	case release.MsgPackPostEvent:
		return 340, 343 // 3.5.0, 3.6.0
	}
	return 341, 345 // 3.7.0, 3.8.0
}
