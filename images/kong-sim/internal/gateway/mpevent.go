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
	lines := w.g.env.Release.Lines()
	return func(ev event, text string) bool {
		if recovery == release.MsgPackPostEvent { // posted on every error, before the text is read
			w.g.postResetInstances(ev.plugin.Name)
		}
		if !strings.Contains(strings.ToLower(text), "no plugin instance") {
			w.log(konglog.Error, ev.req.logContext(), ev.kongMessage(lines.MPError, text))
			return false
		}
		if recovery != release.MsgPackPostEvent {
			w.resetInstance(ev.plugin)
		}
		w.log(konglog.Warn, ev.req.logContext(), ev.kongMessage(lines.MPWarn, text))
		return true
	}
}
