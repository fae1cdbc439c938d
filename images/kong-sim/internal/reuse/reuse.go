// Package reuse decides, the way a given Kong release does, whether a worker
// may keep using a running plugin instance or must start a new one.
//
// Kong looks running instances up by the plugin's UUID (kong.plugin.get_id())
// in kong/runloop/plugin_servers/init.lua (get_instance_id); what it compares
// before reusing the instance changed between releases, and that comparison is
// the whole difference between a calm plugin server and one that calls New()
// on every request.
package reuse

import (
	"fmt"
	"strings"
)

// Model names one of the reuse tests Kong has shipped.
type Model string

const (
	// Seq reuses when instance.seq == conf.__seq__ (EE 3.4.0.0, OSS 3.4.0-3.5.0).
	Seq Model = "seq"
	// Key compares instance.conf.__key__ (a cache-key string) with the
	// plugin's UUID, which never matches: every event starts a new instance
	// (EE 3.4.1.0-3.5.0.1, Kong commit 9ca82ddb46).
	Key Model = "key"
	// PluginID reuses when instance.conf.__plugin_id == the plugin's UUID
	// (Kong PR #12020: EE 3.4.3.1+, 3.5.0.2+, 3.6.x; OSS 3.6.x).
	PluginID Model = "plugin_id"
	// SeqAndPluginID requires both the seq and the plugin id to match
	// (Kong PR #12718, 3.7+; backported to EE 3.4.3.6, 3.5.0.4, 3.6.1.2).
	SeqAndPluginID Model = "seq_and_plugin_id"
)

// Models lists every model, in the order Kong shipped them.
var Models = []Model{Seq, Key, PluginID, SeqAndPluginID}

// Conf is the part of a plugin configuration the reuse test reads: the
// metadata Kong's plugins iterator adds to every plugin config.
type Conf struct {
	Seq      int64  // __seq__
	Key      string // __key__, the plugin's cache key
	PluginID string // __plugin_id, the plugin's UUID
}

// Reuses reports whether a worker may keep the running instance that was
// started with config running when the request carries config requested for
// the plugin whose UUID is pluginUUID.
func (m Model) Reuses(running, requested Conf, pluginUUID string) bool {
	switch m {
	case Seq:
		return running.Seq == requested.Seq
	case Key:
		return running.Key == pluginUUID
	case PluginID:
		return running.PluginID == pluginUUID
	case SeqAndPluginID:
		return running.Seq == requested.Seq && running.PluginID == pluginUUID
	}
	return false
}

// ParseModel accepts one of the model names (as used in KONG_SIM_REUSE_MODEL).
func ParseModel(name string) (Model, error) {
	for _, m := range Models {
		if string(m) == name {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown reuse model %q: use one of %s", name, modelNames())
}

func modelNames() string {
	names := make([]string, len(Models))
	for i, m := range Models {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}
