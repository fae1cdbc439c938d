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
	"strconv"
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
	// (Kong PR #12718, 3.7+).
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

// NodeWideSeq reports whether __seq__ comes from a counter shared by all
// workers (ngx.shared.kong:incr, introduced together with the Key bug in
// 9ca82ddb46 and kept afterwards) rather than a per-worker Lua variable.
func (m Model) NodeWideSeq() bool {
	return m != Seq
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

// keyBugReleases are the Enterprise releases that shipped 9ca82ddb46 without
// the fix (the changelog of 3.4.3.1 / 3.5.0.2 names the bug as fixed).
var keyBugReleases = map[string]bool{
	"3.4.1.0": true, "3.4.1.1": true, "3.4.2.0": true, "3.4.2.1": true,
	"3.5.0.0": true, "3.5.0.1": true,
}

// ForVersion maps a Kong version (Enterprise a.b.c.d or open source a.b.c) to
// the reuse model that release ships. Versions the table does not know are an
// error, so a typo never silently measures the wrong model.
func ForVersion(version string) (Model, error) {
	parts, err := parseVersion(version)
	if err != nil {
		return "", err
	}
	if len(parts) == 4 {
		return enterpriseModel(version, parts)
	}
	return openSourceModel(version, parts)
}

func enterpriseModel(version string, v []int) (Model, error) {
	switch {
	case keyBugReleases[version]:
		return Key, nil
	case version == "3.4.0.0":
		return Seq, nil
	case v[0] == 3 && v[1] == 4 && atLeast(v[2:], 3, 1):
		return PluginID, nil
	case v[0] == 3 && v[1] == 5 && atLeast(v[2:], 0, 2):
		return PluginID, nil
	case v[0] == 3 && v[1] == 6:
		return PluginID, nil
	case v[0] > 3 || (v[0] == 3 && v[1] >= 7):
		return SeqAndPluginID, nil
	}
	return "", unknownVersion(version)
}

func openSourceModel(version string, v []int) (Model, error) {
	switch {
	case v[0] == 3 && (v[1] == 4 || (v[1] == 5 && v[2] == 0)):
		return Seq, nil
	case v[0] == 3 && v[1] == 6:
		return PluginID, nil
	case v[0] > 3 || (v[0] == 3 && v[1] >= 7):
		return SeqAndPluginID, nil
	}
	return "", unknownVersion(version)
}

// atLeast compares the tail (patch, build) of a version with want.
func atLeast(tail []int, wantPatch, wantBuild int) bool {
	if tail[0] != wantPatch {
		return tail[0] > wantPatch
	}
	return tail[1] >= wantBuild
}

func parseVersion(version string) ([]int, error) {
	fields := strings.Split(version, ".")
	if len(fields) != 3 && len(fields) != 4 {
		return nil, unknownVersion(version)
	}
	parts := make([]int, len(fields))
	for i, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, unknownVersion(version)
		}
		parts[i] = n
	}
	return parts, nil
}

func unknownVersion(version string) error {
	return fmt.Errorf("no reuse model known for Kong version %q (known: Enterprise 3.4.0.0, 3.4.1.0-3.4.2.1, "+
		"3.4.3.1+, 3.5.0.0+, 3.6.x, 3.7+; open source 3.4.x, 3.5.0, 3.6.x, 3.7+); "+
		"set KONG_SIM_REUSE_MODEL to one of %s to run it anyway", version, modelNames())
}

// IsEnterprise reports whether version is spelled like an Enterprise release.
func IsEnterprise(version string) bool {
	return strings.Count(version, ".") == 3
}
